"""Notebook 02, decorrelation and orthogonality in DSRSD-Net: the synthetic data of notebooks
02/03 and the (lambda_dec, lambda_orth) grid. The shared-space diagnostics the grid scores
(`nbkit.evaluate.stream_diagnostics`) live with the other evaluation protocols.

Every function returns tidy frames (one row per seed x setting x metric) for `nbkit.viz`.
All sizes and schedules here are our choices (the paper gives none we could retrieve).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..evaluate import shared_correlation, stream_diagnostics

__all__ = ["LAMBDA_VALUES", "TRAIN", "make_data", "lambda_grid", "claim_rows", "summary", "reading",
           "shared_maps", "offdiag_mass", "read_before_after", "read_panel", "read_grid", "read_corners",
           "read_leak"]

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
    from .._checks import check_weight
    from ..models.dsrsd import DSRSD
    from ..progress import progress_bar
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
    bar = progress_bar(len(jobs), "lambda grid", enabled=progress)
    for s, a, b in jobs:
        bar.update(1)
        model, _ = fit(DSRSD, train, val, seed=s, init_state=init_state, train_config=tc,
                       config=as_config(DSRSD, base, lambda_dec=float(a), lambda_orth=float(b)))
        rows.append({"lambda_dec": float(a), "lambda_orth": float(b), "seed": s,
                     **stream_diagnostics(model, test, seed=s)})
        if return_corr:
            corr[(float(a), float(b), s)] = shared_correlation(model, test)
    bar.close()
    df = pd.DataFrame(rows)
    return (df, corr) if return_corr else df


def claim_rows(fact: pd.DataFrame, lambda_dec: float, lambda_orth: float, dataset: str,
               record: bool = True) -> pd.DataFrame:
    """Notebook 02's claims from the 3 x 3 factorial ``fact`` (a `lambda_grid` frame over
    {0, lambda, 1} for both weights, several seeds), each paired by seed:

    - L_dec decorrelates the shared space: off-diagonal mass at lambda_dec = w (w = the
      chosen weight, then 1) minus at 0, lambda_orth fixed; claimed < 0;
    - L_orth makes the streams orthogonal: L_orth at lambda_orth = w minus at 0; claimed < 0;
    - both together give a more disentangled shared stream: disentanglement at the chosen
      weights minus at (0, 0); claimed > 0.
    The paper states all three qualitatively (no numbers)."""
    from ..claims import claim

    ref = "DSRSD-Net paper, method (qualitative, no number)"
    kw = dict(paper="DSRSD-Net (arXiv 2512.07568)", by=["lambda_dec", "lambda_orth"], dataset=dataset,
              reference=ref, record=record, digits=4)
    rows = []
    for w in (lambda_dec, 1.0):
        rows.append(claim(fact, claim=f"L_dec decorrelates the shared space (off-diagonal mass falls; lambda_dec 0 -> {w:g})",
                          value="offdiag", treatment=(float(w), float(lambda_orth)), control=(0.0, float(lambda_orth)),
                          direction="less", **kw))
    for w in (lambda_orth, 1.0):
        rows.append(claim(fact, claim=f"L_orth makes shared and private streams orthogonal (lambda_orth 0 -> {w:g})",
                          value="orth", treatment=(float(lambda_dec), float(w)), control=(float(lambda_dec), 0.0),
                          direction="less", **kw))
    rows.append(claim(fact, claim=f"L_dec + L_orth give a more disentangled shared stream "
                                  f"(both at {lambda_dec:g}/{lambda_orth:g} vs both 0)",
                      value="disentanglement", treatment=(float(lambda_dec), float(lambda_orth)), control=(0.0, 0.0),
                      direction="greater", **kw))
    return pd.concat(rows, ignore_index=True)


def _cell(grid: pd.DataFrame, a: float, b: float, metric: str) -> float:
    v = grid[(grid.lambda_dec == a) & (grid.lambda_orth == b)][metric]
    if v.empty:
        raise KeyError(f"the grid has no cell lambda_dec={a:g}, lambda_orth={b:g}")
    return float(v.mean())


def summary(grid: pd.DataFrame, diag_before: dict, diag_after: dict, latencies) -> pd.DataFrame:
    """Notebook 02's closing table (all measured here; the paper reports none of these)."""
    lat = pd.Series(list(latencies), dtype=float)
    c = (lambda a, b, m: _cell(grid, a, b, m))
    return pd.DataFrame([
        {"quantity": "main model test AUC (trained)", "value": f"{diag_after['auc']:.3f}"},
        {"quantity": "off-diagonal mass before / after training",
         "value": f"{diag_before['offdiag']:.3f} / {diag_after['offdiag']:.3f}"},
        {"quantity": "grid: off-diagonal mass at lambda_dec = 0 / 1 (lambda_orth = 0)",
         "value": f"{c(0.0, 0.0, 'offdiag'):.3f} / {c(1.0, 0.0, 'offdiag'):.3f}"},
        {"quantity": "grid: L_orth at lambda_orth = 0 / 1 (lambda_dec = 0)",
         "value": f"{c(0.0, 0.0, 'orth'):.3f} / {c(0.0, 1.0, 'orth'):.3f}"},
        {"quantity": f"grid: test AUC range over the {len(grid.groupby(['lambda_dec', 'lambda_orth']))} settings",
         "value": f"{grid.auc.min():.3f} .. {grid.auc.max():.3f}"},
        {"quantity": "panel update latency in this run (s, includes the first call's warm-up)",
         "value": f"{lat.median():.2f} median over {len(lat)}"},
    ])


