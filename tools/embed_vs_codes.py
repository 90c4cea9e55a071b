#!/usr/bin/python3
"""Ranks by a trained hasher's continuous projection and by its sign codes,
on one split, to tell a projection that orders neighbours badly from one that
orders them well but loses it to quantisation (issue 25, SiGAH lead 3).

  tools/embed_vs_codes.py RUN_DIR [RUN_DIR ...] [--queries-per-class 100] [--seed 0]

Data: Fashion-MNIST's training file only (60,000 images; the runs' own test
queries are drawn from the pooled 70,000, so this is not hashlab's split: a
diagnostic, never a basis for choosing settings). 100 queries per class, the
rest of the file is the database; relevant = same label. Prints mAP@all of
(a) Euclidean ranking of embed(x) and (b) Hamming ranking of sign(embed(x))
for each run. Needs only torch.
"""
import argparse
import gzip
import struct
import sys

import torch

ROOT = "/usr/share/datasets/fashion-mnist/"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(shape)


def map_all(dist, qlab, dlab, chunk=100):
    """Mean average precision over the full ranking (ties by index)."""
    aps = []
    for s in range(0, dist.size(0), chunk):
        order = torch.argsort(dist[s:s + chunk], dim=1, stable=True)
        rel = (dlab[order] == qlab[s:s + chunk, None]).double()
        hits = rel.cumsum(1)
        ranks = torch.arange(1, rel.size(1) + 1, dtype=torch.float64)
        ap = (rel * hits / ranks).sum(1) / rel.sum(1).clamp_min(1)
        aps.append(ap)
    return torch.cat(aps).mean().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--queries-per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    x = read_idx(ROOT + "train-images-idx3-ubyte.gz").unsqueeze(1)  # [N,1,28,28] u8
    y = read_idx(ROOT + "train-labels-idx1-ubyte.gz").long()
    g = torch.Generator().manual_seed(a.seed)
    q = torch.cat([torch.nonzero(y == c).flatten()[
        torch.randperm(int((y == c).sum()), generator=g)[:a.queries_per_class]] for c in range(10)])
    mask = torch.ones(len(y), dtype=torch.bool)
    mask[q] = False
    d = torch.nonzero(mask).flatten()
    print("| run | bits | mAP@all, Euclidean on embed(x) | mAP@all, Hamming on sign codes |")
    print("|---|---|---|---|")
    for run in a.runs:
        h = torch.jit.load(run + "/model/hasher.pt")
        with torch.no_grad():
            e = torch.cat([h.embed(x[s:s + 5000]) for s in range(0, len(y), 5000)]).double()
        b = torch.sign(e)
        b[b == 0] = 1
        eu = torch.cdist(e[q], e[d])
        ham = (b.size(1) - b[q] @ b[d].t()) / 2
        print(f"| {run} | {e.size(1)} | {map_all(eu, y[q], y[d]):.4f} | "
              f"{map_all(ham, y[q], y[d]):.4f} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
