"""GIST descriptors against an independent numpy port of LMgist.m's steps
(Torralba's reference code: imresizecrop, prefilt, createGabor, gistGabor,
downN), written from the MATLAB source for this test."""

import json
import struct

import numpy as np
import pytest

import hashlab
from conftest import cli, write_idx_images


def resize_bilinear(img, side):
    """MATLAB imresize(..., 'bilinear') of an up-scaling (no antialiasing):
    half-pixel centres, edges clamped."""
    h, w = img.shape

    def axis(n_in, n_out):
        x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, x - lo

    r0, r1, fr = axis(h, side)
    c0, c1, fc = axis(w, side)
    top = img[r0][:, c0] * (1 - fc) + img[r0][:, c1] * fc
    bottom = img[r1][:, c0] * (1 - fc) + img[r1][:, c1] * fc
    return top * (1 - fr[:, None]) + bottom * fr[:, None]


def create_gabor(orientations, n):
    """createGabor(or, n) for an n x n image."""
    params = []
    for i, o in enumerate(orientations):
        for j in range(o):
            params.append((0.35, 0.3 / 1.85 ** i, 16 * o ** 2 / 32 ** 2, np.pi / o * j))
    fx, fy = np.meshgrid(np.arange(-n // 2, n // 2), np.arange(-n // 2, n // 2))
    fr = np.fft.fftshift(np.sqrt(fx ** 2 + fy ** 2))
    t = np.fft.fftshift(np.angle(fx + 1j * fy))
    G = []
    for a, s, b, phi in params:
        tr = t + phi
        tr = tr + 2 * np.pi * (tr < -np.pi) - 2 * np.pi * (tr > np.pi)
        G.append(np.exp(-10 * a * (fr / n / s - 1) ** 2 - 2 * b * np.pi * tr ** 2))
    return G


def prefilt(img, fc=4):
    """prefilt(img, fc) of an [h, w, c] image."""
    w = 5
    s1 = fc / np.sqrt(np.log(2))
    img = np.log(img + 1)
    img = np.pad(img, ((w, w), (w, w), (0, 0)), mode="symmetric")
    sn = img.shape[0]
    n = sn + sn % 2
    img = np.pad(img, ((0, n - sn), (0, n - sn), (0, 0)), mode="symmetric")
    fx, fy = np.meshgrid(np.arange(-n // 2, n // 2), np.arange(-n // 2, n // 2))
    gf = np.fft.fftshift(np.exp(-(fx ** 2 + fy ** 2) / s1 ** 2))
    out = img - np.real(np.fft.ifft2(np.fft.fft2(img, axes=(0, 1)) * gf[:, :, None], axes=(0, 1)))
    local = np.sqrt(np.abs(np.fft.ifft2(np.fft.fft2(out.mean(axis=2) ** 2) * gf)))
    out = out / (0.2 + local[:, :, None])
    return out[w:sn - w, w:sn - w, :]


def down_n(x, N):
    nx = np.fix(np.linspace(0, x.shape[0], N + 1)).astype(int)
    ny = np.fix(np.linspace(0, x.shape[1], N + 1)).astype(int)
    y = np.zeros((N, N))
    for xx in range(N):
        for yy in range(N):
            y[xx, yy] = x[nx[xx]:nx[xx + 1], ny[yy]:ny[yy + 1]].mean()
    return y


def lmgist(img, image_size=32, orientations=(8, 8, 8, 8), blocks=4, fc=4, be=32, colour="gray"):
    """LMgist of one image [C, H, W]."""
    img = img.astype(np.float64)
    if colour == "gray":
        img = img.mean(axis=0, keepdims=True)
    img = np.stack([resize_bilinear(c, image_size) if c.shape != (image_size, image_size) else c
                    for c in img], axis=2)
    img = img - img.min()
    img = 255 * img / img.max()
    out = prefilt(img, fc)
    G = create_gabor(orientations, image_size + 2 * be)
    features = []
    for c in range(out.shape[2]):
        x = np.pad(out[:, :, c], be, mode="symmetric")
        F = np.fft.fft2(x)
        for g in G:
            ig = np.abs(np.fft.ifft2(F * g))[be:be + image_size, be:be + image_size]
            features.append(down_n(ig, blocks).reshape(-1, order="F"))  # MATLAB's column order
    return np.concatenate(features)


@pytest.fixture
def images(rng):
    """A few natural-looking images: smooth blobs, edges and noise."""
    yy, xx = np.mgrid[0:28, 0:28]
    out = []
    for i in range(4):
        a = 128 + 90 * np.sin(xx / (2.0 + i)) * np.cos(yy / (3.0 + i)) + rng.normal(0, 20, (28, 28))
        a[:, 14 + i:] += 60
        out.append(np.clip(a, 0, 255).astype(np.uint8))
    return np.stack(out)[:, None]  # [4, 1, 28, 28]


def test_gray_matches_lmgist(images):
    got = hashlab.gist(images)
    assert got.shape == (4, 512) and got.dtype == np.float32
    for i in range(len(images)):
        want = lmgist(images[i])
        np.testing.assert_allclose(got[i], want, atol=1e-4, rtol=0)


def test_rgb_32px_matches_lmgist(rng):
    imgs = rng.integers(0, 256, size=(2, 3, 32, 32)).astype(np.uint8)
    imgs[:, 0, :16] //= 3  # structure across channels
    got = hashlab.gist(imgs, colour="rgb")
    assert got.shape == (2, 960)
    for i in range(2):
        np.testing.assert_allclose(got[i], lmgist(imgs[i], orientations=(8, 8, 4), colour="rgb"),
                                   atol=1e-4, rtol=0)


def test_options_change_the_descriptor(images):
    small = hashlab.gist(images[:1], orientations=[4, 4], blocks=2, image_size=16, boundary=8)
    assert small.shape == (1, 8 * 4)
    np.testing.assert_allclose(
        small[0], lmgist(images[0], image_size=16, orientations=(4, 4), blocks=2, be=8),
        atol=1e-4, rtol=0)


def test_cli_and_config_compute_the_same(tmp_path, images, data_dir):
    # The CLI over an idx file, to .npy and .fvecs.
    imgs, _ = write_idx_images(tmp_path / "im.idx", tmp_path / "lab.idx", n=20, side=28)
    cli("data", "gist", tmp_path / "im.idx", "--out", tmp_path / "g.npy")
    cli("data", "gist", tmp_path / "im.idx", "--out", tmp_path / "g.fvecs")
    g = np.load(tmp_path / "g.npy")
    np.testing.assert_array_equal(g, hashlab.gist(imgs))
    raw = np.fromfile(tmp_path / "g.fvecs", dtype=np.float32).reshape(20, 513)
    assert (raw[:, 0].view(np.int32) == 512).all()
    np.testing.assert_array_equal(raw[:, 1:], g)
    # A config with data.gist trains on the descriptors.
    cfg = tmp_path / "itq_gist.yaml"
    cfg.write_text(f"_base_: {data_dir / 'data.yaml'}\nname: itq_gist\nmethod: itq\n"
                   "model:\n  bits: 16\ndata:\n  gist: {image_size: 16, orientations: [4, 4], "
                   "blocks: 2, boundary: 8}\n")
    run = hashlab.train(cfg, run_dir=tmp_path / "run")
    assert run.finished
    split = run.split()
    assert tuple(split.features.shape) == (300, 32)


def test_bad_gist_inputs(tmp_path):
    with pytest.raises(hashlab.Error, match="1 or 3 channels"):
        hashlab.gist(np.zeros((2, 2, 16, 16), np.uint8))
    with pytest.raises(hashlab.Error, match="rgb needs 3-channel"):
        hashlab.gist(np.zeros((2, 1, 16, 16), np.uint8), colour="rgb")
    with pytest.raises(hashlab.Error, match="expected uint8 or floating images"):
        hashlab.gist(np.zeros((2, 1, 16, 16), np.int32))
    (tmp_path / "v.fvecs").write_bytes(struct.pack("<i2f", 2, 1.0, 2.0))
    p = cli("data", "gist", tmp_path / "v.fvecs", "--format", "npy", "--out", tmp_path / "o.npy",
            check=False)
    assert p.returncode != 0 and "v.fvecs" in p.stderr
    p = cli("data", "gist", tmp_path / "missing.idx", "--out", tmp_path / "o.npy", check=False)
    assert p.returncode != 0 and "missing.idx" in p.stderr
    assert not (tmp_path / "o.npy").exists()