def reading(grid: pd.DataFrame, lambda_dec: float, lambda_orth: float) -> str:
    """The closing paragraph of notebook 02, its numbers taken from ``grid`` (so it cannot
    drift from the run): what each weight does at 1 and at the chosen value, the AUC cost,
    and whether the probe-based disentanglement improves."""
    c = (lambda a, b, m: _cell(grid, a, b, m))
    off0, off1, offw = c(0.0, 0.0, "offdiag"), c(1.0, 0.0, "offdiag"), c(lambda_dec, 0.0, "offdiag")
    orth0, orth1, orthw = c(0.0, 0.0, "orth"), c(0.0, 1.0, "orth"), c(0.0, lambda_orth, "orth")
    auc0, auc11 = c(0.0, 0.0, "auc"), c(1.0, 1.0, "auc")
    dis0, dis = c(0.0, 0.0, "disentanglement"), c(lambda_dec, lambda_orth, "disentanglement")
    leak0, leak11 = c(0.0, 0.0, "r2_shared_to_private"), c(1.0, 1.0, "r2_shared_to_private")
    better = "improves" if dis > dis0 else "does not improve"
    return (f"At weight 1, $L_{{dec}}$ takes the off-diagonal mass from {off0:.3f} to {off1:.3f} "
            f"(x{off1 / off0:.2f}) and $L_{{orth}}$ takes $L_{{orth}}$ from {orth0:.3f} to {orth1:.3f} "
            f"(x{orth1 / orth0:.2f}); test AUC moves from {auc0:.3f} (both 0) to {auc11:.3f} (both 1). "
            f"At the chosen weights ({lambda_dec:g} / {lambda_orth:g}) the changes are small: off-diagonal mass "
            f"{off0:.4f} -> {offw:.4f}, $L_{{orth}}$ {orth0:.4f} -> {orthw:.4f}, so a \"supported\" verdict there "
            f"means consistent over seeds, not large. The probe-based disentanglement {better} with the two "
            f"losses on this data ({dis0:+.3f} at (0, 0) vs {dis:+.3f} at the chosen weights), and the shared "
            f"stream's R² on the private factors goes from {leak0:.3f} at (0, 0) to {leak11:.3f} at (1, 1).")



