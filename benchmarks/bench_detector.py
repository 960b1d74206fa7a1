"""Training throughput (images/s) of the RSC-MD detector, each variant relative to the fusion baseline.

    python benchmarks/bench_detector.py [--epochs 1] [--repeats 3] [--size 32] [--n 480]

Same run, same scenes (`make_scenes`), same detector sizes (notebook 06's `MODEL`), same AdamW
settings and seed; only the RSC / MD option (or the MD regulator, the generic path) changes.
Variants are timed round-robin (every repeat runs every variant once, in a rotated order) and
the median is reported, so a burst of load from other jobs on a shared machine hits all
variants alike. Training time only (the Trainer's own clock: no evaluation).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from nbkit.data import make_scenes
from nbkit.experiments import fit
from nbkit.experiments import nb06_detection as D
from nbkit.models import RSCMDDetector
from nbkit.regulate import make_regulator

# name -> (config overrides, regulator factory or None)
VARIANTS = {
    "fusion (baseline)": ({}, None),
    "RSC": ({"rsc": True}, None),
    "MD-A (option)": ({"md": "A"}, None),
    "MD-B (option)": ({"md": "B"}, None),
    "RSC+MD-A (option)": ({"rsc": True, "md": "A"}, None),
    "RSC+MD-A (MD regulator)": ({"rsc": True}, lambda: make_regulator("MD", variant="A")),
    "RSC+MD-B (MD regulator)": ({"rsc": True}, lambda: make_regulator("MD", variant="B")),
    "fusion + SuppressionMonitor(every=20)": ({}, lambda: make_regulator("SuppressionMonitor", every=20)),
}


def time_one(name: str, train, epochs: int, batch_size: int) -> float:
    cfg, reg = VARIANTS[name]
    _, tr = fit(RSCMDDetector, train, seed=0, config=dict(D.MODEL, **cfg), regulator=reg() if reg else None,
                train_config=dict(D.TRAIN, epochs=epochs, batch_size=batch_size, threads=None))
    return tr.samples_seen / tr.train_time_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=32, help="image side (notebook 06: 32 quick, 64 full)")
    ap.add_argument("--n", type=int, default=480, help="training scenes")
    ap.add_argument("--batch-size", type=int, default=D.TRAIN["batch_size"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: small models run fastest)")
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1 or args.n < 2 * args.batch_size:
        ap.error("--epochs and --repeats must be >= 1 and --n at least two batches")
    torch.set_num_threads(args.threads)
    train = make_scenes(args.n, size=args.size, seed=0)
    names = list(VARIANTS)
    ips: dict[str, list[float]] = {k: [] for k in names}
    time_one(names[0], train.subset(torch.arange(4 * args.batch_size)), 1, args.batch_size)   # warm-up
    t0 = time.perf_counter()
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            ips[k].append(time_one(k, train, args.epochs, args.batch_size))
    base = statistics.median(ips[names[0]])
    print(f"scenes {args.n} x {args.size}x{args.size}, batch {args.batch_size}, {args.epochs} epoch(s) per run, "
          f"{args.repeats} round-robin repeats, torch threads {args.threads}; total {time.perf_counter() - t0:.1f} s")
    print(f"{'variant':40s} {'images/s (median)':>18s} {'min':>8s} {'max':>8s} {'x fusion':>9s}")
    for k in names:
        v = ips[k]
        print(f"{k:40s} {statistics.median(v):18.1f} {min(v):8.1f} {max(v):8.1f} {statistics.median(v) / base:9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
