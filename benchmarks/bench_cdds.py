"""Cost of CDDS' related-semantics and sampling step next to the plain InfoNCE step, in one run.

    .venv/bin/python benchmarks/bench_cdds.py                 # both sweeps, about 2-6 min on 2 busy cores
    .venv/bin/python benchmarks/bench_cdds.py --sweep batch --max-gb 4

On the same random batch (semantic means mu and spreads sigma [B, d] of two modalities, as
CDDS' decoupling network produces them) each step runs forward AND backward:

- ``infonce``:      the plain symmetric InfoNCE of the two [B, d] batches (`nbkit.losses.info_nce`);
                    its similarity matrix is [B, B]: O(B^2 d) time, O(B^2) memory;
- ``rs+sampling``:  CDDS eq. (2)-(4) in both directions: the batch-mean KL matrix K [d, d] by
                    matrix products (`gaussian_kl_matrix`, float64 inside), the related-semantics
                    matrix W (`related_semantics`) and the sampled x-semantic components
                    (`distribution_sampling`): O(B d^2) time, O(d^2 + B d) memory;
- ``rs+sampling (explicit K)``: the same with the per-sample KL tensor [B, d, d] built first
                    (``reduction="none"`` then the mean): O(B d^2) time AND memory;
- ``cdds L_s``:     rs+sampling plus CDDS' two InfoNCE terms between mu and the x-semantics,
                    i.e. the whole alignment part of a CDDS training step.

Each (step, B, d) runs in a forked child process (one CPU thread), so its peak memory is that
child's maximum resident set size above what it held before the step (ru_maxrss); time is the
median of ``--repeats`` timed steps after one untimed step. A run whose estimated working set
exceeds ``--max-gb`` is not started and is reported as "does not fit". The growth order printed
at the end is the least-squares log-log slope over the three largest sizes that ran.
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import statistics
import sys
import time

METHODS = ("infonce", "rs+sampling", "rs+sampling (explicit K)", "cdds L_s")


def estimate_bytes(method: str, B: int, d: int) -> int:
    """A rough working-set estimate (float32, forward + saved tensors + gradients)."""
    base = 8 * B * d * 4
    if method == "infonce":
        return base + 6 * B * B * 4
    if method == "rs+sampling (explicit K)":
        return base + 2 * 6 * B * d * d * 4
    extra = 6 * B * B * 4 if method == "cdds L_s" else 0
    return base + 2 * 8 * d * d * 8 + 4 * B * d * 8 + extra


def make_step(method: str, B: int, d: int, seed: int = 0):
    """A closure running one forward + backward of ``method`` on a fixed random batch."""
    import torch

    from nbkit.losses import gaussian_kl_matrix, info_nce
    from nbkit.models.cdds import distribution_sampling, related_semantics

    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    g = torch.Generator().manual_seed(seed)
    mu_a = torch.randn(B, d, generator=g).requires_grad_(True)
    mu_b = torch.randn(B, d, generator=g).requires_grad_(True)
    sa = (0.2 + torch.rand(B, d, generator=g)).requires_grad_(True)
    sb = (0.2 + torch.rand(B, d, generator=g)).requires_grad_(True)
    alpha = torch.ones(d, requires_grad=True)
    params = [mu_a, mu_b, sa, sb, alpha]

    def kl(ma, s1, mb, s2):
        if method == "rs+sampling (explicit K)":
            return gaussian_kl_matrix(ma, s1, mb, s2, reduction="none").mean(0)
        return gaussian_kl_matrix(ma, s1, mb, s2)

    def step():
        for p in params:
            p.grad = None
        if method == "infonce":
            loss = info_nce(mu_a, mu_b)
        else:
            Wa = related_semantics(kl(mu_a, sa, mu_b, sb), alpha)
            Wb = related_semantics(kl(mu_b, sb, mu_a, sa), alpha)
            xa = distribution_sampling(Wa, mu_b, sb, generator=g)
            xb = distribution_sampling(Wb, mu_a, sa, generator=g)
            loss = (info_nce(mu_a, xa) + info_nce(mu_b, xb)) if method == "cdds L_s" else (xa.sum() + xb.sum())
        loss.backward()

    return step


def _child(method, B, d, repeats, q):
    import resource

    import torch

    torch.set_num_threads(1)
    try:
        step = make_step(method, B, d)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        step()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before     # KiB on Linux
        q.put(("ok", statistics.median(times) * 1000, peak / 1024))
    except (MemoryError, RuntimeError) as exc:
        q.put(("error", f"{type(exc).__name__}: {exc}".splitlines()[0][:80], math.nan))


def measure(method: str, B: int, d: int, repeats: int = 3, max_gb: float = 8.0, timeout: float = 600.0) -> dict:
    """One (step, B, d): ms per step (median) and peak MB, or why it did not run."""
    est = estimate_bytes(method, B, d) / 2**30
    row = {"method": method, "B": B, "d": d, "est_gb": est, "ms": math.nan, "peak_mb": math.nan, "status": "ok"}
    if est > max_gb:
        row["status"] = f"does not fit in {max_gb:g} GB (estimated {est:.1f} GB)"
        return row
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(method, B, d, repeats, q))
    p.start()
    p.join(timeout)
    if p.is_alive():
        p.kill()
        p.join()
        row["status"] = f"timed out after {timeout:g} s"
    elif p.exitcode != 0:
        row["status"] = f"killed (exit code {p.exitcode}; out of memory?)"
    else:
        status, ms, mb = q.get()
        if status == "ok":
            row["ms"], row["peak_mb"] = ms, mb
        else:
            row["status"] = ms
    return row


def growth(rows: list[dict], key: str, size: str, last: int = 3) -> dict[str, str]:
    """Per method: the least-squares log-log slope of ``key`` against ``size`` over the ``last``
    largest sizes that ran (1 = linear, 2 = quadratic; the small sizes are dominated by fixed
    per-call costs, and one pair of points is too noisy on a shared CPU)."""
    out = {}
    for m in METHODS:
        pts = sorted((r[size], r[key]) for r in rows if r["method"] == m and r["status"] == "ok" and r[key] > 0)[-last:]
        if len(pts) >= 2:
            x = [math.log(p[0]) for p in pts]
            y = [math.log(p[1]) for p in pts]
            mx, my = sum(x) / len(x), sum(y) / len(y)
            slope = sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)
            out[m] = f"{slope:.2f}"
    return out


def _table(rows: list[dict], size: str) -> str:
    lines = [f"  {'step':<26}{size:>6}  {'ms/step':>10}  {'peak MB':>9}  note"]
    for r in rows:
        ms = f"{r['ms']:10.2f}" if r["status"] == "ok" else f"{'—':>10}"
        mb = f"{r['peak_mb']:9.1f}" if r["status"] == "ok" else f"{'—':>9}"
        lines.append(f"  {r['method']:<26}{r[size]:>6}  {ms}  {mb}  {'' if r['status'] == 'ok' else r['status']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", choices=("batch", "d", "both"), default="both")
    ap.add_argument("--batches", default="64,128,256,512,1024,2048,4096", help="batch sizes of the batch sweep")
    ap.add_argument("--d", type=int, default=128, help="d of the batch sweep (default 128)")
    ap.add_argument("--dims", default="32,64,128,256,512,1024", help="d values of the d sweep")
    ap.add_argument("--batch", type=int, default=256, help="batch size of the d sweep (default 256)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {list(METHODS)}")
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per run (median reported)")
    ap.add_argument("--max-gb", type=float, default=8.0, help="skip runs whose estimated working set exceeds this")
    args = ap.parse_args(argv)
    try:
        batches = [int(v) for v in args.batches.split(",")]
        dims = [int(v) for v in args.dims.split(",")]
    except ValueError:
        ap.error("--batches and --dims must be comma-separated integers")
    methods = [m.strip() for m in args.methods.split(",")]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"unknown --methods {bad}; choose from {list(METHODS)}")
    if min(batches + dims + [args.d, args.batch]) < 2 or args.repeats < 1 or not args.max_gb > 0:
        ap.error("sizes must be >= 2, --repeats >= 1 and --max-gb > 0")
    print(f"CDDS related-semantics + sampling vs InfoNCE, forward + backward, 1 CPU thread, "
          f"{args.repeats} timed steps per run (median); peak = max RSS growth of a forked child")
    if args.sweep in ("batch", "both"):
        rows = [measure(m, B, args.d, args.repeats, args.max_gb) for B in batches for m in methods]
        print(f"\nbatch sweep (d = {args.d}):\n" + _table(rows, "B"))
        print(f"  growth order in B (time): {growth(rows, 'ms', 'B')}")
        print(f"  growth order in B (peak memory): {growth(rows, 'peak_mb', 'B')}")
    if args.sweep in ("d", "both"):
        rows = [measure(m, args.batch, d, args.repeats, args.max_gb) for d in dims for m in methods]
        print(f"\nd sweep (B = {args.batch}):\n" + _table(rows, "d"))
        print(f"  growth order in d (time): {growth(rows, 'ms', 'd')}")
        print(f"  growth order in d (peak memory): {growth(rows, 'peak_mb', 'd')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
