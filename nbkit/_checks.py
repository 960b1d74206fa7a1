"""Input checks whose errors name the argument and say how to fix it."""
from __future__ import annotations

import math

import torch


def check_probability(name: str, p: float) -> float:
    try:
        p = float(p)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [0, 1], got {p!r}") from None
    if not (0.0 <= p <= 1.0) or math.isnan(p):
        raise ValueError(f"{name} must lie in [0, 1], got {p}")
    return p


def check_nonnegative(name: str, v: float) -> float:
    v = float(v)
    if not v >= 0 or math.isinf(v):
        raise ValueError(f"{name} must be a finite number >= 0, got {v}")
    return v


def check_finite(name: str, t: torch.Tensor) -> torch.Tensor:
    if t.is_floating_point() and not torch.isfinite(t).all():
        n_nan = int(torch.isnan(t).sum())
        n_inf = int(torch.isinf(t).sum())
        raise ValueError(
            f"{name} contains {n_nan} NaN and {n_inf} Inf values; clean or impute them "
            f"before building the dataset"
        )
    return t


def check_batch_size(name: str, n: int, minimum: int = 2) -> None:
    if n < minimum:
        raise ValueError(
            f"{name} needs a batch of at least {minimum} samples (got {n}); "
            f"increase batch_size or drop the last incomplete batch"
        )
