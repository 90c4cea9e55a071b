"""hashlab: deep hashing on LibTorch, from Python.

The C++ core (search, code files, metrics, runs, training) behind a thin
layer in the manner of FAISS's Python API: numpy arrays and torch tensors go
in and come out without a copy where the layout allows, the C++ work runs with
the GIL released, and every error is a :class:`hashlab.Error` (a
``ValueError``) carrying the same one-line message as the ``hashlab`` command.

    import hashlab, torch

    run = hashlab.train("configs/hashnet/hashnet_fmnist.yaml", overrides=["model.bits=64"])
    index = hashlab.BinaryIndex(run.hasher.nbits)
    index.add(run.database_codes)
    distances, ids = index.search(run.query_codes, k=100)
    metrics = hashlab.evaluate(run.query_codes, run.database_codes,
                               query_labels=..., database_labels=...)

Arrays: codes are packed bits, uint8 ``[n, ceil(nbits / 8)]`` with bit ``j``
in byte ``j // 8`` at position ``j % 8`` (FAISS's IndexBinaryFlat layout;
:func:`pack_bits` makes them); features are float32 ``[n, d]``; labels are
integer class ids ``[n]`` or multi-hot ``[n, C]`` of 0/1. Results are numpy
arrays when the inputs were numpy arrays and torch tensors when they were
tensors.

Threads: the C++ work uses :func:`get_num_threads` threads (the same setting
as ``torch.set_num_threads``), or the ``threads=`` of a call.
"""

import torch as _torch  # loads the LibTorch the extension links

from . import _C
from ._arrays import (Codes, code_file_info, gist, pack_bits, pack_signs, read_codes, unpack_bits,
                      write_codes)
from ._index import BinaryIndex
from ._eval import evaluate
from ._runs import Run, Split, train

Error = _C.Error
Error.__doc__ = (
    "A hashlab error: bad input (a file, a field, an argument) named with the problem, "
    "the same one-line message the hashlab command prints.")
RadiusLimitExceeded = _C.RadiusLimitExceeded
RadiusLimitExceeded.__doc__ = (
    "BinaryIndex.range_search found more than max_results results: lower the radius, "
    "search fewer queries at a time, or raise max_results.")

__version__ = "0.1.0"

__all__ = [
    "BinaryIndex", "Codes", "Error", "RadiusLimitExceeded", "Run", "Split",
    "available_cpu_kernels", "code_file_info", "cpu_kernel", "evaluate", "get_num_threads", "gist",
    "pack_bits", "pack_signs", "read_codes", "set_num_threads", "train", "unpack_bits",
    "write_codes",
]


def set_num_threads(n):
    """Sets the CPU threads hashlab (and torch, which shares the setting) uses; n >= 1."""
    _C.set_num_threads(int(n))


def get_num_threads():
    """The CPU threads hashlab's C++ work uses when a call gives no ``threads=``."""
    return _C.get_num_threads()


def cpu_kernel():
    """The Hamming kernel the search runs on this CPU: "avx512-vpopcntdq", "avx2" or "scalar"."""
    return _C.cpu_kernel()


def available_cpu_kernels():
    """The Hamming kernels this CPU can run, fastest first."""
    return list(_C.available_cpu_kernels())