# ------------------------------------------------------------- the shared space in 2-D
def shared_maps(train, test, weights: Sequence[float] = (0.0, 1.0), config=None, train_config=None, seed: int = 0,
                n: int = 300, method: str = "tsne") -> dict:
    """2-D maps of the stacked shared space (both modalities of the same ``n`` test samples)
    of a small DSRSD trained with lambda_dec = lambda_orth = w for each w in ``weights``
    (``config``/``train_config`` as in `lambda_grid`, so w = 0 and w = 1 are the grid's
    corners (0, 0) and (1, 1), retrained with the same seed). Returns panels for
    `nbkit.viz.embedding_grid_figure`: per weight one map coloured by label and one by
    modality (if the two modalities' shared vectors of a sample agree, the modality colours
    mix)."""
    from .._checks import check_int, check_weight
    from ..evaluate import collect, project_2d
    from ..models.dsrsd import DSRSD
    from . import as_config, as_train_config, fit

    weights = [check_weight("weights[i]", w) for w in weights]
    if not weights:
        raise ValueError("weights must hold at least one weight, got []")
    n = check_int("n", n, 5)
    base = as_config(DSRSD, config)
    tc = as_train_config(TRAIN if train_config is None else train_config)
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(len(test), generator=g)[: min(n, len(test))].sort().values
    sub = test.subset(idx)
    panels = {}
    for w in weights:
        model, _ = fit(DSRSD, train, None, seed=seed, train_config=tc,
                       config=as_config(DSRSD, base, lambda_dec=float(w), lambda_orth=float(w)))
        res = collect(model, sub)
        k = sub.present
        z = torch.cat([res["shared"][m][k[:, i]] for i, m in enumerate(sub.modalities)])
        y = torch.cat([sub.y[k[:, i]] for i in range(len(sub.modalities))]).numpy()
        mod = np.concatenate([[m] * int(k[:, i].sum()) for i, m in enumerate(sub.modalities)])
        xy = project_2d(z, method, seed=seed)
        panels[f"λ_dec = λ_orth = {w:g}, colour = label"] = (xy, y, "label")
        panels[f"λ_dec = λ_orth = {w:g}, colour = modality"] = (xy, mod, "modality")
    return panels


# ------------------------------------------------------------------ generated reading
def offdiag_mass(corr) -> float:
    """Mean squared off-diagonal entry of a correlation matrix (what L_dec computes)."""
    c = np.asarray(corr, dtype=float)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or c.shape[0] < 2:
        raise ValueError(f"corr must be a square [d, d] matrix with d >= 2, got shape {c.shape}")
    d = c.shape[0]
    return float(((c - np.diag(np.diag(c))) ** 2).sum() / (d * (d - 1)))


def read_before_after(before: dict, after: dict, lambda_dec: float) -> str:
    """Section 3 of notebook 02: what training (at weight ``lambda_dec`` on L_dec) did to the
    shared space (two `stream_diagnostics` dicts)."""
    up = (lambda k: "rises" if after[k] > before[k] else "falls")
    return (f"Training takes test AUC from {before['auc']:.3f} to {after['auc']:.3f}. The off-diagonal mass {up('offdiag')} "
            f"from {before['offdiag']:.3f} (random initialisation) to {after['offdiag']:.3f}, $L_{{orth}}$ {up('orth')} "
            f"from {before['orth']:.3f} to {after['orth']:.3f}; the shared stream's R² on the shared factors "
            f"{up('r2_shared')} from {before['r2_shared']:.3f} to {after['r2_shared']:.3f} and on the private factors "
            f"{up('r2_shared_to_private')} from {before['r2_shared_to_private']:.3f} to {after['r2_shared_to_private']:.3f}."
            + (f" With a weight of {lambda_dec:g}, L_dec does not stop the task from correlating the shared dimensions: "
               f"the few label-relevant directions get copied into many of them." if after["offdiag"] > before["offdiag"]
               else ""))


