"""Paired embeddings with known shared factors, modality nuisances and a known cross-dimension
mapping (the demo data of CDDS, notebook 07; docs/methods/cdds.md).

Generative story (every number is our choice; the paper uses image/text backbones instead):

    c   ~ N(0, I_k)                  shared semantic factors, seen by both modalities
    n_a ~ N(0, I_p), n_b ~ N(0, I_p) nuisances, one set per modality (its "modality information")

Each modality m has ``dims[m]`` embedding dimensions. ``per_factor`` of them carry each shared
factor (k x per_factor "semantic" dimensions at random positions; the rest carry no factor):

    sem_m[:, i] = s_i * phi_m(g_i * c[:, f_m(i)] + b_i)        (0 where f_m(i) = -1)
    x_m         = std(sem_m) + nuisance_scale * std(h_m(n_m)) + noise * eps

phi differs per modality (tanh for the first, arcsinh(2 .) for the second: different
nonlinear maps of the same factor), gains g_i ~ U(0.7, 2), offsets b_i ~ U(-0.3, 0.3), signs
s_i = +-1, and ``std`` scales each dimension to unit variance. h_m is a fixed random 2-layer
tanh network of the modality's nuisances, added to EVERY dimension, so no single dimension is
clean: semantics and modality information are entangled, which is CDDS' premise.

The known cross-dimension mapping: ``info["mapping"]`` [d_a, d_b] is 1 where dimension i of
the first modality and dimension j of the second carry the same factor, 0 elsewhere;
``info["factor_of_dim"]`` gives the factor of every dimension (-1: no factor).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .._checks import check_int, check_number
from .batch import MultimodalDataset

__all__ = ["make_paired_embeddings", "mapping_order"]

_MAPS = (torch.tanh, lambda z: torch.asinh(2 * z))     # phi of the first and second modality (ours)


def _std(z: torch.Tensor) -> torch.Tensor:
    return (z - z.mean(0)) / (z.std(0) + 1e-6)


def _semantic_part(g, c, d: int, m: int, per_factor: int):
    """Which factor each of the ``d`` dimensions carries (-1: none; ``per_factor`` dimensions
    per shared factor, at random places) and the dimensions' values: modality ``m``'s own
    monotone map of (gain * factor + offset), standardised, with a random sign."""
    n, k_shared = c.shape
    f = torch.full((d,), -1, dtype=torch.long)
    pos = torch.randperm(d, generator=g)[: k_shared * per_factor]
    f[pos] = torch.arange(k_shared).repeat_interleave(per_factor)
    gain = 0.7 + 1.3 * torch.rand(d, generator=g)
    off = 0.6 * torch.rand(d, generator=g) - 0.3
    sign = torch.where(torch.rand(d, generator=g) < 0.5, -1.0, 1.0)
    sem = torch.zeros(n, d)
    has = f >= 0
    sem[:, has] = _std(sign[has] * _MAPS[m](gain[has] * c[:, f[has]] + off[has]))
    return f, sem


def _nuisance_part(g, nu, d: int):
    """The modality's own nuisances through a random tanh network into ``d`` dimensions, standardised."""
    k_nuisance = nu.shape[1]
    hidden = max(32, 2 * d)
    w1 = torch.randn(k_nuisance, hidden, generator=g) * (1.5 / math.sqrt(k_nuisance))
    b1 = torch.randn(hidden, generator=g) * 0.1
    w2 = torch.randn(hidden, d, generator=g) / math.sqrt(hidden)
    return _std(torch.tanh(nu @ w1 + b1) @ w2)


