"""A synthetic multimodal generator whose shared and private factors are known.

Generative story (all numbers are our choices; no paper prescribes this data):

    z_s ~ N(0, I_{k_shared})                shared factors, seen by every modality
    z_p^m ~ N(0, I_{k_private})              private factors of modality m only
    y = argmax_c (z_s W_y)_c                 the label depends on the shared factors only
    x_m = g_m([z_s, private_scale * z_p^m]) / std + eps / sqrt(snr_m)

g_m is a fixed random 2-layer tanh network (nonlinear mixing, different per modality), so no
linear read-out of x_m separates shared from private; ``snr`` per modality lets one modality
dominate. With ``seq_len > 1`` every time step is mixed with its own positional code and its
own noise, so evidence must be pooled over time.
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch

from .._checks import check_int, check_number

from .batch import MultimodalDataset

__all__ = ["make_synthetic"]


def _mixer(k_in: int, d_out: int, hidden: int, g: torch.Generator):
    w1 = torch.randn(k_in, hidden, generator=g) * (1.5 / math.sqrt(k_in))
    b1 = torch.randn(hidden, generator=g) * 0.1
    w2 = torch.randn(hidden, d_out, generator=g) / math.sqrt(hidden)
    return lambda z: torch.tanh(z @ w1 + b1) @ w2


def _time_code(T: int) -> torch.Tensor:
    """[T, 4] sin/cos of two slow frequencies (the sequence option's time signal); [1, 0] when T = 1."""
    k_pos = 4 if T > 1 else 0
    t = torch.arange(T, dtype=torch.float32)[:, None]
    freqs = torch.tensor([1.0, 2.0]) * (math.pi / max(T, 2))
    return torch.cat([torch.sin(t * freqs), torch.cos(t * freqs)], 1)[:, :k_pos]


def _per_modality(M: int, names, dims, snr) -> tuple[list[str], list[int], list[float]]:
    """Names, feature sizes and SNRs of the M modalities (one value for all, or one each)."""
    if names is None:
        names = [f"m{i + 1}" for i in range(M)]
    elif isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        raise TypeError(f"names must be a list of {M} modality names, got {names!r}")
    names = [str(s) for s in names]
    if len(names) != M or len(set(names)) != M or "" in names:
        raise ValueError(f"names must be {M} distinct non-empty modality names, got {names}")
    if isinstance(dims, (str, bytes)) or not isinstance(dims, (numbers.Real, Sequence)):
        raise TypeError(f"dims must be an int or {M} ints, got {dims!r}")
    if isinstance(dims, numbers.Real):
        dims = [check_int("dims", dims, 1)] * M
    else:
        dims = [check_int(f"dims[{i}]", d, 1) for i, d in enumerate(dims)]
    if isinstance(snr, (str, bytes)) or not isinstance(snr, (numbers.Real, Sequence)):
        raise TypeError(f"snr must be a positive number or {M} positive numbers, got {snr!r}")
    if isinstance(snr, numbers.Real):
        snr = [check_number("snr", snr, 0.0, lo_open=True, finite=False)] * M
    else:
        snr = [check_number(f"snr[{i}]", v, 0.0, lo_open=True, finite=False) for i, v in enumerate(snr)]
    if len(dims) != M:
        raise ValueError(f"dims must be an int or {M} ints, got {dims}")
    if len(snr) != M:
        raise ValueError(f"snr must be a positive number or {M} positive numbers, got {snr}")
    return names, dims, snr


def make_synthetic(
    n: int = 2000,
    n_modalities: int = 2,
    dims: int | Sequence[int] = 32,
    k_shared: int = 4,
    k_private: int = 4,
    n_classes: int = 4,
    snr: float | Sequence[float] = 4.0,
    private_scale: float = 1.0,
    seq_len: int = 1,
    names: Sequence[str] | None = None,
    seed: int = 0,
) -> MultimodalDataset:
    """Paired samples with known shared/private structure.

    Returns a `MultimodalDataset` whose ``factors`` hold ``"shared"`` [n, k_shared] and
    ``"private/<m>"`` [n, k_private] for every modality, so probes can score disentanglement.
    ``x[m]`` is [n, dims_m] or, with ``seq_len > 1``, [n, seq_len, dims_m].
    ``snr`` may be ``inf`` (no noise); ``private_scale`` must be >= 0.
    """
    M = check_int("n_modalities", n_modalities, 2)          # >= 2: a multimodal dataset
    n = check_int("n", n, 2)
    n_classes = check_int("n_classes", n_classes, 2)
    k_shared = check_int("k_shared", k_shared, 1)
    k_private = check_int("k_private", k_private, 1)
    seq_len = check_int("seq_len", seq_len, 1)
    seed = check_int("seed", seed)
    # snr = inf: no noise at all (allowed); private_scale 0 switches the private factors off
    private_scale = check_number("private_scale", private_scale, 0.0)
    names, dims, snr = _per_modality(M, names, dims, snr)

    g = torch.Generator().manual_seed(seed)
    z_s = torch.randn(n, k_shared, generator=g)
    w_y = torch.randn(k_shared, n_classes, generator=g)
    y = (z_s @ w_y).argmax(1)
    x, factors = {}, {"shared": z_s}
    T = int(seq_len)
    pos = _time_code(T)                                                             # [T, k_pos]
    k_pos = pos.shape[1]
    for m, d, s in zip(names, dims, snr):
        z_p = torch.randn(n, k_private, generator=g)
        factors[f"private/{m}"] = z_p
        mix = _mixer(k_shared + k_private + k_pos, d, hidden=max(64, 2 * d), g=g)
        z = torch.cat([z_s, private_scale * z_p], 1)
        if T == 1:
            clean = mix(z)
        else:
            zt = torch.cat([z[:, None, :].expand(n, T, z.shape[1]), pos[None].expand(n, T, k_pos)], 2)
            clean = mix(zt)
        clean = (clean - clean.mean(0)) / (clean.std(0) + 1e-6)
        x[m] = (clean + torch.randn(clean.shape, generator=g) / math.sqrt(s)).float()
    return MultimodalDataset(
        x, y, factors=factors, name="synthetic",
        class_names=[f"class {c}" for c in range(n_classes)],
        info=dict(snr=dict(zip(names, snr)), k_shared=k_shared, k_private=k_private,
                  seq_len=T, seed=int(seed),
                  description=(f"synthetic n={n} snr=[{', '.join(f'{v:g}' for v in snr)}]"
                               + (f" seq_len={T}" if T > 1 else "") + f" seed={int(seed)}")),
    )
