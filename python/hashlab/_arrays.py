"""Arrays in and out of the C++ core, code sets and code files."""

import os
import warnings

import numpy as np
import torch

from . import _C


def _tensor(x, name):
    """``x`` (a torch tensor, numpy array or array-like) as a CPU tensor, sharing
    memory with a C-contiguous numpy array or tensor (the C++ side copies only
    what is not contiguous); and whether the caller gave numpy."""
    if isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise _C.Error(f"{name}: expected a CPU array, got a tensor on {x.device}")
        return x, False
    if x is None:
        raise _C.Error(f"{name}: expected an array, got None")
    if isinstance(x, Codes):
        raise _C.Error(f"{name}: expected an array, got a Codes set (use its .data)")
    a = np.asarray(x)
    if a.dtype == object or a.dtype.kind in "USV":
        raise _C.Error(f"{name}: expected a numeric array, got dtype {a.dtype}")
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    if a.dtype == np.uint16 or a.dtype == np.uint32 or a.dtype == np.uint64:
        a = a.astype(np.int64)  # torch 1.13 has no wider unsigned types
    with warnings.catch_warnings():
        # A read-only array (a memory-mapped .npy): the core only reads it.
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(a), True


def _out(t, as_numpy):
    """A result tensor as the caller's kind of array (numpy views its memory)."""
    return t.numpy() if as_numpy else t


class Codes:
    """A set of codes: binary (packed bits, uint8 ``[n, ceil(nbits / 8)]``) or
    product-quantisation (codeword ids uint8 ``[n, M]`` with codebooks float32
    ``[M, K, dsub]``), as a code file (.hlc) holds them.

    ``Codes.binary(packed, nbits)`` and ``Codes.pq(codebooks, ids)`` make one;
    :func:`read_codes` reads one (memory-mapped: ``data`` views the file).
    ``data``, ``codebooks`` are numpy arrays; ``tensor`` is ``data`` as a torch
    tensor (the same memory).
    """

    __slots__ = ("_c",)

    def __init__(self, _c):
        if not isinstance(_c, _C.Codes):
            raise TypeError("use Codes.binary(packed, nbits), Codes.pq(codebooks, ids) or "
                            "hashlab.read_codes(path)")
        self._c = _c

    @classmethod
    def binary(cls, codes, nbits=None):
        """Binary codes from packed bits uint8 ``[n, ceil(nbits / 8)]``; nbits
        defaults to 8 bits per byte."""
        return _codes(codes, "codes", nbits)

    @classmethod
    def pq(cls, codebooks, ids):
        """PQ codes: codebooks float32 ``[M, K, dsub]`` and ids uint8 ``[n, M]``."""
        cb, _ = _tensor(codebooks, "codebooks")
        i, _ = _tensor(ids, "ids")
        return cls(_C.Codes.pq(cb, i))

    @property
    def kind(self):
        """"binary" or "pq"."""
        return self._c.kind

    @property
    def nbits(self):
        """Bits per code (PQ: 8 per subspace)."""
        return self._c.nbits

    @property
    def data(self):
        """The per-item bytes as numpy uint8: packed bits, or PQ codeword ids."""
        return self._c.data.numpy()

    @property
    def tensor(self):
        """``data`` as a torch tensor (the same memory)."""
        return self._c.data

    @property
    def codebooks(self):
        """PQ codebooks float32 ``[M, K, dsub]`` (None for binary codes)."""
        cb = self._c.codebooks
        return None if cb is None else cb.numpy()

    @property
    def M(self):
        return self._c.M

    @property
    def K(self):
        return self._c.K

    @property
    def dsub(self):
        return self._c.dsub

    def __len__(self):
        return len(self._c)

    def __repr__(self):
        return f"<hashlab.Codes: {len(self)} x {self._c.describe()}>"


def _codes(x, name, nbits=None):
    """A Codes set from Codes or packed bits (nbits: default 8 per byte)."""
    if isinstance(x, Codes):
        if nbits is not None and x.kind == "binary" and x.nbits != nbits:
            raise _C.Error(f"{name}: {x.nbits}-bit codes, but nbits={nbits}")
        return x
    t, _ = _tensor(x, name)
    if nbits is None:
        if t.dim() != 2:
            raise _C.Error(f"{name}: expected uint8 codes [n, bytes], got shape {list(t.shape)}")
        nbits = 8 * t.shape[1]
    try:
        return Codes(_C.Codes.binary(t, int(nbits)))
    except _C.Error as e:
        raise _C.Error(str(e).replace("codes:", f"{name}:", 1)) from None


def pack_bits(bits):
    """Packs codes given as ±1 or {0, 1} values, ``[n, nbits]`` (bool, integer or
    float), into uint8 ``[n, ceil(nbits / 8)]``: bit ``j`` is 1 where the value is
    +1 (or 1). Any other value is an error naming it."""
    t, np_in = _tensor(bits, "bits")
    return _out(_C.pack_bits(t), np_in)


def pack_signs(x):
    """Packs the signs of real values ``[n, nbits]``: bit ``j`` is 1 where
    ``x[:, j] >= 0`` (the exported hasher's ``encode``; NaN counts as negative)."""
    t, np_in = _tensor(x, "x")
    return _out(_C.pack_signs(t), np_in)


def unpack_bits(codes, nbits, signed=True):
    """Unpacks uint8 ``[n, ceil(nbits / 8)]`` codes into float32 ±1 ``[n, nbits]``
    (``signed=False``: uint8 {0, 1})."""
    if isinstance(codes, Codes):
        codes = codes.tensor
    t, np_in = _tensor(codes, "codes")
    return _out(_C.unpack_bits(t, int(nbits), bool(signed)), np_in)


def read_codes(path):
    """Reads a code file (.hlc, binary or PQ) as :class:`Codes`, memory-mapped
    and checked (header, checksum); a problem is a :class:`hashlab.Error`
    naming the file."""
    return Codes(_C.read_codes(os.fspath(path)))


def write_codes(path, codes, nbits=None):
    """Writes :class:`Codes`, or packed bits uint8 ``[n, ceil(nbits / 8)]`` (nbits
    default: 8 per byte), to a code file (.hlc), atomically."""
    _C.write_codes(os.fspath(path), _codes(codes, "codes", nbits)._c)


def code_file_info(path):
    """A code file's header as a dict (kind, version, nbits, count, ...),
    without reading the codes."""
    return _C.code_file_info(os.fspath(path))


def gist(images, image_size=32, orientations=None, blocks=4, prefilter_fc=4.0, boundary=32,
         colour="gray"):
    """GIST descriptors of images, as LMgist computes them (``hashlab data gist``,
    ``data.gist`` in a config): images uint8 or float ``[N, C, H, W]`` (or
    ``[N, H, W]``), C = 1 or 3 -> float32 ``[N, dim]``: 512 for gray with the
    default 4 scales x 8 orientations on a 4 x 4 grid, 960 for ``colour="rgb"``
    (orientations [8, 8, 4] per channel)."""
    t, np_in = _tensor(images, "images")
    if t.dim() == 3:
        t = t.unsqueeze(1)
    out = _C.gist(t, int(image_size), [int(o) for o in (orientations or [])], int(blocks),
                  float(prefilter_fc), int(boundary), str(colour))
    return _out(out, np_in)
