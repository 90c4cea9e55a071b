"""Run directories and in-process training."""

import json
import os
import re

import torch

from . import _C
from ._arrays import read_codes


class Split:
    """A run's split of its data, as it was trained: item indices (int64 torch
    tensors) into the pooled data, and the labels or features of each part.

    query, database, train: indices. labels: every item's labels (None for
    unlabelled data). features: every item's raw features (images uint8
    ``[N, C, H, W]`` or vectors float32 ``[N, D]``; None for image lists).
    protocol: "label" or "euclidean". true_neighbors: int64 ``[Q, k]``, each
    query's nearest database items (positions in ``database``) from the data's
    ground-truth file (``data.ground_truth``), or None.
    """

    def __init__(self, d):
        self.query = d["query"]
        self.database = d["database"]
        self.train = d["train"]
        self.true_neighbors = d["true_neighbors"]
        self.labels = d["labels"]
        self.features = d["features"]
        self.protocol = d["protocol"]

    def _part(self, what, which):
        t = getattr(self, what)
        return None if t is None else t.index_select(0, getattr(self, which))

    @property
    def query_labels(self):
        return self._part("labels", "query")

    @property
    def database_labels(self):
        return self._part("labels", "database")

    @property
    def query_features(self):
        """The queries' raw features, flattened to float32 ``[Q, D]``."""
        f = self._part("features", "query")
        return None if f is None else f.flatten(1).float()

    @property
    def database_features(self):
        f = self._part("features", "database")
        return None if f is None else f.flatten(1).float()

    def __repr__(self):
        return (f"<hashlab.Split: {len(self.query)} queries, {len(self.database)} database, "
                f"{len(self.train)} train; {self.protocol} protocol>")


