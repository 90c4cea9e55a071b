"""evaluate(): the same dict, to the last digit, as `hashlab eval`."""

import json

import numpy as np
import pytest

import hashlab
from conftest import cli


def test_label_protocol_equals_cli(rng, tmp_path):
    q = hashlab.pack_bits(rng.integers(0, 2, size=(40, 32)))
    db = hashlab.pack_bits(rng.integers(0, 2, size=(600, 32)))
    ql, dl = rng.integers(0, 6, size=40), rng.integers(0, 6, size=600)
    hashlab.write_codes(tmp_path / "q.hlc", q)
    hashlab.write_codes(tmp_path / "db.hlc", db)
    np.save(tmp_path / "ql.npy", ql)
    np.save(tmp_path / "dl.npy", dl)
    want = json.loads(cli("eval", "--query-codes", tmp_path / "q.hlc", "--db-codes",
                          tmp_path / "db.hlc", "--query-labels", tmp_path / "ql.npy",
                          "--db-labels", tmp_path / "dl.npy").stdout)
    got = hashlab.evaluate(q, db, query_labels=ql, database_labels=dl)
    assert got == want
    assert "map_all" in got and 0 < got["map_all"] < 1
    # Codes objects and torch tensors give the same.
    got = hashlab.evaluate(hashlab.read_codes(tmp_path / "q.hlc"),
                           hashlab.read_codes(tmp_path / "db.hlc"),
                           query_labels=ql.astype(np.int32), database_labels=dl)
    assert got == want


def test_multi_label_and_options(rng):
    q = hashlab.pack_bits(rng.integers(0, 2, size=(10, 16)))
    db = hashlab.pack_bits(rng.integers(0, 2, size=(100, 16)))
    ql = rng.integers(0, 2, size=(10, 5)).astype(bool)
    dl = rng.integers(0, 2, size=(100, 5)).astype(np.uint8)
    r = hashlab.evaluate(q, db, query_labels=ql, database_labels=dl, map_at=[5, 50],
                         radius=[0, 1], pr_curve=False)
    assert "map_5" in r and "map_50" in r
    # Brute force of mAP@5 with the (distance, id) order.
    d = np.unpackbits(q[:, None, :] ^ db[None], axis=2).sum(2)
    rel = (ql.astype(int) @ dl.T.astype(int)) > 0
    aps = []
    for i in range(10):
        order = np.lexsort((np.arange(100), d[i]))[:5]
        hits = rel[i][order]
        if hits.sum() == 0:
            aps.append(0.0)
            continue
        prec = np.cumsum(hits) / np.arange(1, 6)
        aps.append(float((prec * hits).sum() / hits.sum()))
    assert r["map_5"] == pytest.approx(np.mean(aps), abs=1e-12)


def test_euclidean_protocol_equals_run_and_cli(data_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs_e")
    cfg = data_dir / "itq_e.yaml"
    cfg.write_text("_base_: data.yaml\nname: itq_e\nmethod: itq\nmodel:\n  bits: 16\n"
                   "data:\n  protocol: euclidean\n  num_queries: 20\n"
                   "eval:\n  recall_k: 10\n  recall_at: [1, 10, 100]\n  m_recall_max: 100\n"
                   "  sigah_gt: 20\n  sigah_curves: [1, 10]\n  sigah_retrieved: [1, 10, 100]\n")
    run = hashlab.train(cfg, run_dir=runs / "e")
    assert run.finished and run.protocol == "euclidean"
    want = json.loads(cli("eval", "--run", run.path, "--from-codes").stdout)
    assert run.evaluate() == want
    split = run.split()
    assert split.protocol == "euclidean" and len(split.query) == 20
    opts = run.config["eval"]
    got = hashlab.evaluate(run.query_codes, run.database_codes,
                           query_features=split.query_features,
                           database_features=split.database_features.numpy(), **opts)
    assert got == want
    # Overrides reach the run's evaluation as they reach the CLI's.
    want = json.loads(cli("eval", "--run", run.path, "--from-codes", "eval.recall_k=5").stdout)
    assert run.evaluate(["eval.recall_k=5"]) == want
    assert run.evaluate({"eval.recall_k": 5}) == want


def test_label_run_evaluate_equals_cli(finished_run):
    run = finished_run
    want = json.loads(cli("eval", "--run", run.path, "--from-codes").stdout)
    assert run.evaluate() == want
    split = run.split()
    got = hashlab.evaluate(run.query_codes, run.database_codes, query_labels=split.query_labels,
                           database_labels=split.database_labels, **run.config.get("eval", {}))
    assert got == want


@pytest.mark.parametrize("kwargs, message", [
    (dict(query_labels=np.zeros(3, np.int64)), "query_labels given without database_labels"),
    (dict(query_labels=np.zeros(4), database_labels=np.zeros(8)), "labels must be integers"),
    (dict(query_labels=np.zeros(3, int), database_labels=np.zeros(8, int)), "3 labels for 4 codes"),
    (dict(query_labels=np.full(4, -1), database_labels=np.zeros(8, int)),
     r"class ids must be in \[0, 2\^24\), got -1 at index 0"),
    (dict(query_labels=np.full((4, 2), 2), database_labels=np.zeros((8, 2), int)),
     r"multi-hot labels must be 0 or 1, got 2 at \[0, 0\]"),
    (dict(query_labels=np.zeros(4, int), database_labels=np.zeros(8, int), map_att=[3]),
     r"^evaluate\(\): unknown key 'map_att' \(did you mean 'map_at'\?\)$"),
    (dict(query_labels=np.zeros(4, int), database_labels=np.zeros(8, int), map_at=[0]),
     r"^evaluate\(\): map_at: values must be >= 1, got 0$"),
    (dict(query_labels=np.zeros(4, int), database_labels=np.zeros(8, int), map_at="x"),
     r"^evaluate\(\): map_at: expected"),
    (dict(query_features=np.zeros((4, 3), np.int32), database_features=np.zeros((8, 3))),
     r"query_features: expected floating-point features \[n, d\], got int32"),
    (dict(query_features=np.full((4, 3), np.nan), database_features=np.zeros((8, 3))),
     "query_features: features hold a NaN"),
    (dict(query_labels=np.zeros(4, int), database_labels=np.zeros(8, int),
          query_features=np.zeros((4, 3)), database_features=np.zeros((8, 3))), "not both"),
    (dict(), "give query_labels and database_labels"),
])
def test_bad_inputs(kwargs, message):
    q, db = np.zeros((4, 2), np.uint8), np.zeros((8, 2), np.uint8)
    with pytest.raises(hashlab.Error, match=message):
        hashlab.evaluate(q, db, **kwargs)


def test_mismatched_codes():
    with pytest.raises(hashlab.Error, match="query_codes are 16-bit binary codes but database_codes are 24-bit"):
        hashlab.evaluate(np.zeros((4, 2), np.uint8), np.zeros((8, 3), np.uint8),
                         query_labels=np.zeros(4, int), database_labels=np.zeros(8, int))