def make_paired_embeddings(n: int = 2000, dims: int | Sequence[int] = 32, k_shared: int = 8, per_factor: int = 2,
                           k_nuisance: int = 8, nuisance_scale: float = 1.0, noise: float = 0.1,
                           n_classes: int = 4, names: Sequence[str] = ("image", "text"),
                           seed: int = 0) -> MultimodalDataset:
    """``n`` paired embeddings of two modalities (default names "image" and "text").

    Returns a `MultimodalDataset` with ``x[name]`` [n, dims_m], ``factors`` "shared" [n, k]
    and "private/<name>" [n, k_nuisance], ``y`` = argmax_c (c W_y) over ``n_classes`` (a
    label that depends on the shared factors only, for colouring plots), and in ``info``:
    "mapping" (float [d_a, d_b], the known cross-dimension mapping), "factor_of_dim"
    ({name: long [d_m]}, -1 for a dimension without factor) and a "description" for claim rows.
    """
    n = check_int("n", n, 10)
    dims = [dims, dims] if isinstance(dims, (int, float)) and not isinstance(dims, bool) else list(dims)
    if len(dims) != 2:
        raise ValueError(f"dims must be an int or 2 ints (one per modality), got {dims!r}")
    dims = [check_int(f"dims[{i}]", d, 1) for i, d in enumerate(dims)]
    k_shared = check_int("k_shared", k_shared, 1)
    per_factor = check_int("per_factor", per_factor, 1)
    k_nuisance = check_int("k_nuisance", k_nuisance, 1)
    nuisance_scale = check_number("nuisance_scale", nuisance_scale, 0.0)
    noise = check_number("noise", noise, 0.0)
    n_classes = check_int("n_classes", n_classes, 2)
    seed = check_int("seed", seed)
    names = [str(s) for s in names]
    if len(names) != 2 or len(set(names)) != 2 or "" in names:
        raise ValueError(f"names must be 2 distinct non-empty modality names, got {names!r}")
    for name, d in zip(names, dims):
        if d < k_shared * per_factor:
            raise ValueError(f"dims for {name!r} must be >= k_shared * per_factor = {k_shared * per_factor} "
                             f"(room for every factor's dimensions), got {d}")

    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, k_shared, generator=g)
    w_y = torch.randn(k_shared, n_classes, generator=g)
    y = (c @ w_y).argmax(1)
    x, factors, factor_of_dim = {}, {"shared": c}, {}
    for m, (name, d) in enumerate(zip(names, dims)):
        f, sem = _semantic_part(g, c, d, m, per_factor)
        nu = torch.randn(n, k_nuisance, generator=g)
        nuis = _nuisance_part(g, nu, d)
        x[name] = (sem + nuisance_scale * nuis + noise * torch.randn(n, d, generator=g)).float()
        factors[f"private/{name}"] = nu
        factor_of_dim[name] = f
    fa, fb = factor_of_dim[names[0]], factor_of_dim[names[1]]
    mapping = ((fa[:, None] == fb[None, :]) & (fa[:, None] >= 0)).float()
    desc = (f"synthetic paired embeddings n={n} dims=[{dims[0]}, {dims[1]}] k_shared={k_shared} "
            f"per_factor={per_factor} k_nuisance={k_nuisance} nuisance_scale={nuisance_scale:g} "
            f"noise={noise:g} seed={seed}")
    return MultimodalDataset(x, y, factors=factors, name="paired-embeddings",
                             class_names=[f"class {i}" for i in range(n_classes)],
                             info=dict(mapping=mapping, factor_of_dim=factor_of_dim, k_shared=k_shared,
                                       per_factor=per_factor, k_nuisance=k_nuisance,
                                       nuisance_scale=nuisance_scale, noise=noise, seed=seed, description=desc))


def mapping_order(factor_of_dim: torch.Tensor) -> torch.Tensor:
    """Dimension order that groups dimensions by factor (factor 0 first, dimensions without a
    factor last), for showing a mapping or related-semantics matrix as blocks."""
    f = torch.as_tensor(factor_of_dim).long()
    if f.ndim != 1:
        raise ValueError(f"factor_of_dim must be a 1-D tensor of factor ids, got shape {tuple(f.shape)}")
    key = torch.where(f < 0, torch.full_like(f, int(f.max()) + 1 if len(f) else 0), f)
    return torch.sort(key * (len(f) + 1) + torch.arange(len(f)), stable=True).indices
