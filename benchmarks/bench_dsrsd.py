"""Training throughput of DSRSD-Net next to early and late fusion, in one run.

    .venv/bin/python benchmarks/bench_dsrsd.py            # defaults: about 10-30 s on 2 CPU cores
    .venv/bin/python benchmarks/bench_dsrsd.py --n 8192 --dims 256 --d 128 --device cuda

Every model trains on the same synthetic data (nbkit.data.make_synthetic, sizes printed) with
the same batches through the Trainer's own step (forward, its weighted loss terms, backward,
fused AdamW step, History row), so the figure is what training costs. Throughput is samples/s, the median over ``--repeats`` timed windows of ``--steps`` steps (each after
``--warmup`` untimed steps with a fresh AdamW), taken round-robin over the models. DSRSD-Net does more per step than the baselines (two streams, a gate and four
auxiliary losses), so it is expected to be slower; the ratio is the number to read.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time


def throughput(model, ds, batch_size: int = 128, steps: int = 30, warmup: int = 5, repeats: int = 3,
               lr: float = 1e-3) -> list[float]:
    """Training samples/s of ``model`` through `nbkit.train.Trainer`'s own step, one value per
    repeat of ``steps`` timed steps after ``warmup`` untimed ones (a fresh optimizer first).
    Batches cycle over ``ds`` in a fixed order, so every model sees the same data."""
    from nbkit.train import Trainer

    if len(ds) < batch_size:
        raise ValueError(f"ds has {len(ds)} samples, fewer than batch_size={batch_size}")
    trainer = Trainer(model, lr=lr, batch_size=batch_size, progress=False, threads=None,
                      device=str(next(model.parameters()).device))
    trainer.optimizer = trainer.make_optimizer()
    trainer.regulator.attach(model, trainer)
    model.train()
    batches = list(ds.batches(batch_size, drop_last=True))
    for i in range(warmup):
        trainer._step(batches[i % len(batches)], 0)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            trainer._step(batches[i % len(batches)], 0)
        rates.append(steps * batch_size / (time.perf_counter() - t0))
    return rates


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4096, help="synthetic samples (default 4096)")
    ap.add_argument("--modalities", type=int, default=2, help="number of modalities (default 2)")
    ap.add_argument("--dims", type=int, default=64, help="features per modality (default 64)")
    ap.add_argument("--seq-len", type=int, default=1, help="time steps per sample; > 1 uses conv encoders")
    ap.add_argument("--d", type=int, default=64, help="representation size d (default 64)")
    ap.add_argument("--hidden", type=int, default=128, help="hidden width (default 128)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50, help="timed steps per repeat")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=7, help="timed windows per model, round-robin; the median is reported")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: a shared 2-core CPU is oversubscribed by more; 0 = torch default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    ap.add_argument("--models", default="DSRSD,EarlyFusion,LateFusion",
                    help="comma-separated subset of DSRSD, EarlyFusion, LateFusion, GatedFusion, CoAttention")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name in ("n", "modalities", "dims", "seq_len", "d", "hidden", "batch_size", "steps", "repeats"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.modalities < 2:
        ap.error("--modalities must be >= 2")
    if args.n < args.batch_size:
        ap.error(f"--n ({args.n}) must be at least --batch-size ({args.batch_size})")

    import torch

    from nbkit import models as zoo
    from nbkit.data import make_synthetic

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda asked for, but no CUDA device is available")
    names = [s.strip() for s in args.models.split(",") if s.strip()]
    unknown = [s for s in names if s not in ("DSRSD", "EarlyFusion", "LateFusion", "GatedFusion", "CoAttention")]
    if unknown or not names:
        ap.error(f"unknown --models {unknown}")

    ds = make_synthetic(n=args.n, n_modalities=args.modalities, dims=args.dims, seq_len=args.seq_len, seed=args.seed)
    shape = f"[{args.seq_len}, {args.dims}]" if args.seq_len > 1 else f"[{args.dims}]"
    print(f"data: make_synthetic n={args.n}, {args.modalities} modalities x {shape}, {ds.n_classes} classes; "
          f"batch {args.batch_size}, d={args.d}, hidden={args.hidden}; device={device}, "
          f"torch threads={torch.get_num_threads()}, torch {torch.__version__}")
    print(f"timing: median of {args.repeats} windows x {args.steps} steps (after {args.warmup} warm-up steps)")
    ds = ds.subset(torch.arange(len(ds)))          # a copy we may move
    ds.x = {m: t.to(device) for m, t in ds.x.items()}
    ds.y, ds.present = ds.y.to(device), ds.present.to(device)

    built = {}
    for name in names:
        torch.manual_seed(args.seed)
        built[name] = getattr(zoo, name).for_dataset(ds, d=args.d, hidden=args.hidden).to(device)
    rates = {name: [] for name in names}
    t_all = time.perf_counter()
    # round-robin: each repeat times every model once, so a burst of load elsewhere on the
    # machine hits all models alike
    for r in range(args.repeats):
        for name, model in built.items():
            rates[name] += throughput(model, ds, batch_size=args.batch_size, steps=args.steps,
                                      warmup=args.warmup, repeats=1)
        print(f"  repeat {r + 1}/{args.repeats} done", file=sys.stderr, flush=True)
    rows = [(name, sum(p.numel() for p in built[name].parameters()), statistics.median(rates[name]),
             min(rates[name]), max(rates[name])) for name in names]
    ref = {r[0]: r[2] for r in rows}
    print(f"\n{'model':<12} {'params':>9} {'samples/s (median)':>19} {'min':>9} {'max':>9} {'vs DSRSD':>9}")
    for name, n_params, med, lo, hi in rows:
        rel = f"{med / ref['DSRSD']:.2f}x" if "DSRSD" in ref else "-"
        print(f"{name:<12} {n_params:>9,} {med:>19,.0f} {lo:>9,.0f} {hi:>9,.0f} {rel:>9}")
    print(f"\ntotal {time.perf_counter() - t_all:.1f} s; timings on a shared machine are inflated by other load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
