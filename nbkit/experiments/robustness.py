"""DSRSD-Net experiments for notebooks 02 (decorrelation / orthogonality) and 03 (gated fusion,
missing modalities): small training helpers, shared-space diagnostics, the (lambda_dec,
lambda_orth) grid, gate-vs-noise, and the missing-modality study with its ablation table.

Every function returns tidy frames (one row per seed x setting x metric) for `nbkit.viz`.
All sizes and schedules here are our choices (the paper gives none we could retrieve).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.batch import MultimodalDataset
from ..evaluate import (ROBUSTNESS_LEVELS, classification_metrics, collect, effective_robustness,
                        linear_probe, relative_robustness, robustness_curve)
from ..regulate import Regulator
from ..train import one_thread

__all__ = ["LAMBDA_VALUES", "ABLATIONS", "ModalityDropout", "make_data", "train_model", "train_dsrsd", "shared_matrix",
           "shared_correlation", "stream_diagnostics", "lambda_grid", "gate_vs_noise",
           "gate_noise_summary", "gate_noise_correlation", "StudyResult", "missing_modality_study", "robustness_summary",
           "ablation_table", "claims_markdown"]

# log-spaced weights including 0 (the sliders and the grid): ours
LAMBDA_VALUES = (0.0, 1e-3, 1e-2, 1e-1, 1.0)

# the ablation variants of DSRSD-Net (specs/dsrsd.md, experiment 1): config overrides
ABLATIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "w/o L_dec": {"lambda_dec": 0.0},
    "w/o L_orth": {"lambda_orth": 0.0},
    "w/o both": {"lambda_dec": 0.0, "lambda_orth": 0.0},
    "w/o residual": {"residual": False},
    "w/o gate": {"gate": False},
}


def make_data(n: int = 2000, snr: Sequence[float] = (4.0, 1.0), dims: int = 32, k_shared: int = 4,
              k_private: int = 4, n_classes: int = 4, seed: int = 0,
              fractions: Sequence[float] = (0.6, 0.2, 0.2)):
    """The synthetic two-modality data of notebooks 02/03 (unequal snr: m1 clean, m2 noisy),
    split into train/val/test. Returns ``(train, val, test)``."""
    from ..data.synthetic import make_synthetic

    ds = make_synthetic(n=n, n_modalities=2, dims=dims, k_shared=k_shared, k_private=k_private,
                        n_classes=n_classes, snr=list(snr), seed=seed)
    return ds.split(tuple(fractions), seed=seed)


def train_model(model_cls, train: MultimodalDataset, val: MultimodalDataset | None = None, seed: int = 0,
                epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, init_state: dict | None = None,
                model_kwargs: dict | None = None, monitor: str = "auc", progress: bool = False, regulator=None):
    """Build ``model_cls`` for ``train`` (seeded), optionally load ``init_state`` (warm start),
    train with AdamW (the Trainer's defaults), return ``(model, trainer)``."""
    from . import fit

    return fit(model_cls, train, val, seed=seed, regulator=regulator, model_kwargs=model_kwargs,
               init_state=init_state, epochs=int(epochs), batch_size=int(batch_size), lr=lr, monitor=monitor,
               progress=progress)


def train_dsrsd(train, val=None, lambda_dec: float = 1e-2, lambda_orth: float = 1e-2, seed: int = 0,
                epochs: int = 10, batch_size: int = 64, init_state: dict | None = None, **config):
    """Train a DSRSD-Net with the given decorrelation / orthogonality weights."""
    from ..models.dsrsd import DSRSD

    model, _ = train_model(DSRSD, train, val, seed=seed, epochs=epochs, batch_size=batch_size,
                           init_state=init_state,
                           model_kwargs=dict(lambda_dec=float(lambda_dec), lambda_orth=float(lambda_orth), **config))
    return model


class ModalityDropout(Regulator):
    """Training-time modality dropout as a `nbkit.regulate.Regulator`: every training batch
    loses each modality per sample with probability ``p`` (`nbkit.data.drop_modalities`,
    keep_one), drawn from a generator seeded once per run, so the model sees missing
    modalities while it learns. Our addition: the paper does not say how it trains for them."""

    name = "modality_dropout"

    def __init__(self, p: float, seed: int = 0):
        super().__init__()
        from .._checks import check_probability

        self.p = check_probability("p", p)
        self._g = torch.Generator().manual_seed(int(seed))

    def prepare_batch(self, batch, epoch):
        from ..data.corrupt import drop_modalities

        if self.p == 0:
            return batch
        s = int(torch.randint(0, 2**31 - 1, (1,), generator=self._g))
        return drop_modalities(batch, self.p, seed=s, keep_one=True)


# ----------------------------------------------------------------- shared-space diagnostics
def shared_matrix(res: dict) -> torch.Tensor:
    """Shared vectors of every present (sample, modality), stacked: [sum_m N_m, d]
    (the "stacked shared batch S" of specs/dsrsd.md). ``res`` is `nbkit.evaluate.collect` output."""
    if not res.get("shared"):
        raise ValueError("the model's Output has no shared representations (Output.shared is empty); "
                         "shared-space diagnostics need a model with a shared stream, e.g. DSRSD")
    mods = list(res["shared"])
    pres = res["present"]
    return torch.cat([res["shared"][m][pres[:, i]] for i, m in enumerate(mods)], 0)


def shared_correlation(model_or_res, ds: MultimodalDataset | None = None) -> np.ndarray:
    """Correlation matrix [d, d] of the stacked shared space on ``ds`` (standardised, Bessel)."""
    from ..losses import covariance

    res = model_or_res if isinstance(model_or_res, dict) else collect(model_or_res, ds)
    return covariance(shared_matrix(res)).numpy()


def stream_diagnostics(model, ds: MultimodalDataset, seed: int = 0, probes: bool = True) -> dict[str, float]:
    """Task and disentanglement numbers of one trained model on ``ds``:

    acc, auc; offdiag = L_dec of the stacked shared space (mean squared off-diagonal
    correlation); orth = L_orth summed over modalities; with ``probes`` (synthetic data with
    known factors): R^2 of ridge probes from each modality's shared stream to the true shared
    factors (``r2_shared``) and to its true private factors (``r2_shared_to_private``), from the
    private stream to its private factors (``r2_private``), and ``disentanglement`` =
    r2_shared - r2_shared_to_private (high: the shared stream holds shared, not private, content).
    """
    with one_thread():
        return _stream_diagnostics(model, ds, seed, probes)


def _stream_diagnostics(model, ds, seed, probes):
    from ..losses import decorrelation, orthogonality

    res = collect(model, ds)
    out = classification_metrics(res["logits"], res["y"])
    S = shared_matrix(res)
    out["offdiag"] = float(decorrelation(S))
    mods = list(res["shared"])
    orth = 0.0
    for i, m in enumerate(mods):
        k = res["present"][:, i]
        if m in res.get("private", {}) and int(k.sum()) >= 2:
            orth += float(orthogonality(res["shared"][m][k], res["private"][m][k]))
    out["orth"] = orth
    if probes and "shared" in ds.factors:
        r2s, r2sp, r2p = [], [], []
        for i, m in enumerate(mods):
            k = res["present"][:, i]
            fs, fp = ds.factors["shared"][k], ds.factors.get(f"private/{m}")
            r2s.append(linear_probe(res["shared"][m][k], fs, kind="regression", seed=seed))
            if fp is not None:
                r2sp.append(linear_probe(res["shared"][m][k], fp[k], kind="regression", seed=seed))
                if m in res.get("private", {}):
                    r2p.append(linear_probe(res["private"][m][k], fp[k], kind="regression", seed=seed))
        out["r2_shared"] = float(np.mean(r2s))
        if r2sp:
            out["r2_shared_to_private"] = float(np.mean(r2sp))
            out["disentanglement"] = out["r2_shared"] - out["r2_shared_to_private"]
        if r2p:
            out["r2_private"] = float(np.mean(r2p))
    return out


def lambda_grid(train, val, test, dec_values: Sequence[float] = LAMBDA_VALUES,
                orth_values: Sequence[float] = LAMBDA_VALUES, seeds: Sequence[int] = (0,), epochs: int = 6,
                batch_size: int = 64, init_state: dict | None = None, progress: bool = True,
                return_corr: bool = False, **config):
    """Train one small DSRSD per (lambda_dec, lambda_orth, seed) and score it on ``test``.

    Returns one row per (lambda_dec, lambda_orth, seed) with the `stream_diagnostics` columns;
    with ``return_corr`` also ``{(lambda_dec, lambda_orth, seed): shared correlation [d, d]}``.
    """
    from tqdm.auto import tqdm

    dec_values, orth_values, seeds = list(dec_values), list(orth_values), [int(s) for s in seeds]
    for name, vals in (("dec_values", dec_values), ("orth_values", orth_values)):
        if not vals or any((not np.isfinite(v)) or v < 0 for v in vals):
            raise ValueError(f"{name} must be a non-empty list of weights >= 0, got {vals}")
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    rows = []
    jobs = [(s, a, b) for s in seeds for a in dec_values for b in orth_values]
    corr = {}
    for s, a, b in tqdm(jobs, desc="lambda grid", disable=not progress, leave=False):
        with one_thread():
            model = train_dsrsd(train, val, lambda_dec=a, lambda_orth=b, seed=s, epochs=epochs,
                                batch_size=batch_size, init_state=init_state, **config)
            rows.append({"lambda_dec": float(a), "lambda_orth": float(b), "seed": s,
                         **stream_diagnostics(model, test, seed=s)})
            if return_corr:
                corr[(float(a), float(b), s)] = shared_correlation(model, test)
    df = pd.DataFrame(rows)
    return (df, corr) if return_corr else df


# ------------------------------------------------------------------------ gate vs noise
def gate_vs_noise(model, ds: MultimodalDataset, max_level: float = 3.0, seed: int = 0) -> pd.DataFrame:
    """Per-sample corruption of one modality at a time: each test sample gets its own noise
    level ~ U(0, max_level) (x the feature std) on modality m, the other stays clean; record
    the gate weight the model gives each modality. One row per (noisy modality, sample)."""
    from ..data.corrupt import add_noise

    if not max_level > 0:
        raise ValueError(f"max_level must be > 0, got {max_level}")
    g = torch.Generator().manual_seed(int(seed))
    rows = []
    mods = ds.modalities
    for j, m in enumerate(mods):
        level = torch.rand(len(ds), generator=g) * float(max_level)
        with one_thread():
            res = collect(model, add_noise(ds, level, seed=seed + j, modalities=[m]))
        if res.get("gate") is None:
            raise ValueError(f"{type(model).__name__} returns no gate (Output.gate is None)")
        gate = res["gate"]
        correct = (res["logits"].argmax(1) == ds.y).float()
        for i, mm in enumerate(mods):
            rows.append(pd.DataFrame({"noisy_modality": m, "level": level.numpy(), "modality": mm,
                                      "gate": gate[:, i].numpy(), "correct": correct.numpy()}))
    return pd.concat(rows, ignore_index=True)


def gate_noise_summary(df: pd.DataFrame, bins: int = 6) -> pd.DataFrame:
    """Mean gate weight (and accuracy) of each modality per noise-level bin, per noisy
    modality; ``level_bin`` is the bin's midpoint. See `gate_noise_correlation` for a rank
    correlation per modality."""
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    d = df.copy()
    edges = np.linspace(0, d.level.max() + 1e-9, bins + 1)
    d["level_bin"] = pd.cut(d.level, edges, include_lowest=True).apply(lambda iv: round(float(iv.mid), 2)).astype(float)
    return (d.groupby(["noisy_modality", "modality", "level_bin"], observed=True)
            .agg(gate=("gate", "mean"), acc=("correct", "mean"), n=("gate", "size")).reset_index())


def gate_noise_correlation(df: pd.DataFrame) -> pd.DataFrame:
    """Spearman rho between a modality's own noise level and its own gate weight."""
    from scipy.stats import spearmanr

    rows = []
    for m, g in df[df.noisy_modality == df.modality].groupby("noisy_modality"):
        rho = spearmanr(g.level, g.gate).statistic if g.gate.std() > 0 else float("nan")
        rows.append({"noisy_modality": m, "spearman_rho(level, own gate)": float(rho)})
    return pd.DataFrame(rows)


# ------------------------------------------------------------- missing-modality study
@dataclass
class StudyResult:
    """What `missing_modality_study` measured: ``curves`` (method, seed, level, value=AUC,
    acc), ``metrics`` (method, seed, clean acc/auc and shared-space numbers), ``models``."""

    curves: pd.DataFrame
    metrics: pd.DataFrame
    models: dict = field(default_factory=dict, repr=False)


def missing_modality_study(train, val, test, seeds: Sequence[int] = (0, 1, 2), epochs: int = 10,
                           batch_size: int = 64, variants: Sequence[str] = tuple(ABLATIONS),
                           baselines: Sequence[str] = ("MM-late", "early fusion", "gated fusion", "co-attention"),
                           levels: Sequence[float] = ROBUSTNESS_LEVELS, metric: str = "auc",
                           progress: bool = True, dsrsd_config: dict | None = None,
                           train_missing_p: float = 0.0) -> StudyResult:
    """Train every DSRSD variant (`ABLATIONS`) and baseline once per seed on ``train`` (early
    stopping state chosen on ``val`` by AUC), then measure each on ``test``: clean metrics and
    the missing-modality robustness curve over ``levels`` (the same drop pattern per seed for
    every method). DSRSD variants are named "DSRSD (<variant>)". With ``train_missing_p`` > 0
    every model trains with `ModalityDropout` at that probability (our addition)."""
    from tqdm.auto import tqdm

    from ..models import CoAttention, EarlyFusion, GatedFusion, LateFusion
    from ..models.dsrsd import DSRSD

    unknown = [v for v in variants if v not in ABLATIONS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(ABLATIONS)}")
    base_cls = {"MM-late": LateFusion, "early fusion": EarlyFusion, "gated fusion": GatedFusion,
                "co-attention": CoAttention}
    unknown = [b for b in baselines if b not in base_cls]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {list(base_cls)}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    jobs = [(s, f"DSRSD ({v})", DSRSD, {**(dsrsd_config or {}), **ABLATIONS[v]}) for s in seeds for v in variants]
    jobs += [(s, b, base_cls[b], {}) for s in seeds for b in baselines]
    curves, metrics, models = [], [], {}
    for s, name, cls, kw in tqdm(jobs, desc="train + robustness", disable=not progress, leave=False):
        with one_thread():
            reg = ModalityDropout(train_missing_p, seed=s) if train_missing_p else None
            model, trainer = train_model(cls, train, val, seed=s, epochs=epochs, batch_size=batch_size, model_kwargs=kw,
                                         regulator=reg)
            c = robustness_curve(model, test, levels=levels, metric=metric, seed=1000 + s)
            curves.append(c.assign(method=name, seed=s))
            row = {"method": name, "seed": s}
            if cls is DSRSD:
                row.update(stream_diagnostics(model, test, seed=s, probes=False))
            else:
                row.update(classification_metrics(collect(model, test)["logits"], test.y))
        metrics.append(row)
        models[(name, s)] = model
    return StudyResult(pd.concat(curves, ignore_index=True), pd.DataFrame(metrics), models)


def robustness_summary(curves: pd.DataFrame, reference: str = "MM-late", at: float = 0.5,
                       points: float = 100.0) -> pd.DataFrame:
    """Per (method, seed): clean value, value at p=``at``, drop (clean - at p, in points =
    x``points``), relative robustness (area) and effective robustness vs ``reference`` of the
    same seed (MultiBench sum over levels). Metric units are x``points`` (AUC points)."""
    need = {"method", "seed", "level", "value"}
    if not need <= set(curves.columns):
        raise ValueError(f"curves must have columns {sorted(need)}, got {list(curves.columns)}")
    if reference not in set(curves.method):
        raise ValueError(f"reference {reference!r} is not among the methods {sorted(set(curves.method))}")
    rows = []
    for (method, seed), g in curves.groupby(["method", "seed"], sort=False):
        g = g.sort_values("level")
        ref = curves[(curves.method == reference) & (curves.seed == seed)].sort_values("level")
        if not np.isclose(g.level.values, at).any():
            raise ValueError(f"the curves have no level {at}; levels are {g.level.tolist()}")
        v_at = float(g.value.values[np.isclose(g.level.values, at)][0])
        clean = float(g.value.values[0])
        rows.append({"method": method, "seed": seed, "clean": clean * points, f"at p={at}": v_at * points,
                     f"drop at p={at}": (clean - v_at) * points,
                     "relative robustness": relative_robustness(g.value, g.level) * points,
                     "effective robustness": (effective_robustness(g.value, ref.value, g.level) * points
                                              if len(ref) == len(g) else float("nan"))})
    return pd.DataFrame(rows)


def ablation_table(metrics: pd.DataFrame, summary: pd.DataFrame | None = None,
                   columns: Sequence[str] = ("auc", "acc", "offdiag", "orth"), digits: int = 3) -> pd.DataFrame:
    """mean +- std over seeds per method of the clean metrics (and, given ``summary``, the
    drop at p=0.5), formatted for display."""
    from ..viz import summary_table

    df = metrics.copy()
    cols = [c for c in columns if c in df.columns]
    if summary is not None:
        drop = [c for c in summary.columns if c.startswith("drop at")]
        df = df.merge(summary[["method", "seed"] + drop], on=["method", "seed"], how="left")
        cols += drop
    return summary_table(df, "method", cols, digits=digits)


def claims_markdown(claims: pd.DataFrame, digits: int = 2) -> str:
    """One markdown bullet per recorded claim row: our mean ± std (n seeds), the paper's value
    when it has one, and the computed verdict, so a notebook's closing text quotes the numbers
    of the run it belongs to instead of numbers typed by hand."""
    need = {"claim", "metric", "ours_mean", "ours_std", "n_seeds", "reference_value", "verdict"}
    if not need <= set(claims.columns):
        raise ValueError(f"claims must be record_claim rows with columns {sorted(need)}")
    lines = []
    for r in claims.itertuples(index=False):
        ref = "" if pd.isna(r.reference_value) else f"; paper: {r.reference_value:g}"
        lines.append(f"- {r.claim}: **{r.verdict}** — ours {r.ours_mean:.{digits}f} ± {r.ours_std:.{digits}f} "
                     f"({r.metric}, {r.n_seeds} seed{'s' if r.n_seeds != 1 else ''}){ref}")
    return "\n".join(lines)
