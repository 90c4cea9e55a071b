"""Code files (.hlc) and bit packing."""

import json

import numpy as np
import pytest
import torch

import hashlab
from conftest import cli


def test_pack_bits_layout_and_round_trip(rng):
    bits01 = rng.integers(0, 2, size=(30, 21)).astype(np.uint8)
    packed = hashlab.pack_bits(bits01)
    # FAISS's layout: bit j in byte j // 8 at position j % 8, least significant first.
    want = np.packbits(np.pad(bits01, ((0, 0), (0, 3))), axis=1, bitorder="little")
    np.testing.assert_array_equal(packed, want)
    np.testing.assert_array_equal(hashlab.pack_bits(bits01 * 2.0 - 1), packed)  # ±1 floats
    np.testing.assert_array_equal(hashlab.pack_bits(bits01.astype(bool)), packed)
    np.testing.assert_array_equal(hashlab.unpack_bits(packed, 21, signed=False), bits01)
    np.testing.assert_array_equal(hashlab.unpack_bits(packed, 21), bits01 * 2.0 - 1)
    assert hashlab.unpack_bits(packed, 21).dtype == np.float32
    # pack_signs: v >= 0 is a 1 bit, as the exported hasher's encode.
    real = rng.normal(size=(30, 21)).astype(np.float32)
    real[0, 0] = 0.0
    np.testing.assert_array_equal(hashlab.pack_signs(real), hashlab.pack_bits(real >= 0))
    t = hashlab.pack_bits(torch.from_numpy(bits01))
    assert isinstance(t, torch.Tensor) and t.numpy().tobytes() == packed.tobytes()


def test_pack_bits_refuses_other_values():
    with pytest.raises(hashlab.Error, match=r"must be ±1 or \{0, 1\}, got 0.5 at \[1, 2\]"):
        hashlab.pack_bits(np.array([[1, 0, 1], [0, 1, 0.5]]))
    with pytest.raises(hashlab.Error, match="mix -1 and 0"):
        hashlab.pack_bits(np.array([[1, 0, -1]]))
    with pytest.raises(hashlab.Error, match=r"expected \[n, nbits\]"):
        hashlab.pack_bits(np.array([1, 0, 1]))


def test_binary_file_round_trip_and_cli(rng, tmp_path):
    packed = hashlab.pack_bits(rng.integers(0, 2, size=(77, 13)))
    hashlab.write_codes(tmp_path / "c.hlc", packed, nbits=13)
    back = hashlab.read_codes(tmp_path / "c.hlc")
    assert back.kind == "binary" and back.nbits == 13 and len(back) == 77
    np.testing.assert_array_equal(back.data, packed)
    info = json.loads(cli("codes", "info", tmp_path / "c.hlc").stdout)
    py_info = hashlab.code_file_info(tmp_path / "c.hlc")
    assert {k: info[k] for k in py_info} == py_info
    # Codes objects are accepted wherever codes are.
    hashlab.write_codes(tmp_path / "c2.hlc", back)
    assert (tmp_path / "c2.hlc").read_bytes() == (tmp_path / "c.hlc").read_bytes()


def test_pq_file_round_trip(rng, tmp_path):
    codebooks = rng.normal(size=(4, 16, 3)).astype(np.float32)
    ids = rng.integers(0, 16, size=(50, 4)).astype(np.uint8)
    c = hashlab.Codes.pq(codebooks, ids)
    assert c.kind == "pq" and c.nbits == 32 and (c.M, c.K, c.dsub) == (4, 16, 3)
    hashlab.write_codes(tmp_path / "pq.hlc", c)
    back = hashlab.read_codes(tmp_path / "pq.hlc")
    assert back.kind == "pq" and len(back) == 50
    np.testing.assert_array_equal(back.data, ids)
    np.testing.assert_array_equal(back.codebooks, codebooks)
    assert hashlab.code_file_info(tmp_path / "pq.hlc")["M"] == 4
    with pytest.raises(hashlab.Error, match=r"codeword id \d+ >= K = 4"):
        hashlab.Codes.pq(codebooks[:, :4], ids | 8)
    with pytest.raises(hashlab.Error, match=r"ids: expected uint8 \[n, 4\]"):
        hashlab.Codes.pq(codebooks, ids[:, :3])


def test_code_file_errors_name_the_file(tmp_path):
    with pytest.raises(hashlab.Error, match="nothing.hlc"):
        hashlab.read_codes(tmp_path / "nothing.hlc")
    (tmp_path / "short.hlc").write_bytes(b"HLCODES1")
    with pytest.raises(hashlab.Error, match="short.hlc"):
        hashlab.read_codes(tmp_path / "short.hlc")
    with pytest.raises(hashlab.Error, match=r"codes: expected uint8 codes \[n, 1\]"):
        hashlab.write_codes(tmp_path / "x.hlc", np.zeros((2, 2), np.uint8), nbits=8)
    with pytest.raises(hashlab.Error, match=r"codes: expected uint8 codes"):
        hashlab.write_codes(tmp_path / "x.hlc", np.zeros((2, 2), np.int64))
    with pytest.raises(hashlab.Error, match="does not exist|No such file|cannot"):
        hashlab.write_codes(tmp_path / "no" / "dir" / "x.hlc", np.zeros((2, 1), np.uint8))
    assert not (tmp_path / "x.hlc").exists()