def read_panel(history: Sequence[dict]) -> str:
    """The panel's last update, as a sentence (its metrics dict, `LambdaPanel.history`)."""
    if not history:
        raise ValueError("the panel has no update yet")
    m = history[-1]
    return (f"At lambda_dec = {m['lambda_dec']:g}, lambda_orth = {m['lambda_orth']:g} the small model reaches validation "
            f"AUC {m['auc']:.3f}; its shared space has off-diagonal mass {m['offdiag']:.4f} and $L_{{orth}}$ = "
            f"{m['orth']:.4f}; retraining and redrawing took {m['latency_s']:.2f} s.")


def read_grid(grid: pd.DataFrame) -> str:
    """What the 2 x 2 grid figure shows: per panel, the direction and size of the change
    along its weight, and where the best and worst cells are."""
    c = (lambda a, b, m: _cell(grid, a, b, m))
    vals = sorted(set(grid.lambda_dec))
    lo, hi = vals[0], vals[-1]
    n_seeds = grid.seed.nunique()
    dis = grid.groupby(["lambda_dec", "lambda_orth"]).disentanglement.mean()
    best, worst = dis.idxmax(), dis.idxmin()
    auc = grid.groupby(["lambda_dec", "lambda_orth"]).auc.mean()
    return "\n".join([
        f"- **off-diagonal mass** along λ_dec (λ_orth = {lo:g}): " + " → ".join(f"{c(a, lo, 'offdiag'):.3f}" for a in vals)
        + f" for λ_dec = {', '.join(f'{a:g}' for a in vals)}.",
        f"- **L_orth** along λ_orth (λ_dec = {lo:g}): " + " → ".join(f"{c(lo, b, 'orth'):.3f}" for b in vals) + ".",
        f"- **test AUC** ranges from {auc.min():.3f} (at λ_dec / λ_orth = {auc.idxmin()[0]:g} / {auc.idxmin()[1]:g}) "
        f"to {auc.max():.3f} (at {auc.idxmax()[0]:g} / {auc.idxmax()[1]:g}), a spread of {auc.max() - auc.min():.3f}.",
        f"- **disentanglement** is highest at λ_dec / λ_orth = {best[0]:g} / {best[1]:g} ({dis.max():+.3f}) and lowest at "
        f"{worst[0]:g} / {worst[1]:g} ({dis.min():+.3f}); at (0, 0) it is {c(lo, lo, 'disentanglement'):+.3f}, at "
        f"({hi:g}, {hi:g}) {c(hi, hi, 'disentanglement'):+.3f}.",
        f"- {n_seeds} seed{'s' if n_seeds != 1 else ''} per cell: read small differences with care (the factorial of "
        f"section 7 gives the spread over seeds)."])


def read_corners(corr: dict, seed: int) -> str:
    """Off-diagonal mass of each corner's correlation matrix ({(lambda_dec, lambda_orth, seed): C})."""
    parts = [f"dec={a:g}, orth={b:g}: {offdiag_mass(C):.3f}" for (a, b, s), C in corr.items() if s == seed]
    return "Off-diagonal mass of each panel: " + "; ".join(parts) + "."


def read_leak(grid: pd.DataFrame, lambda_dec: float = 0.0) -> str:
    """Exercise of notebook 02: the shared stream's R² on the private factors
    (``r2_shared_to_private``) and L_orth along lambda_orth, at ``lambda_dec``."""
    vals = sorted(set(grid.lambda_orth))
    r2 = [_cell(grid, lambda_dec, b, "r2_shared_to_private") for b in vals]
    orth = [_cell(grid, lambda_dec, b, "orth") for b in vals]
    word = "rises" if r2[-1] > r2[0] else "falls"
    return (f"At λ_dec = {lambda_dec:g}, as λ_orth goes {' → '.join(f'{b:g}' for b in vals)}: L_orth "
            f"{' → '.join(f'{v:.3f}' for v in orth)}, while the shared stream's R² on the private factors "
            f"{' → '.join(f'{v:.3f}' for v in r2)} ({word} from {r2[0]:.3f} to {r2[-1]:.3f}).")
