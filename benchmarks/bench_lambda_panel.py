"""Latency of the DSRSD lambda panel (nbkit.widgets.lambda_panel, notebook 02).

One "update" = what a slider move triggers in the kernel: retrain a small DSRSD-Net from
scratch at the new (lambda_dec, lambda_orth), collect its validation outputs, compute the
shared correlation and metrics, build the plotly heatmap. The browser's redraw is not
included. Budget: median <= 2 s on a 2-core CPU.

Compared with the naive alternative a user would pick first: retrain the model at the
notebook's full size on every move (d=64 on all ~1200 training samples, 10 epochs with a
validation pass per epoch, as notebook 02's main model).

    .venv/bin/python benchmarks/bench_lambda_panel.py [--moves 15] [--naive 3] [--seed 0]

Timings depend on load: the machine is shared, so the script prints the load average too.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=15, help="slider moves to time (default 15)")
    ap.add_argument("--naive", type=int, default=3, help="full-size retrains to time (default 3; 0 skips)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.moves < 1:
        ap.error("--moves must be >= 1")

    import numpy as np

    from nbkit.experiments import fit
    from nbkit.experiments.nb02_decorrelation import make_data
    from nbkit.models.dsrsd import DSRSD
    from nbkit.widgets import PANEL_LAMBDAS, lambda_panel

    train, val, _ = make_data(n=2000, seed=0)
    t0 = time.perf_counter()
    panel = lambda_panel(train, val)                      # notebook 02's defaults
    build = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    moves = []
    for _ in range(args.moves):                           # one slider moves per step, like a user
        which = "dec" if rng.random() < 0.5 else "orth"
        cur = panel.lambdas[0] if which == "dec" else panel.lambdas[1]
        choices = [v for v in PANEL_LAMBDAS if v != cur]
        new = float(rng.choice(choices))
        t = time.perf_counter()
        if which == "dec":
            panel.dec_slider.value = new                  # fires the observer, exactly as the UI does
        else:
            panel.orth_slider.value = new
        moves.append(time.perf_counter() - t)
    assert len(panel.history) == args.moves + 1
    lat = np.asarray(moves)
    res = {"build_s": build, "moves": args.moves, "median_s": float(np.median(lat)),
           "p90_s": float(np.percentile(lat, 90)), "max_s": float(lat.max()),
           "panel": dict(n_train=len(panel.train), n_eval=len(panel.val), epochs=panel.train_config.epochs,
                         d=panel.config.d)}
    naive, naive_default = [], []
    for i in range(args.naive):
        ld = PANEL_LAMBDAS[i % len(PANEL_LAMBDAS)]
        big = dict(epochs=10, batch_size=64, monitor="auc", progress=False)
        t = time.perf_counter()
        fit(DSRSD, train, val, seed=args.seed, config=dict(lambda_dec=ld, lambda_orth=1e-2), train_config=big)
        naive.append(time.perf_counter() - t)
        # the same with torch's default thread count (TrainConfig(threads=None))
        t = time.perf_counter()
        fit(DSRSD, train, val, seed=args.seed, config=dict(lambda_dec=ld, lambda_orth=1e-2),
            train_config=dict(big, threads=None))
        naive_default.append(time.perf_counter() - t)
    if naive:
        res.update(naive_median_s=statistics.median(naive), naive_runs=len(naive),
                   speedup=statistics.median(naive) / res["median_s"],
                   naive_default_threads_median_s=statistics.median(naive_default),
                   torch_default_threads=__import__("torch").get_num_threads())
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"panel build (first draw, includes imports/warm-up): {build:.2f} s")
    print(f"panel update over {args.moves} slider moves: median {res['median_s']:.2f} s, "
          f"p90 {res['p90_s']:.2f} s, max {res['max_s']:.2f} s "
          f"(retrain on {res['panel']['n_train']} samples x {res['panel']['epochs']} epochs, d={res['panel']['d']}; "
          f"budget 2 s: {'OK' if res['median_s'] <= 2 else 'OVER'})")
    if naive:
        print(f"naive full-size retrain (notebook 02's main model: {len(train)} samples x 10 epochs, d=64): "
              f"median {res['naive_median_s']:.2f} s over {len(naive)} runs -> the panel is "
              f"{res['speedup']:.1f}x faster")
        print(f"naive full-size retrain with torch's default {res['torch_default_threads']} threads: "
              f"median {res['naive_default_threads_median_s']:.2f} s")
    print(f"load average while measuring: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
          f"on {os.cpu_count()} CPUs (other jobs inflate every number)")
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
