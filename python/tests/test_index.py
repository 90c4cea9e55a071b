"""BinaryIndex: search and range search against a numpy brute force and the CLI."""

import json

import numpy as np
import pytest
import torch

import hashlab
from conftest import cli


def popcount_distances(q, db):
    """Hamming distances [nq, n] of packed codes, by numpy."""
    x = np.bitwise_xor(q[:, None, :], db[None, :, :])
    return np.unpackbits(x, axis=2).sum(axis=2).astype(np.int32)


def brute_topk(q, db, k):
    d = popcount_distances(q, db)
    ids = np.lexsort((np.broadcast_to(np.arange(db.shape[0]), d.shape), d), axis=1)[:, :k]
    return np.take_along_axis(d, ids, axis=1), ids.astype(np.int64)


@pytest.mark.parametrize("nbits", [8, 12, 64, 100, 256])
def test_search_equals_brute_force(rng, nbits):
    nbytes = (nbits + 7) // 8
    # Few distinct codes: many ties, which the (distance, id) order must break.
    db = hashlab.pack_bits(rng.integers(0, 2, size=(500, nbits)) * (rng.random((500, 1)) < 0.5))
    q = hashlab.pack_bits(rng.integers(0, 2, size=(20, nbits)))
    assert db.shape == (500, nbytes) and db.dtype == np.uint8
    index = hashlab.BinaryIndex(nbits)
    index.add(db[:200])
    index.add(db[200:])
    assert len(index) == index.ntotal == 500 and index.nbits == nbits
    for k in (1, 7, 500):
        d, i = index.search(q, k)
        assert isinstance(d, np.ndarray) and d.dtype == np.int32 and d.shape == (20, k)
        assert i.dtype == np.int64 and i.shape == (20, k)
        bd, bi = brute_topk(q, db, k)
        np.testing.assert_array_equal(d, bd)
        np.testing.assert_array_equal(i, bi)
    lims, d, i = index.range_search(q, nbits // 4)
    full = popcount_distances(q, db)
    assert lims.dtype == np.int64 and lims.shape == (21,)
    for r in range(20):
        want = np.flatnonzero(full[r] <= nbits // 4)
        want = want[np.lexsort((want, full[r][want]))]
        np.testing.assert_array_equal(i[lims[r]:lims[r + 1]], want)
        np.testing.assert_array_equal(d[lims[r]:lims[r + 1]], full[r][want])


def test_torch_in_torch_out(rng):
    db = torch.from_numpy(hashlab.pack_bits(rng.integers(0, 2, size=(50, 32))))
    index = hashlab.BinaryIndex(32)
    index.add(db)
    d, i = index.search(db[:3], 2, threads=1)
    assert isinstance(d, torch.Tensor) and isinstance(i, torch.Tensor)
    assert i[:, 0].tolist() == [0, 1, 2] and d[:, 0].tolist() == [0, 0, 0]


def test_search_matches_cli_byte_for_byte(rng, tmp_path):
    db = hashlab.pack_bits(rng.integers(0, 2, size=(3000, 64)))
    q = hashlab.pack_bits(rng.integers(0, 2, size=(40, 64)))
    index = hashlab.BinaryIndex(64)
    index.add(db)
    index.save(tmp_path / "db.hlc")
    hashlab.write_codes(tmp_path / "q.hlc", q, 64)
    cli("index", "search", tmp_path / "db.hlc", "--queries", tmp_path / "q.hlc", "--k", 25,
        "--out", tmp_path / "r.npy")
    d, i = hashlab.BinaryIndex.load(tmp_path / "db.hlc").search(q, 25)
    ci, cd = np.load(tmp_path / "r.npy"), np.load(tmp_path / "r.distances.npy")
    assert ci.dtype == i.dtype and cd.dtype == d.dtype
    assert ci.tobytes() == i.tobytes() and cd.tobytes() == d.tobytes()
    # Radius search: the CLI's JSON lists, query by query.
    out = json.loads(cli("search", "--db", tmp_path / "db.hlc", "--queries", tmp_path / "q.hlc",
                         "--radius", 24).stdout)
    lims, d, i = index.range_search(q, 24)
    for r, res in enumerate(out["results"]):
        assert res["indices"] == i[lims[r]:lims[r + 1]].tolist()
        assert res["distances"] == d[lims[r]:lims[r + 1]].tolist()


def test_save_load_mmap_and_in_memory(rng, tmp_path):
    db = hashlab.pack_bits(rng.integers(0, 2, size=(100, 20)))
    index = hashlab.BinaryIndex(20)
    index.add(db)
    index.save(tmp_path / "i.hlc")
    for mmap in (True, False):
        back = hashlab.BinaryIndex.load(tmp_path / "i.hlc", mmap=mmap)
        assert back.ntotal == 100 and back.nbits == 20
        np.testing.assert_array_equal(back.codes, db)
        assert (back.path is not None) == mmap
    assert "20 bits" in repr(back)
    # The CLI reads what Python wrote.
    info = json.loads(cli("index", "info", tmp_path / "i.hlc").stdout)
    assert info["count"] == 100 and info["nbits"] == 20


def test_mapped_index_changed_on_disk_is_an_error(rng, tmp_path):
    db = hashlab.pack_bits(rng.integers(0, 2, size=(100, 64)))
    hashlab.write_codes(tmp_path / "i.hlc", db)
    index = hashlab.BinaryIndex.load(tmp_path / "i.hlc")
    with open(tmp_path / "i.hlc", "r+b") as f:
        f.truncate(100)
    with pytest.raises(hashlab.Error, match="i.hlc"):
        index.search(db[:2], 3)


def test_threads_setting():
    n = hashlab.get_num_threads()
    try:
        hashlab.set_num_threads(1)
        assert hashlab.get_num_threads() == 1 == torch.get_num_threads()
    finally:
        hashlab.set_num_threads(n)
    with pytest.raises(hashlab.Error, match="must be >= 1"):
        hashlab.set_num_threads(0)
    assert hashlab.cpu_kernel() in hashlab.available_cpu_kernels()


@pytest.mark.parametrize("bad, message", [
    (np.zeros((3, 8), np.float32), r"queries: expected uint8 codes \[n, 8\].*got float32 \[3, 8\]"),
    (np.zeros((3, 4), np.uint8), r"queries: expected uint8 codes \[n, 8\].*got uint8 \[3, 4\]"),
    (np.zeros((8,), np.uint8), r"queries: expected uint8 codes \[n, 8\].*got uint8 \[8\]"),
    ("abc", r"queries: expected a numeric array"),
    (None, r"queries: expected an array, got None"),
])
def test_bad_queries(bad, message):
    index = hashlab.BinaryIndex(64)
    index.add(np.zeros((5, 8), np.uint8))
    with pytest.raises(hashlab.Error, match=message):
        index.search(bad, 1)


def test_bad_arguments(tmp_path):
    index = hashlab.BinaryIndex(64)
    with pytest.raises(hashlab.Error, match="the index is empty"):
        index.search(np.zeros((1, 8), np.uint8), 1)
    index.add(np.zeros((5, 8), np.uint8))
    with pytest.raises(hashlab.Error, match=r"k must be in \[1, 5\].*got 6"):
        index.search(np.zeros((1, 8), np.uint8), 6)
    with pytest.raises(hashlab.Error, match="radius must be >= 0"):
        index.range_search(np.zeros((1, 8), np.uint8), -1)
    with pytest.raises(hashlab.RadiusLimitExceeded, match="max_results=3"):
        index.range_search(np.zeros((1, 8), np.uint8), 0, max_results=3)
    assert issubclass(hashlab.RadiusLimitExceeded, hashlab.Error)
    assert issubclass(hashlab.Error, ValueError)
    with pytest.raises(hashlab.Error, match=r"codes: expected uint8 codes \[n, 2\]"):
        hashlab.BinaryIndex(12).add(np.zeros((2, 3), np.uint8))
    with pytest.raises(hashlab.Error, match="bits set past bit 11"):
        hashlab.BinaryIndex(12).add(np.full((2, 2), 255, np.uint8))
    with pytest.raises(hashlab.Error, match=r"nbits must be in \[1, 4096\], got 0"):
        hashlab.BinaryIndex(0)
    with pytest.raises(hashlab.Error, match="missing.hlc"):
        hashlab.BinaryIndex.load(tmp_path / "missing.hlc")
    (tmp_path / "junk.hlc").write_bytes(b"not a code file at all" * 4)
    with pytest.raises(hashlab.Error, match="junk.hlc"):
        hashlab.BinaryIndex.load(tmp_path / "junk.hlc")
