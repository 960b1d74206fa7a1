"""Quantizer throughput: nbkit's VectorQuantizerEMA, ResidualVQ and FSQ against
vector-quantize-pytorch's VectorQuantize (EMA), ResidualVQ and FSQ on identical inputs, in
the same run: forward + backward of a batch of 2,560 vectors of 256 dimensions into 400 codes
(RVQ: 4 stages x 400; FSQ: levels [5, 5, 4, 4] = 400 codes, projections 256 <-> 4), training
mode (codebook EMA updates included), timed round-robin. Prints vectors/s, the ratio ours/theirs (goal >= 1.0)
and the peak memory of one step of each (CUDA: torch.cuda.max_memory_allocated; CPU: torch's
profiler, the peak of CPU memory allocated by the step's operators).

    python benchmarks/bench_quantize.py [--repeats 20] [--device cpu|cuda] [--threads 1]

Needs the ``bench`` extra (vector-quantize-pytorch); without it only ours is timed.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from nbkit.nn.quantize import FSQ, ResidualVQ, VectorQuantizerEMA

N, D, K = 2560, 256, 400


def theirs(kind: str):
    try:
        import vector_quantize_pytorch as vqp
    except ImportError:
        return None
    if kind == "vq":
        return vqp.VectorQuantize(dim=D, codebook_size=K, decay=0.99, commitment_weight=0.25)
    if kind == "rvq":
        return vqp.ResidualVQ(dim=D, num_quantizers=4, codebook_size=K, decay=0.99, commitment_weight=0.25)
    return vqp.FSQ([5, 5, 4, 4], dim=D)


def ours(kind: str):
    if kind == "vq":
        return VectorQuantizerEMA(K, D)
    if kind == "rvq":
        return ResidualVQ(K, D, n_stages=4)
    return FSQ((5, 5, 4, 4), dim=D)


def step(module, z, is_ours: bool):
    out = module(z)
    if is_ours:
        q, loss = out.quantized, out.commitment
    else:
        q = out[0]
        loss = out[2].sum() if len(out) > 2 and isinstance(out[2], torch.Tensor) else q.sum() * 0
    (q.square().mean() + loss).backward()


def time_pair(pair, device, repeats: int):
    """vectors/s and peak MiB of each (module, is_ours) in ``pair``, timed round-robin (each
    repeat times every module once), so a burst of load elsewhere hits both alike."""
    z = torch.randn(1, N, D, device=device, requires_grad=True)
    mods = [(m.to(device).train(), o) for m, o in pair]
    for m, o in mods:
        for _ in range(3):                               # warm-up
            step(m, z, o)
    times = [[] for _ in mods]
    for _ in range(repeats):
        for k, (m, o) in enumerate(mods):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            step(m, z, o)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t0)
    out = []
    for (m, o), ts in zip(mods, times):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            step(m, z, o)
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = cpu_peak_mib(lambda: step(m, z, o))
        out.append((N / statistics.median(ts), peak))
    return out


def cpu_peak_mib(fn) -> float:
    """Peak of (allocated - freed) CPU memory over the operators of one call, from the profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.cpu_memory_usage), key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in events:
        cur += e.cpu_memory_usage
        peak = max(peak, cur)
    return peak / 2**20


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    print(f"device {dev}, threads {a.threads}, batch {N} x {D}, {K} codes, {a.repeats} repeats (median)")
    print(f"{'quantizer':10s} {'ours vec/s':>12s} {'theirs vec/s':>13s} {'ratio':>6s} {'ours MiB':>9s} {'theirs MiB':>11s}")
    for kind in ("vq", "rvq", "fsq"):
        torch.manual_seed(0)
        mine = ours(kind)
        torch.manual_seed(0)
        th = theirs(kind)
        if th is None:
            (o_rate, o_mem), = time_pair([(mine, True)], dev, a.repeats)
            print(f"{kind:10s} {o_rate:12.0f} {'(not installed)':>13s} {'':6s} {o_mem:9.1f}")
            continue
        (o_rate, o_mem), (t_rate, t_mem) = time_pair([(mine, True), (th, False)], dev, a.repeats)
        print(f"{kind:10s} {o_rate:12.0f} {t_rate:13.0f} {o_rate / t_rate:6.2f} {o_mem:9.1f} {t_mem:11.1f}")


if __name__ == "__main__":
    main()
