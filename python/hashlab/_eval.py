"""evaluate: the metrics of ``hashlab eval`` on codes from Python."""

import json
import re

from . import _C
from ._arrays import Codes, _codes, _tensor


def _plain(x):
    """numpy scalars and arrays (and tensors) as plain numbers and lists."""
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} {x!r} is not a number, list or string")


def evaluate(query_codes, database_codes, *, query_labels=None, database_labels=None,
             query_features=None, database_features=None, query_vectors=None,
             true_neighbors=None, nbits=None, **options):
    """Evaluates query codes against database codes; returns the metrics dict of
    ``hashlab eval`` (the same keys and, to the last digit, the same values).

    Codes: :class:`Codes` (binary or PQ), or packed bits uint8
    ``[n, ceil(nbits / 8)]`` (``nbits`` default: 8 per byte).

    Label protocol: ``query_labels`` and ``database_labels``, class ids ``[n]``
    or multi-hot ``[n, C]`` (relevant: shares a label). Binary codes are ranked
    by Hamming distance, PQ codes by PQ distance (``pq_distance="adc"`` ranks
    ``query_vectors``, the queries' un-quantised embeddings).

    Euclidean protocol: ``query_features`` and ``database_features``, float
    ``[n, d]``: the relevant items are each query's true nearest neighbours
    in these features. Or ``true_neighbors``, integer ``[nq, k]``: each
    query's nearest database positions in distance order (a benchmark's
    ground truth, e.g. SIFT1M's ``sift_groundtruth.ivecs``) instead of the
    features; an option needing more than k neighbours (``sigah_gt``,
    ``recall_k``, ...) is then an error naming it.

    options: the keys of a config's ``eval:`` section (docs/CONFIG.md), e.g.
    ``map_at=[100, 1000]``, ``radius=[0, 2]``, ``recall_k=100``, ``threads=2``;
    an unknown key or a bad value is a :class:`hashlab.Error` naming it.
    """
    q = _codes(query_codes, "query_codes", nbits)
    db = _codes(database_codes, "database_codes", nbits)
    arrays = {}
    for name, value in (("query_labels", query_labels), ("database_labels", database_labels),
                        ("query_features", query_features),
                        ("database_features", database_features),
                        ("query_vectors", query_vectors), ("true_neighbors", true_neighbors)):
        arrays[name] = None if value is None else _tensor(value, name)[0]
    for a, b in (("query_labels", "database_labels"), ("query_features", "database_features")):
        if (arrays[a] is None) != (arrays[b] is None):
            given, missing = (a, b) if arrays[a] is not None else (b, a)
            raise _C.Error(f"evaluate: {given} given without {missing}")
    try:
        text = json.dumps({"eval": options}, allow_nan=False, default=_plain)
    except (TypeError, ValueError) as e:
        raise _C.Error(f"evaluate() keyword arguments: {e}") from None
    try:
        return _C.evaluate(q._c, db._c, arrays["query_labels"], arrays["database_labels"],
                           arrays["query_features"], arrays["database_features"],
                           arrays["query_vectors"], arrays["true_neighbors"], text)
    except _C.Error as e:
        # The options were read as a config's eval: section from one line of
        # JSON: name the keyword argument, not that line's columns.
        msg = str(e)
        if msg.startswith("evaluate() keyword arguments:"):
            msg = re.sub(r"^evaluate\(\) keyword arguments:\d+:\d+: (eval\.)?", "evaluate(): ", msg)
            raise _C.Error(msg.replace("'eval.", "'")) from None
        raise
