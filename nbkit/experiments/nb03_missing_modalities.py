"""Notebook 03, gated fusion and missing modalities in DSRSD-Net: gate vs per-sample noise,
the missing-modality study (robustness curves of DSRSD's ablations and the fusion
baselines) and its ablation table.

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
                        relative_robustness, robustness_curve, stream_diagnostics)
from ..models import CoAttention, EarlyFusion, GatedFusion, LateFusion
from .nb02_decorrelation import make_data

__all__ = ["ABLATIONS", "BASELINES", "TRAIN", "make_data", "gate_vs_noise", "gate_noise_summary",
           "gate_noise_correlation", "StudyResult", "missing_modality_study", "robustness_summary",
           "ablation_table", "claim_rows", "summary_table", "single_modality_scores", "zero_filled",
           "mixture_check", "read_gate", "read_curves", "read_ablation", "read_dropout", "read_avdigits",
           "reading"]

# the ablation variants of DSRSD-Net (docs/methods/dsrsd.md, experiment 1): config overrides
ABLATIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "w/o L_dec": {"lambda_dec": 0.0},
    "w/o L_orth": {"lambda_orth": 0.0},
    "w/o both": {"lambda_dec": 0.0, "lambda_orth": 0.0},
    "w/o residual": {"residual": False},
    "w/o gate": {"gate": False},
}

# the fusion baselines of the study (docs/methods/baselines.md), by the names the notebook shows
BASELINES = {"MM-late": LateFusion, "early fusion": EarlyFusion, "gated fusion": GatedFusion,
             "co-attention": CoAttention}

# ours: every model of the study trains the same way (AdamW; best validation-AUC epoch kept)
TRAIN = dict(epochs=10, batch_size=64, monitor="auc", progress=False)


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


def missing_modality_study(train, val, test, seeds: Sequence[int] = (0, 1, 2), config=None, train_config=None,
                           variants: Sequence[str] = tuple(ABLATIONS), baselines: Sequence[str] = tuple(BASELINES),
                           levels: Sequence[float] = ROBUSTNESS_LEVELS, metric: str = "auc",
                           progress: bool = True, train_missing_p: float = 0.0) -> StudyResult:
    """Train every DSRSD variant (`ABLATIONS`) and baseline (`BASELINES`) once per seed on
    ``train`` (early stopping state chosen on ``val`` by AUC), then measure each on ``test``:
    clean metrics and the missing-modality robustness curve over ``levels`` (the same drop
    pattern per seed for every method). ``config``: the DSRSDConfig (or dict) of the full
    model; each variant's overrides go on top, and the baselines take its sizes (d, hidden,
    dropout). ``train_config``: a TrainConfig or dict (default `TRAIN`). DSRSD variants are
    named "DSRSD (<variant>)". With ``train_missing_p`` > 0 every model trains with
    `nbkit.regulate.ModalityDropout` at that probability (our addition)."""
    from .._checks import check_probability, check_subset
    from ..models.dsrsd import DSRSD
    from ..progress import progress_bar
    from ..regulate import ModalityDropout
    from . import as_config, as_train_config, check_seeds, fit

    variants, baselines = check_subset("variants", variants, ABLATIONS), check_subset("baselines", baselines, BASELINES)
    seeds = check_seeds(seeds)
    train_missing_p = check_probability("train_missing_p", train_missing_p)
    full = as_config(DSRSD, config)
    tc = as_train_config(TRAIN if train_config is None else train_config)
    jobs = [(s, f"DSRSD ({v})", DSRSD, as_config(DSRSD, full, **ABLATIONS[v])) for s in seeds for v in variants]
    jobs += [(s, b, BASELINES[b], as_config(BASELINES[b], full)) for s in seeds for b in baselines]
    curves, metrics, models = [], [], {}
    bar = progress_bar(len(jobs), "train + robustness", enabled=progress)
    for s, name, cls, cfg in jobs:
        bar.update(1)
        reg = ModalityDropout(train_missing_p, seed=s) if train_missing_p else None
        model, trainer = fit(cls, train, val, seed=s, config=cfg, train_config=tc, regulator=reg)
        c = robustness_curve(model, test, levels=levels, metric=metric, seed=1000 + s)
        curves.append(c.assign(method=name, seed=s))
        row = {"method": name, "seed": s}
        if cls is DSRSD:
            row.update(stream_diagnostics(model, test, seed=s, probes=False))
        else:
            row.update(classification_metrics(collect(model, test)["logits"], test.y))
        metrics.append(row)
        models[(name, s)] = model
    bar.close()
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


def claim_rows(metrics: pd.DataFrame, summary: pd.DataFrame, dataset: str, av_summary: pd.DataFrame | None = None,
               av_dataset: str | None = None, baselines: Sequence[str] = tuple(BASELINES),
               record: bool = True) -> pd.DataFrame:
    """Notebook 03's claims, each an effect paired by seed (AUC in points, x100):

    - L_dec helps / L_orth helps: clean test AUC of DSRSD (full) minus the ablation (> 0);
    - at missing p = 0.5 DSRSD loses fewer AUC points than MM-late: drop(DSRSD) - drop(MM-late)
      (< 0; the paper's 2.9 vs 4.7 gives -1.8), on the synthetic data and, given
      ``av_summary``, on avdigits;
    - DSRSD beats the best fusion baseline (highest mean clean AUC among ``baselines``) in
      clean AUC (> 0; paper: up to +4.1);
    - ours: the shared/private decomposition makes gated fusion more robust: drop(DSRSD) -
      drop(gated fusion without decomposition) (< 0);
    - ours: each part matters for robustness: drop(w/o gate) - drop(full) and
      drop(w/o residual) - drop(full) (> 0), when those variants were trained."""
    from ..claims import claim

    paper = "DSRSD-Net (arXiv 2512.07568)"
    pts = metrics.assign(auc_points=metrics.auc * 100)
    drop = "drop at p=0.5"
    ref_drop = "DSRSD-Net paper, missing p=0.5: DSRSD 2.9 vs MM-late 4.7 AUC points (its data)"
    kw = dict(paper=paper, record=record, digits=2)
    rows = [claim(pts, claim=f"{name} helps: full model beats w/o {name} (clean test AUC)", value="auc_points",
                  treatment="DSRSD (full)", control=f"DSRSD (w/o {name})", dataset=dataset, units="AUC points",
                  reference="DSRSD-Net paper, ablation (numbers not retrievable)", **kw)
            for name in ("L_dec", "L_orth") if f"DSRSD (w/o {name})" in set(pts.method)]
    rows.append(claim(summary, claim="at missing p=0.5 DSRSD loses fewer AUC points than MM-late", value=drop,
                      treatment="DSRSD (full)", control="MM-late", direction="less", dataset=dataset,
                      units="AUC points lost", reference=ref_drop, reference_value=2.9 - 4.7, **kw))
    present = [b for b in baselines if b in set(pts.method)]
    if present:
        best = max(present, key=lambda m: pts[pts.method == m].auc.mean())
        rows.append(claim(pts, claim=f"DSRSD beats the best fusion baseline in clean AUC (ours: the best is {best})",
                          value="auc_points", treatment="DSRSD (full)", control=best, dataset=dataset, units="AUC points",
                          reference="DSRSD-Net paper, up to +4.1 AUC over baselines (its data)", reference_value=4.1, **kw))
    if "gated fusion" in set(summary.method):
        rows.append(claim(summary, claim="ours: the shared/private decomposition makes gated fusion more robust "
                                         "(DSRSD vs gated fusion without decomposition, drop at p=0.5)",
                          value=drop, treatment="DSRSD (full)", control="gated fusion", direction="less",
                          dataset=dataset, units="AUC points lost",
                          reference="DSRSD-Net paper, robustness attributed to decomposition + gate (qualitative)", **kw))
    for part in ("gate", "residual"):
        if f"DSRSD (w/o {part})" in set(summary.method):
            rows.append(claim(summary, claim=f"ours: removing the {part} makes DSRSD lose more AUC at missing p=0.5",
                              value=drop, treatment=f"DSRSD (w/o {part})", control="DSRSD (full)", direction="greater",
                              dataset=dataset, units="AUC points lost",
                              reference="DSRSD-Net paper, robustness attributed to decomposition + gate (qualitative)",
                              **kw))
    if av_summary is not None:
        rows.append(claim(av_summary, claim="at missing p=0.5 DSRSD loses fewer AUC points than MM-late", value=drop,
                          treatment="DSRSD (full)", control="MM-late", direction="less",
                          dataset=av_dataset or "avdigits", units="AUC points lost", reference=ref_drop,
                          reference_value=2.9 - 4.7, **kw))
    return pd.concat(rows, ignore_index=True)


def _mean_sd(v) -> str:
    v = np.asarray(v, dtype=float)
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if v.size > 1 else f"{v.mean():.2f} (1 seed)"


def summary_table(metrics: pd.DataFrame, summary: pd.DataFrame, gate_rho: pd.DataFrame | None = None,
                  av_summary: pd.DataFrame | None = None, md_summary: pd.DataFrame | None = None,
                  train_missing_p: float = 0.0) -> pd.DataFrame:
    """Notebook 03's closing table: our numbers (mean ± std over seeds) beside the paper's
    where it gives one. Rows whose study was not run say so."""
    drop = "drop at p=0.5"
    main = ["DSRSD (full)", "MM-late", "early fusion"]
    auc = (lambda m: metrics[metrics.method == m].auc * 100)
    drops = (lambda frame, m: frame[frame.method == m][drop])
    rows = [
        {"quantity": "clean test AUC, DSRSD (full) / MM-late / early fusion",
         "ours": " / ".join(f"{auc(m).mean():.1f}" for m in main), "paper": "—"},
        {"quantity": "clean test AUC, gated fusion (no decomposition) / co-attention",
         "ours": " / ".join(f"{auc(m).mean():.1f}" for m in ["gated fusion", "co-attention"]), "paper": "—"},
        {"quantity": "AUC drop at p=0.5, DSRSD (full) / MM-late",
         "ours": " / ".join(_mean_sd(drops(summary, m)) for m in main[:2]), "paper": "2.9 / 4.7"},
        {"quantity": "AUC drop at p=0.5, gated fusion (no decomposition) / co-attention",
         "ours": " / ".join(_mean_sd(drops(summary, m)) for m in ["gated fusion", "co-attention"]), "paper": "—"},
        {"quantity": "AUC gain from L_dec / L_orth (points)",
         "ours": " / ".join(f"{(auc('DSRSD (full)').to_numpy() - auc(f'DSRSD (w/o {n})').to_numpy()).mean():+.3f}"
                            for n in ("L_dec", "L_orth")), "paper": "positive (numbers not retrievable)"},
    ]
    if gate_rho is not None:
        rows.append({"quantity": "Spearman rho(noise level, own gate), " + " / ".join(gate_rho.noisy_modality),
                     "ours": " / ".join(f"{r:+.2f}" for r in gate_rho.iloc[:, 1]), "paper": "—"})
    rows.append({"quantity": "avdigits: AUC drop at p=0.5, DSRSD (full) / MM-late",
                 "ours": (" / ".join(_mean_sd(drops(av_summary, m)) for m in main[:2])
                          if av_summary is not None else "not run"), "paper": "2.9 / 4.7 (its data)"})
    rows.append({"quantity": f"with modality dropout {train_missing_p:g} in training: drop at p=0.5, "
                             f"DSRSD / MM-late / early",
                 "ours": (" / ".join(_mean_sd(drops(md_summary, m)) for m in main)
                          if md_summary is not None else "not run"), "paper": "—"})
    rows.append({"quantity": "seeds (synthetic)", "ours": str(metrics.seed.nunique()), "paper": "—"})
    return pd.DataFrame(rows)



# ------------------------------------------------------------------ exercise helpers
def single_modality_scores(model, ds: MultimodalDataset, metric: str = "auc") -> dict[str, float]:
    """The metric of ``model`` on ``ds`` when every sample keeps ONLY modality m (the others
    masked as missing), for each m: what the right end (p = 1) of a robustness curve mixes."""
    from ..data.corrupt import drop_modalities

    if metric not in ("auc", "acc"):
        raise ValueError(f"metric must be 'auc' or 'acc', got {metric!r}")
    out = {}
    for m in ds.modalities:
        others = [o for o in ds.modalities if o != m]
        d = drop_modalities(ds, 1.0, modalities=others, keep_one=False)
        res = collect(model, d)
        out[m] = classification_metrics(res["logits"], res["y"])[metric]
    return out


def zero_filled(ds: MultimodalDataset, modality: str) -> MultimodalDataset:
    """``ds`` with ``modality``'s values replaced by zeros but still marked PRESENT: what a
    model sees when a missing modality is imputed with zeros instead of masked."""
    if modality not in ds.modalities:
        raise KeyError(f"modality {modality!r} is not among {list(ds.modalities)}")
    x = dict(ds.x)
    x[modality] = torch.zeros_like(x[modality])
    return ds._like(x, ds.present.clone(), zero_filled=modality)


def mixture_check(curves: pd.DataFrame, value: str = "acc") -> pd.DataFrame:
    """Exercise of notebook 03: with keep-one drops of two modalities a sample keeps both with
    probability (1 - p)^2 and otherwise exactly one, equally likely m1 or m2 (at any p), so the
    expected ACCURACY at p is (1 - p)^2 acc(0) + (1 - (1 - p)^2) acc(1). Returns, per method and
    level (mean over seeds), the measured value, that prediction and their difference. (For
    AUC, a ranking metric, the mixture is only approximate.)"""
    need = {"method", "seed", "level", value}
    if not need <= set(curves.columns):
        raise ValueError(f"curves must have columns {sorted(need)}")
    rows = []
    for (method, seed), g in curves.groupby(["method", "seed"], sort=False):
        g = g.sort_values("level")
        v0, v1 = float(g[value].iloc[0]), float(g[value].iloc[-1])
        if not (np.isclose(g.level.iloc[0], 0) and np.isclose(g.level.iloc[-1], 1)):
            raise ValueError("the curves must run from level 0 to level 1")
        for lv, v in zip(g.level, g[value]):
            both = (1 - lv) ** 2
            rows.append({"method": method, "seed": seed, "level": lv, "measured": float(v),
                         "predicted": both * v0 + (1 - both) * v1})
    df = pd.DataFrame(rows).groupby(["method", "level"], sort=False)[["measured", "predicted"]].mean().reset_index()
    df["difference"] = df.measured - df.predicted
    return df


# ------------------------------------------------------------------ generated reading
def read_gate(gates: pd.DataFrame, bins: int = 6) -> str:
    """What the gate-vs-noise figure shows: for each noisy modality, its own gate weight in
    the lowest and the highest noise bin, the direction, and Spearman's rho."""
    summ = gate_noise_summary(gates, bins=bins)
    rho = gate_noise_correlation(gates).set_index("noisy_modality").iloc[:, 0]
    out = []
    for m in rho.index:
        own = summ[(summ.noisy_modality == m) & (summ.modality == m)].sort_values("level_bin")
        lo, hi = float(own.gate.iloc[0]), float(own.gate.iloc[-1])
        move = "falls" if hi < lo else "rises"
        fits = "as a reliability-aware gate should" if hi < lo else "the opposite of what a reliability-aware gate does"
        out.append(f"- **noise on {m}**: the gate of {m} {move} from {lo:.2f} (lowest noise bin) to {hi:.2f} (highest), "
                   f"Spearman rho(level, own gate) = {rho[m]:+.2f}: {fits}.")
    return "\n".join(out)


def _mean(frame: pd.DataFrame, method: str, col: str) -> float:
    v = frame[frame.method == method][col]
    if v.empty:
        raise KeyError(f"no rows for method {method!r}")
    return float(v.mean())


def read_curves(summary: pd.DataFrame, curves: pd.DataFrame, methods: Sequence[str]) -> str:
    """What a robustness-curve figure shows: per method the clean AUC, AUC at p=0.5 and p=1
    and the drop at p=0.5 (AUC points, mean over seeds), and which method loses least."""
    drop = "drop at p=0.5"
    at1 = curves[np.isclose(curves.level, 1.0)].groupby("method").value.mean() * 100
    parts = [f"{m}: {_mean(summary, m, 'clean'):.1f} clean, {_mean(summary, m, 'at p=0.5'):.1f} at p = 0.5 "
             f"(drop {_mean(summary, m, drop):.2f}), {at1[m]:.1f} at p = 1" for m in methods]
    least = min(methods, key=lambda m: _mean(summary, m, drop))
    most = max(methods, key=lambda m: _mean(summary, m, drop))
    n = summary.seed.nunique()
    return ("AUC points, mean over " + f"{n} seed{'s' if n != 1 else ''}: " + "; ".join(parts)
            + f". The smallest drop at p = 0.5 is {least}'s, the largest {most}'s.")


def read_ablation(metrics: pd.DataFrame, summary: pd.DataFrame) -> str:
    """What the ablation table shows: the clean-AUC and geometry effect of each loss, and the
    drop at p=0.5 of each variant next to the full model's."""
    auc = (lambda m: _mean(metrics, m, "auc") * 100)
    full = "DSRSD (full)"
    out = [f"Clean AUC (points): full {auc(full):.2f}; " + ", ".join(
        f"{m.replace('DSRSD ', '')} {auc(m):.2f} ({auc(m) - auc(full):+.2f})"
        for m in metrics.method.unique() if m.startswith("DSRSD (w/o"))
        + " (in brackets: variant minus full)."]
    if {"offdiag", "orth"} <= set(metrics.columns):
        out.append(f"Removing both losses moves the off-diagonal mass from {_mean(metrics, full, 'offdiag'):.3f} to "
                   f"{_mean(metrics, 'DSRSD (w/o both)', 'offdiag'):.3f} and L_orth from "
                   f"{_mean(metrics, full, 'orth'):.3f} to {_mean(metrics, 'DSRSD (w/o both)', 'orth'):.3f}."
                   if "DSRSD (w/o both)" in set(metrics.method) else "")
    drop = "drop at p=0.5"
    out.append("Drop at p = 0.5: " + ", ".join(f"{m} {_mean(summary, m, drop):.2f}" for m in summary.method.unique()
                                                if m.startswith("DSRSD")) + ".")
    return " ".join(o for o in out if o)


def read_dropout(md_summary: pd.DataFrame, summary: pd.DataFrame, methods: Sequence[str], p: float) -> str:
    """Section on training with modality dropout: each method's drop at p=0.5 with and
    without dropout in training, and the spread between methods in both cases."""
    drop = "drop at p=0.5"
    before = {m: _mean(summary, m, drop) for m in methods}
    after = {m: _mean(md_summary, m, drop) for m in methods}
    spread = (lambda d: max(d.values()) - min(d.values()))
    gain = max(methods, key=lambda m: before[m] - after[m])
    return ("Drop at p = 0.5 (AUC points), trained on complete pairs → trained with modality dropout "
            f"{p:g}: " + "; ".join(f"{m} {before[m]:.2f} → {after[m]:.2f}" for m in methods)
            + f". The gap between the best and the worst method goes from {spread(before):.2f} to {spread(after):.2f} "
            f"points; {gain} gains the most.")


def read_avdigits(av_summary: pd.DataFrame, methods: Sequence[str]) -> str:
    """The avdigits robustness study in one sentence (drop at p=0.5 per method, seeds)."""
    drop = "drop at p=0.5"
    n = av_summary.seed.nunique()
    per = av_summary.pivot_table(index="seed", columns="method", values=drop)
    return (f"avdigits, {n} seed{'s' if n != 1 else ''}: drop at p = 0.5 " + ", ".join(
        f"{m} {per[m].mean():.2f} (per seed {', '.join(f'{v:.2f}' for v in per[m])})" for m in methods) + ".")


def reading(claims: pd.DataFrame, metrics: pd.DataFrame, summary: pd.DataFrame, gates: pd.DataFrame | None = None,
            md_summary: pd.DataFrame | None = None, av_summary: pd.DataFrame | None = None,
            train_missing_p: float = 0.0) -> str:
    """Notebook 03's closing "what reproduced and what did not", every number and verdict
    taken from this run's claim rows and frames (so the text cannot drift from the run)."""
    row = (lambda prefix, dataset_has=None: _claim_row(claims, prefix, dataset_has))
    v = _verdict_words
    drop = "drop at p=0.5"
    out = []
    ld, lo = row("L_dec helps"), row("L_orth helps")
    if ld is not None and lo is not None:
        out.append(f"- **Ablation.** \"L_dec helps\" (clean AUC, full minus w/o L_dec): {v(ld)}; \"L_orth helps\": "
                   f"{v(lo)}. The losses change the geometry of the shared space (see the ablation table and notebook "
                   f"02), which is not the same as changing the task score.")
    mm = row("at missing p=0.5", dataset_has="synthetic")
    if mm is not None:
        out.append(f"- **Missing modalities, synthetic data.** \"DSRSD loses fewer AUC points than MM-late at p = 0.5\" "
                   f"(the paper: 2.9 vs 4.7): {v(mm)}; drops {_mean(summary, 'DSRSD (full)', drop):.2f} (DSRSD) vs "
                   f"{_mean(summary, 'MM-late', drop):.2f} (MM-late), early fusion "
                   f"{_mean(summary, 'early fusion', drop):.2f}. MM-late's heads are each trained to work alone "
                   f"(exercise 1).")
    best = row("DSRSD beats the best fusion baseline")
    if best is not None:
        out.append(f"- **Clean AUC.** \"DSRSD beats the best fusion baseline\" (the paper: up to +4.1): {v(best)}; "
                   f"the clean AUC of DSRSD is {_mean(metrics, 'DSRSD (full)', 'auc') * 100:.1f}, an easy task for "
                   f"every model here.")
    dec = row("ours: the shared/private decomposition")
    if dec is not None:
        out.append(f"- **Decomposition vs the gate alone** (ours). DSRSD's drop minus gated fusion's (same gate, no "
                   f"shared/private streams): {v(dec)}.")
    parts = [(p, row(f"ours: removing the {p}")) for p in ("gate", "residual")]
    parts = [(p, r) for p, r in parts if r is not None]
    if parts:
        sup = [p for p, r in parts if r.verdict == "supported"]
        claim_txt = ("so, for robustness, " + " and ".join(f"the {p}" for p in sup) + " matter" + ("s" if len(sup) == 1 else "")
                     + " on this data" if sup else "so this run does not show that either part matters for robustness")
        out.append("- **Do the parts matter?** (ours, paired by seed) " + "; ".join(
            f"\"removing the {p} raises the drop at p = 0.5\": {v(r)}" for p, r in parts) + f"; {claim_txt}.")
    if md_summary is not None:
        out.append("- **Training with missing modalities** (ours). "
                   + read_dropout(md_summary, summary, ["DSRSD (full)", "MM-late", "early fusion"], train_missing_p))
    av = row("at missing p=0.5", dataset_has="avdigits")
    if av is not None and av_summary is not None:
        out.append(f"- **Missing modalities, avdigits.** The same claim: {v(av)}. "
                   + read_avdigits(av_summary, ["DSRSD (full)", "MM-late"]))
    if gates is not None:
        out.append(_read_gate(gates))
    return "\n".join(out)


def _claim_row(claims: pd.DataFrame, prefix: str, dataset_has: str | None = None):
    """The first claim row whose text starts with ``prefix`` (on a data set containing
    ``dataset_has``), or None."""
    r = claims[claims.claim.str.startswith(prefix)]
    if dataset_has is not None:
        r = r[r.dataset.str.contains(dataset_has, regex=False)]
    return r.iloc[0] if len(r) else None


def _verdict_words(r) -> str:
    return (f"**{r.verdict}** (effect {r.ours_mean:+.2f}, 95% CI [{r.ci_low:+.2f}, {r.ci_high:+.2f}], "
            f"{int(r.n_seeds)} seeds)")


def _read_gate(gates: pd.DataFrame) -> str:
    """The gate-vs-noise sentence: each modality's rank correlation between its noise and its gate."""
    rho = gate_noise_correlation(gates).set_index("noisy_modality").iloc[:, 0]
    wrong = [m for m in rho.index if rho[m] > 0]
    return ("- **Gate vs noise.** Spearman rho between a modality's noise and its own gate: "
            + ", ".join(f"{m} {rho[m]:+.2f}" for m in rho.index)
            + (f". For {', '.join(wrong)} the gate moves weight TOWARD the corrupted modality: trained on clean "
               f"data only, it does not behave like a reliability estimate (the paper itself notes the gate "
               f"cannot learn reliability without variation in the training data)." if wrong else
               ". Every gate moves weight away from its corrupted modality."))
