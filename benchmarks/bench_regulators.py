"""Per-step overhead of each gradient regulator relative to plain joint training.

    python benchmarks/bench_regulators.py [--source avdigits|synthetic] [--epochs 2] [--repeats 3]

Same run, same data, same encoders and fused head, same SGD settings and seed. Each method
runs under its reference protocol (`nb05_balance.PROTOCOLS["reference"]`: OGM-GE, AGM, PMR and
InfoReg without auxiliary heads), so "x joint" is against the joint run with the same loss
("joint, fused CE only" for those four, "joint (no regulator)" with auxiliary heads for the
rest). Alternatives a user would pick are timed beside the defaults: AGM's gradient applied
to the encoders after a plain backward (BalanceBenchmark's way) instead of through the padded
passes, and RedReg's paper projection. Methods are timed round-robin (every
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

AUX, FUSED = {"aux_heads": True}, {"aux_heads": False}
# name -> (regulator factory, EarlyFusion overrides, the baseline it is compared with)
METHODS = {"joint (no regulator)": (lambda s: None, AUX, None),
           "joint, fused CE only": (lambda s: None, FUSED, None),
           "joint + GradMonitor (logs only)": (lambda s: make_regulator("joint", seed=s), AUX, "joint (no regulator)"),
           **{k: ((lambda s, k=k: B.regulator_for(k, s, **B.protocol_of(k)["regulator"])), B.protocol_of(k)["model"],
                  "joint (no regulator)" if B.protocol_of(k)["model"]["aux_heads"] else "joint, fused CE only")
              for k in B.METHODS if k != "joint"},
           "AGM apply='encoders'": (lambda s: make_regulator("AGM", seed=s, apply="encoders"), FUSED,
                                    "joint, fused CE only"),
           "RedReg paper projection": (lambda s: B.regulator_for("paper projection", s), AUX, "joint (no regulator)")}


def time_one(spec, data, seed: int, epochs: int) -> float:
    factory, model, _ = spec
    _, tr = fit(EarlyFusion, data[0], seed=seed, config=dict(B.MODEL, **model), regulator=factory(seed),
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
    med = {k: statistics.median(v) for k, v in times.items()}
    steps = data[0].n_batches(B.TRAIN["batch_size"], drop_last=True) * args.epochs
    print(f"data: {args.source} train n={len(data[0])}, {steps} steps per run, batch {B.TRAIN['batch_size']}, "
          f"{args.repeats} round-robin repeats, torch threads {args.threads}; total {time.perf_counter() - t0:.1f} s")
    print(f"{'method':34s} {'ms/step (median)':>17s} {'min':>7s} {'max':>7s} {'x joint':>8s}  baseline")
    for k in names:
        v, base = times[k], METHODS[k][2]
        ratio = f"{med[k] / med[base]:8.2f}  {base}" if base else f"{'1.00':>8s}  -"
        print(f"{k:34s} {med[k]:17.2f} {min(v):7.2f} {max(v):7.2f} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
