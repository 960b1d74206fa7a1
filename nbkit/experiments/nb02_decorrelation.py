"""Notebook 02, decorrelation and orthogonality in DSRSD-Net: the synthetic data of notebooks
02/03 and the (lambda_dec, lambda_orth) grid. The shared-space diagnostics the grid scores
(`nbkit.evaluate.stream_diagnostics`) live with the other evaluation protocols.

Every function returns tidy frames (one row per seed x setting x metric) for `nbkit.viz`.
All sizes and schedules here are our choices (the paper gives none we could retrieve).
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..evaluate import shared_correlation, stream_diagnostics

__all__ = ["LAMBDA_VALUES", "TRAIN", "make_data", "lambda_grid"]

# log-spaced weights including 0 (the sliders and the grid): ours
LAMBDA_VALUES = (0.0, 1e-3, 1e-2, 1e-1, 1.0)

# ours: small, CPU-sized training of every grid cell (AdamW, the Trainer's defaults otherwise)
TRAIN = dict(epochs=6, batch_size=64, monitor="auc", progress=False)


def make_data(n: int = 2000, snr: Sequence[float] = (4.0, 1.0), dims: int = 32, k_shared: int = 4,
              k_private: int = 4, n_classes: int = 4, seed: int = 0,
              fractions: Sequence[float] = (0.6, 0.2, 0.2)):
    """The synthetic two-modality data of notebooks 02/03 (unequal snr: m1 clean, m2 noisy),
    split into train/val/test. Returns ``(train, val, test)``."""
    from ..data.synthetic import make_synthetic

    ds = make_synthetic(n=n, n_modalities=2, dims=dims, k_shared=k_shared, k_private=k_private,
                        n_classes=n_classes, snr=list(snr), seed=seed)
    return ds.split(tuple(fractions), seed=seed)


def lambda_grid(train, val, test, dec_values: Sequence[float] = LAMBDA_VALUES,
                orth_values: Sequence[float] = LAMBDA_VALUES, seeds: Sequence[int] = (0,), config=None,
                train_config=None, init_state: dict | None = None, progress: bool = True,
                return_corr: bool = False):
    """Train one small DSRSD per (lambda_dec, lambda_orth, seed) and score it on ``test``.

    ``config``: the DSRSDConfig (or dict) every cell starts from, its two weights replaced by
    the cell's; ``train_config``: a TrainConfig or dict (default `TRAIN`).
    Returns one row per (lambda_dec, lambda_orth, seed) with the `stream_diagnostics` columns;
    with ``return_corr`` also ``{(lambda_dec, lambda_orth, seed): shared correlation [d, d]}``.
    """
    from tqdm.auto import tqdm

    from .._checks import check_weight
    from ..models.dsrsd import DSRSD
    from . import as_config, as_train_config, check_seeds, fit

    dec_values, orth_values, seeds = list(dec_values), list(orth_values), check_seeds(seeds)
    for name, vals in (("dec_values", dec_values), ("orth_values", orth_values)):
        if not vals:
            raise ValueError(f"{name} must be a non-empty list of weights >= 0, got {vals}")
        for v in vals:
            check_weight(f"{name}[i]", v)
    base = as_config(DSRSD, config)
    tc = as_train_config(TRAIN if train_config is None else train_config)
    rows = []
    jobs = [(s, a, b) for s in seeds for a in dec_values for b in orth_values]
    corr = {}
    for s, a, b in tqdm(jobs, desc="lambda grid", disable=not progress, leave=False):
        model, _ = fit(DSRSD, train, val, seed=s, init_state=init_state, train_config=tc,
                       config=as_config(DSRSD, base, lambda_dec=float(a), lambda_orth=float(b)))
        rows.append({"lambda_dec": float(a), "lambda_orth": float(b), "seed": s,
                     **stream_diagnostics(model, test, seed=s)})
        if return_corr:
            corr[(float(a), float(b), s)] = shared_correlation(model, test)
    df = pd.DataFrame(rows)
    return (df, corr) if return_corr else df
