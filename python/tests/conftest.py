"""Fixtures of the hashlab module's tests: the in-tree CLI, tiny data files and
tiny runs trained once per session. ctest sets PYTHONPATH (the built package),
HASHLAB_CLI and HASHLAB_SOURCE_DIR."""

import json
import os
import shutil
import subprocess
import struct
import sys

import numpy as np
import pytest

import hashlab

CLI = os.environ.get("HASHLAB_CLI", "hashlab")
SOURCE_DIR = os.environ.get("HASHLAB_SOURCE_DIR",
                            os.path.dirname(os.path.dirname(os.path.dirname(__file__))))


def cli(*args, check=True, cwd=None):
    """Runs the hashlab command; returns its CompletedProcess (text)."""
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    if check and p.returncode != 0:
        raise AssertionError(f"hashlab {' '.join(map(str, args))} failed ({p.returncode}):\n"
                             f"{p.stderr}")
    return p


def write_idx_images(images, labels, n=300, side=8, classes=5, seed=7):
    """idx files of n side x side images of `classes` classes (a pattern per
    class plus noise) and their labels, as the C++ tests write them."""
    rng = np.random.default_rng(seed)
    lab = (np.arange(n) % classes).astype(np.uint8)
    p = np.arange(side * side)
    base = np.where(((p[None, :] * 7 + lab[:, None] * 13) % 5) == 0, 200.0, 40.0)
    px = np.clip(base + rng.normal(0, 30, size=base.shape), 0, 255).astype(np.uint8)
    with open(images, "wb") as f:
        f.write(struct.pack(">iiii", 0x803, n, side, side))
        f.write(px.tobytes())
    with open(labels, "wb") as f:
        f.write(struct.pack(">ii", 0x801, n))
        f.write(lab.tobytes())
    return px.reshape(n, side, side), lab


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """images.idx / labels.idx (300 8x8 images, 5 classes) and data.yaml reading
    them with 5 queries per class, on one thread."""
    d = tmp_path_factory.mktemp("data")
    write_idx_images(d / "images.idx", d / "labels.idx")
    (d / "data.yaml").write_text(
        f"data:\n  format: idx\n  files: [{d / 'images.idx'}]\n  labels: [{d / 'labels.idx'}]\n"
        "  queries_per_class: 5\nthreads: 1\n")
    return d


def hashnet_config(data_dir, name="hn", iterations=20, extra=""):
    """A tiny HashNet config (MLP, 16 bits) on data_dir's data; returns its path."""
    path = data_dir / f"{name}.yaml"
    path.write_text(
        f"_base_: data.yaml\nname: {name}\nmethod: hashnet\nmodel:\n  bits: 16\n"
        "  backbone: {name: mlp, widths: [32]}\n"
        f"train:\n  iterations: {iterations}\n  batch_size: 32\n  log_every: 1\n"
        "  checkpoint_every: 5\n" + extra)
    return path


@pytest.fixture(scope="session")
def finished_run(data_dir, tmp_path_factory):
    """A tiny HashNet run trained in process by hashlab.train."""
    runs = tmp_path_factory.mktemp("runs")
    return hashlab.train(hashnet_config(data_dir), run_dir=runs / "hn")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
