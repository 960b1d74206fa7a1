"""Per-step overhead of each gradient regulator relative to plain joint training.

    python benchmarks/bench_regulators.py [--source avdigits|synthetic] [--epochs 2] [--repeats 3]

Same run, same data, same model (EarlyFusion(aux_heads=True), the RedReg architecture), same
SGD settings and seed; only the Regulator changes. Methods are timed round-robin (every
repeat runs every method once, in a rotated order) and the median ms/step is reported, so a
burst of load from other jobs on a shared machine hits all methods alike. Training time only
(the Trainer's own clock: no evaluation, no data loading from disk).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from nbkit.experiments import fit
from nbkit.experiments import nb05_balance as B
from nbkit.models import EarlyFusion
from nbkit.regulate import make_regulator

METHODS = {"joint (no regulator)": lambda s: None,
           "joint + GradMonitor (logs only)": lambda s: make_regulator("joint", seed=s),
           **{k: (lambda s, k=k: make_regulator(k, seed=s)) for k in B.METHODS if k != "joint"},
           "RedReg paper projection": lambda s: B.regulator_for("paper projection", s)}


def time_one(factory, data, seed: int, epochs: int) -> float:
    _, tr = fit(EarlyFusion, data[0], seed=seed, config=B.MODEL, regulator=factory(seed),
                train_config=dict(B.TRAIN, epochs=epochs, threads=None))   # threads: set once in main
    return 1000.0 * tr.train_time_s / max(tr.step, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default="avdigits", choices=["avdigits", "synthetic"])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: small models run fastest)")
    args = ap.parse_args(argv)
    if args.epochs < 1 or args.repeats < 1:
        ap.error("--epochs and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    try:
        data = B.make_setting(args.source, n=1500, seed=0)
    except FileNotFoundError:
        print("avdigits not found: using the synthetic setting", file=sys.stderr)
        data = B.make_setting("synthetic", n=1500, seed=0)
    names = list(METHODS)
    times: dict[str, list[float]] = {k: [] for k in names}
    time_one(METHODS[names[0]], data, 0, 1)          # warm-up (allocator, first-call overheads)
    t0 = time.perf_counter()
    for r in range(args.repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for k in order:
            times[k].append(time_one(METHODS[k], data, 0, args.epochs))
    base = statistics.median(times[names[0]])
    steps = data[0].n_batches(B.TRAIN["batch_size"], drop_last=True) * args.epochs
    print(f"data: {args.source} train n={len(data[0])}, {steps} steps per run, batch {B.TRAIN['batch_size']}, "
          f"{args.repeats} round-robin repeats, torch threads {args.threads}; total {time.perf_counter() - t0:.1f} s")
    print(f"{'method':34s} {'ms/step (median)':>17s} {'min':>7s} {'max':>7s} {'x joint':>8s}")
    for k in names:
        v = times[k]
        print(f"{k:34s} {statistics.median(v):17.2f} {min(v):7.2f} {max(v):7.2f} {statistics.median(v) / base:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
