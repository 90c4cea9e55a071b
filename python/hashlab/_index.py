"""BinaryIndex: exact Hamming search, FAISS's IndexBinaryFlat conventions."""

import os

from . import _C
from ._arrays import Codes, _out, _tensor


class BinaryIndex:
    """A database of ``nbits``-bit binary codes searched exactly by Hamming
    distance: the shape of FAISS's ``IndexBinaryFlat``.

        index = hashlab.BinaryIndex(64)
        index.add(database_codes)                 # uint8 [n, 8]
        D, I = index.search(query_codes, k=100)   # int32 [nq, 100], int64 [nq, 100]
        lims, D, I = index.range_search(query_codes, radius=2)
        index.save("db.hlc")
        index = hashlab.BinaryIndex.load("db.hlc")   # memory-mapped

    Results are ordered by (distance, id) ascending, ties broken by the smaller
    id, exactly as ``hashlab search`` orders them. Ids are the positions of the
    codes in the order they were added. The index is saved as a code file
    (.hlc), which ``hashlab index search`` reads too.

    One index may be searched from several Python threads at once (the GIL is
    released during a search), but not added to while it is searched.
    """

    __slots__ = ("_index",)

    def __init__(self, nbits):
        """An empty index of ``nbits``-bit codes (1 to 4096)."""
        self._index = _C.BinaryIndex(int(nbits))

    @classmethod
    def load(cls, path, mmap=True, verify=True, release_pages=False):
        """Loads an index (or any binary code file, .hlc).

        mmap: map the file instead of reading it (a file larger than memory is
        searched out of core). verify: check the payload's checksum (reads the
        file once). release_pages: drop scanned pages from memory as each search
        goes (for files larger than memory). A file changed on disk while mapped
        makes the next search fail with a :class:`hashlab.Error` naming it."""
        self = cls.__new__(cls)
        self._index = _C.BinaryIndex.load(os.fspath(path), bool(mmap), bool(verify),
                                          bool(release_pages))
        return self

    def save(self, path):
        """Writes the codes as a code file (.hlc), atomically."""
        self._index.save(os.fspath(path))

    def add(self, codes):
        """Appends codes: :class:`Codes`, or uint8 ``[m, ceil(nbits / 8)]``; they get
        ids ``ntotal .. ntotal + m - 1``."""
        if isinstance(codes, Codes):
            if codes.kind != "binary" or codes.nbits != self.nbits:
                raise _C.Error(f"codes: {codes!r} into an index of {self.nbits}-bit codes")
            codes = codes.tensor
        t, _ = _tensor(codes, "codes")
        self._index.add(t)

    def search(self, queries, k, threads=0):
        """The ``k`` nearest codes of each query (1 <= k <= ntotal).

        Returns ``(distances, ids)``: int32 ``[nq, k]`` Hamming distances and
        int64 ``[nq, k]`` ids, each row ordered by (distance, id). threads: CPU
        threads (0: :func:`hashlab.get_num_threads`)."""
        q, np_in = self._queries(queries)
        d, i = self._index.search(q, int(k), int(threads))
        return _out(d, np_in), _out(i, np_in)

    def range_search(self, queries, radius, threads=0, max_results=10_000_000):
        """Every code within Hamming distance ``<= radius`` of each query.

        Returns ``(lims, distances, ids)`` in FAISS's layout: the results of
        query ``i`` are ``distances[lims[i]:lims[i+1]]`` and
        ``ids[lims[i]:lims[i+1]]``, ordered by (distance, id); lims is int64
        ``[nq + 1]``. Unlike FAISS's binary range search (``distance < radius``)
        the radius is included, as in ``hashlab search --radius``. More than
        ``max_results`` results (all queries together) raise
        :class:`hashlab.RadiusLimitExceeded` instead of exhausting memory."""
        q, np_in = self._queries(queries)
        lims, d, i = self._index.range_search(q, int(radius), int(threads), int(max_results))
        return _out(lims, np_in), _out(d, np_in), _out(i, np_in)

    def _queries(self, queries):
        if isinstance(queries, Codes):
            if queries.kind != "binary" or queries.nbits != self.nbits:
                raise _C.Error(f"queries: {queries!r} against an index of {self.nbits}-bit codes")
            return queries.tensor, True
        return _tensor(queries, "queries")

    @property
    def nbits(self):
        """Bits per code."""
        return self._index.nbits

    @property
    def ntotal(self):
        """Number of codes in the index."""
        return self._index.ntotal

    @property
    def codes(self):
        """The codes, numpy uint8 ``[ntotal, ceil(nbits / 8)]`` (a view; do not write)."""
        return self._index.codes.numpy()

    @property
    def path(self):
        """The file a loaded index maps, or None."""
        return self._index.path or None

    def __len__(self):
        return self._index.ntotal

    def __repr__(self):
        where = f", mapped from {self.path}" if self._index.mapped else ""
        return f"<hashlab.BinaryIndex: {self.ntotal} codes of {self.nbits} bits{where}>"