class Run:
    """A run directory (``hashlab train``'s, or :func:`train`'s), read back:

        run = hashlab.Run("runs/hashnet_fmnist/20261203-101500")
        run.status          # "finished", "interrupted at step 120", "failed", ...
        run.config          # the resolved config.yaml as a dict
        run.final           # the final metrics (None until the run finished)
        run.records         # every metrics.jsonl record, in order
        run.hasher          # the exported TorchScript hasher (torch.jit.load)
        run.database_codes  # hashlab.Codes of codes/database.hlc
        run.report          # path of report.html

    Reading a run never changes it, also while it trains (then ``status`` is
    "training"). What is missing (a run that failed before its codes) raises a
    :class:`hashlab.Error` naming the file when asked for.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        d = _C.read_run(self.path)
        self.status = d["status"]
        self.method = d["method"] or None
        self.bits = d["bits"] or None
        self.protocol = d["protocol"] or None
        self.config = d["config"]
        self.final = d["final"]
        self.starts = d["starts"]
        self.notices = list(d["notices"])
        self._hasher = None

    def _file(self, *parts):
        return os.path.join(self.path, *parts)

    def _existing(self, rel, what):
        p = self._file(rel)
        if not os.path.exists(p):
            raise _C.Error(f"{p}: no {what} (the run is {self.status})")
        return p

    @property
    def finished(self):
        return self.status == "finished"

    @property
    def records(self):
        """metrics.jsonl as a list of dicts, in order (``{"event": "train" |
        "eval" | "interrupt" | "error" | ..., ...}``); a line cut short by a
        kill is left out (``notices`` says so)."""
        path = self._file("metrics.jsonl")
        if not os.path.exists(path):
            return []
        out = []
        with open(path, "rb") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if isinstance(r, dict):
                    out.append(r)
        return out

    @property
    def error(self):
        """The message a failed run recorded, or None."""
        for r in reversed(self.records):
            if r.get("event") == "error":
                return r.get("message")
        return None

    @property
    def hasher(self):
        """The exported hasher, ``torch.jit.load``-ed: ``encode(x)`` packed codes,
        ``forward(x)`` ±1, ``embed(x)`` real values, ``nbits``."""
        if self._hasher is None:
            self._hasher = torch.jit.load(self._existing("model/hasher.pt", "exported hasher"))
        return self._hasher

    @property
    def query_codes(self):
        """codes/query.hlc as :class:`hashlab.Codes` (the split's queries, in order)."""
        return read_codes(self._existing("codes/query.hlc", "query codes"))

    @property
    def database_codes(self):
        """codes/database.hlc as :class:`hashlab.Codes` (the database, in order)."""
        return read_codes(self._existing("codes/database.hlc", "database codes"))

    @property
    def report(self):
        """The path of report.html (None when it was not written)."""
        p = self._file("report.html")
        return p if os.path.exists(p) else None

    def split(self, overrides=()):
        """The run's data split (loads the dataset): :class:`hashlab.Split`."""
        return Split(_C.run_split(self.path, _overrides(overrides)))

    def evaluate(self, overrides=()):
        """Evaluates the saved codes on the run's split with its ``eval:``
        options and ``overrides`` (``["eval.map_at=[100]"]``): the dict of
        ``hashlab eval --run DIR --from-codes``."""
        return _C.evaluate_run_codes(self.path, _overrides(overrides))

    def __repr__(self):
        what = " ".join(str(x) for x in (self.method, self.bits and f"{self.bits} bits") if x)
        return f"<hashlab.Run {self.path}: {what or 'unknown'}, {self.status}>"


def _overrides(overrides):
    """["a.b=1", ...] from a list of strings or a dict {"a.b": 1} (values as JSON,
    which the config reader parses as YAML)."""
    if isinstance(overrides, dict):
        return [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    if isinstance(overrides, str):
        raise _C.Error(f"overrides: expected a list of 'key=value' strings or a dict, got the "
                       f"string {overrides!r}")
    return [str(o) for o in overrides]


def train(config, overrides=(), run_dir=None, runs_root="runs", resume=False):
    """Trains as ``hashlab train`` does, in this process, and returns the :class:`Run`.

    config: a config file's path (with its ``_base_`` chain) or a dict (the same
    keys; no ``_base_``). overrides: ``["model.bits=32", ...]`` or
    ``{"model.bits": 32}``. run_dir: where the run goes (default
    ``<runs_root>/<name>/<timestamp>``); with ``resume=True`` the run to continue
    from its last checkpoint. The job writes the run directory, progress,
    checkpoints, codes, the exported hasher and the report as the command does,
    and sets this process's CPU thread count from the config's ``threads`` as the
    command does (torch shares the setting: :func:`hashlab.set_num_threads`
    changes it back).

    Ctrl-C finishes the current step, writes the checkpoint and raises
    ``KeyboardInterrupt`` naming the run directory (``train(..., run_dir=...,
    resume=True)`` continues it); a second Ctrl-C aborts at once. Bad input is
    a :class:`hashlab.Error`; a run that fails after it started records the
    failure in its directory first.
    """
    if isinstance(config, dict):
        if "_base_" in config:
            raise _C.Error("train() config dict: _base_ names files relative to a config file; "
                           "give the config's path (with overrides=...) or a dict without _base_")
        path, text, name = "", json.dumps(config, default=str), "train() config dict"
    else:
        path, text, name = os.fspath(config), "", ""
    try:
        final, directory, interrupted = _C.train(path, text, name, _overrides(overrides),
                                                 "" if run_dir is None else os.fspath(run_dir),
                                                 os.fspath(runs_root), bool(resume))
    except _C.Error as e:
        if not name:
            raise
        # A dict is read as one line of JSON: its columns mean nothing to the caller.
        raise _C.Error(re.sub(r"^train\(\) config dict:\d+:\d+: ", "train() config dict: ",
                              str(e))) from None
    if interrupted:
        if final is None:
            raise KeyboardInterrupt(
                f"training interrupted: checkpoint written in {directory}; "
                f"hashlab.train(..., run_dir={directory!r}, resume=True) continues it")
        raise KeyboardInterrupt(f"interrupted after the run finished: {directory}")
    if not directory:
        raise _C.Error("train: the job wrote no run directory")
    return Run(directory)
