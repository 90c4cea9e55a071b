"""Run (finished, interrupted, failed) and train() in process, Ctrl-C included."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import hashlab
from conftest import cli, hashnet_config


def test_finished_run(finished_run):
    run = finished_run
    assert run.finished and run.status == "finished"
    assert run.method == "hashnet" and run.bits == 16 and run.protocol == "label"
    assert run.config["model"]["bits"] == 16 and run.config["train"]["iterations"] == 20
    assert isinstance(run.config["data"]["queries_per_class"], int)
    events = [r["event"] for r in run.records]
    assert events[0] == "start" and events.count("train") == 20
    final = [r for r in run.records if r["event"] == "eval"][-1]
    assert run.final["map_all"] == final["map_all"]
    assert run.report and run.report.endswith("report.html")
    q, db = run.query_codes, run.database_codes
    assert (len(q), len(db), q.nbits) == (25, 275, 16)
    # The exported hasher encodes the split's items to the saved codes.
    split = run.split()
    images = split.features.index_select(0, split.query).float()
    np.testing.assert_array_equal(run.hasher.encode(images).numpy(), q.data)
    assert run.error is None and "finished" in repr(run)


def test_train_with_a_dict_and_overrides(data_dir, tmp_path):
    cfg = {"data": {"format": "idx", "files": [str(data_dir / "images.idx")],
                    "labels": [str(data_dir / "labels.idx")], "queries_per_class": 5},
           "name": "from_dict", "method": "itq", "threads": 1, "model": {"bits": 8}}
    run = hashlab.train(cfg, overrides={"model.bits": 12}, runs_root=tmp_path)
    assert run.finished and run.bits == 12
    assert os.path.dirname(run.path) == str(tmp_path / "from_dict")
    assert run.config["name"] == "from_dict"


def test_train_errors(data_dir, tmp_path):
    with pytest.raises(hashlab.Error, match="unknown method 'hashnett'"):
        hashlab.train({"method": "hashnett", "data": {"files": [str(data_dir / "images.idx")],
                                                      "labels": [str(data_dir / "labels.idx")]}},
                      runs_root=tmp_path)
    with pytest.raises(hashlab.Error, match=r"^train\(\) config dict: optim.lr: value 100 is out of range"):
        hashlab.train({"method": "itq", "optim": {"lr": 100},
                       "data": {"files": [str(data_dir / "images.idx")],
                                "labels": [str(data_dir / "labels.idx")]}}, runs_root=tmp_path)
    with pytest.raises(hashlab.Error, match="_base_ names files relative to a config file"):
        hashlab.train({"_base_": "data.yaml", "method": "itq"}, runs_root=tmp_path)
    with pytest.raises(hashlab.Error, match="missing.yaml"):
        hashlab.train(tmp_path / "missing.yaml", runs_root=tmp_path)
    with pytest.raises(hashlab.Error, match="overrides: expected a list"):
        hashlab.train(hashnet_config(data_dir), overrides="model.bits=8", runs_root=tmp_path)
    with pytest.raises(hashlab.Error, match="not a run directory"):
        hashlab.Run(tmp_path)


def test_failed_run(data_dir, tmp_path):
    # The data file goes missing after the config is read: the job fails
    # before training starts, naming the file, and leaves no run behind.
    bad = data_dir / "failing.yaml"
    bad.write_text(f"_base_: data.yaml\nname: failing\nmethod: itq\nmodel:\n  bits: 8\n"
                   f"data:\n  files: [{tmp_path / 'gone.idx'}]\n")
    with pytest.raises(hashlab.Error, match="gone.idx"):
        hashlab.train(bad, run_dir=tmp_path / "f1")
    # A failure after the run started is recorded in it: the codes cannot be
    # written (a file stands where the codes directory goes).
    os.makedirs(tmp_path / "f2")
    (tmp_path / "f2" / "codes").write_text("in the way")
    with pytest.raises(hashlab.Error, match="codes") as e:
        hashlab.train(hashnet_config(data_dir, name="fails", iterations=5), run_dir=tmp_path / "f2")
    run = hashlab.Run(tmp_path / "f2")
    assert run.status == "failed" and run.final is None
    assert run.error and run.error.splitlines()[0] in str(e.value)
    with pytest.raises(hashlab.Error, match="no database codes"):
        run.database_codes


CTRL_C_SCRIPT = textwrap.dedent("""
    import sys, hashlab
    try:
        hashlab.train(sys.argv[1], run_dir=sys.argv[2])
    except KeyboardInterrupt as e:
        print("KeyboardInterrupt:", e, flush=True)
        sys.exit(3)
""")


def test_ctrl_c_writes_the_checkpoint_then_raises(data_dir, tmp_path):
    cfg = hashnet_config(data_dir, name="long", iterations=1000000)
    run_dir = tmp_path / "long"
    (tmp_path / "ctrl_c.py").write_text(CTRL_C_SCRIPT)
    p = subprocess.Popen([sys.executable, str(tmp_path / "ctrl_c.py"), str(cfg), str(run_dir)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and metrics.read_text().count('"train"') >= 3:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 3, err
    assert "KeyboardInterrupt: training interrupted: checkpoint written in" in out
    assert str(run_dir) in out
    assert (run_dir / "checkpoints" / "last.pt").exists()
    run = hashlab.Run(run_dir)
    assert run.status.startswith("interrupted at step")
    step = int(run.status.split()[-1])
    # Resumed in process, it finishes from the checkpoint.
    done = hashlab.train(cfg, run_dir=run_dir, resume=True,
                         overrides=[f"train.iterations={step + 3}"])
    assert done.finished and done.starts == 2
    steps = [r["step"] for r in done.records if r["event"] == "train"]
    assert steps[-1] == step + 3


def test_readme_example_runs_verbatim(finished_run, tmp_path, monkeypatch, capsys):
    """The README's Python section, as written there, on the tiny run (standing
    in for tools/run.sh's Fashion-MNIST run)."""
    readme = open(os.path.join(os.environ["HASHLAB_SOURCE_DIR"], "README.md")).read()
    start = readme.index("<!-- python-example -->")
    block = readme[readme.index("```python", start) + len("```python"):]
    block = block[:block.index("```")]
    os.makedirs(tmp_path / "runs" / "hashnet_fmnist")
    os.symlink(finished_run.path, tmp_path / "runs" / "hashnet_fmnist" / "20990101-000000")
    monkeypatch.chdir(tmp_path)
    env = {}
    exec(compile(block, "README.md", "exec"), env)
    assert env["metrics"] == finished_run.evaluate()
    assert tuple(env["ids"].shape) == (len(finished_run.query_codes), 10)
    assert "mAP@all" in capsys.readouterr().out
