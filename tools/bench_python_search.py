#!/usr/bin/env python3
"""Search from Python against `hashlab bench search`, in one process.

    PYTHONPATH=build/python /usr/bin/python3 tools/bench_python_search.py [--threads 1 2]

For each thread count: the C++ benchmark behind `hashlab bench search`
(hashlab._C.bench_search: our search on random codes, best of --repeats, no
FAISS) and hashlab.BinaryIndex.search called from Python on numpy arrays of
the same shape (1M 64-bit codes x 1,000 queries, top-100 by default), best of
--repeats, alternating the two --rounds times so both see the same machine.
Prints Gdist/s (nq * nb / seconds / 1e9) of each and the ratio Python / C++;
the target is >= 0.95 (nothing copied on the hot path).
"""

import argparse
import json
import time

import numpy as np

import hashlab
from hashlab import _C


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--nb", type=int, default=1_000_000)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="one JSON object per thread count")
    a = ap.parse_args()

    rng = np.random.default_rng(1)
    nbytes = (a.bits + 7) // 8
    db = rng.integers(0, 256, size=(a.nb, nbytes), dtype=np.uint8)
    q = rng.integers(0, 256, size=(a.nq, nbytes), dtype=np.uint8)
    if a.bits % 8:
        mask = np.uint8((1 << (a.bits % 8)) - 1)
        db[:, -1] &= mask
        q[:, -1] &= mask
    index = hashlab.BinaryIndex(a.bits)
    index.add(db)
    index.search(q[:10], a.k)  # warm

    print(f"hashlab {hashlab.__version__}, kernel {hashlab.cpu_kernel()}: "
          f"{a.nb} x {a.bits}-bit codes, {a.nq} queries, top-{a.k}")
    for t in a.threads:
        cpp, py = 0.0, 0.0
        for _ in range(a.rounds):
            r = _C.bench_search(a.bits, a.nb, a.nq, a.k, t, a.repeats)
            cpp = max(cpp, r["ours_gdist_s"])
            best = float("inf")
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                d, i = index.search(q, a.k, threads=t)
                best = min(best, time.perf_counter() - t0)
            py = max(py, a.nq * a.nb / best / 1e9)
        out = {"threads": t, "cpp_gdist_s": round(cpp, 3), "python_gdist_s": round(py, 3),
               "ratio": round(py / cpp, 3)}
        if a.json:
            print(json.dumps(out))
        else:
            print(f"threads {t}: C++ {cpp:.2f} Gdist/s, Python {py:.2f} Gdist/s, "
                  f"Python / C++ = {py / cpp:.3f}")


if __name__ == "__main__":
    main()
