"""Notebook 04, semantic residual quantization (SRCID, arXiv 2412.19128): the quantizer
comparison (VQ, RVQ, FSQ, DCID, SRCID), the warm-start and CLUB/cross-CPC ablations, the
CLUB check on correlated Gaussians, codebook usage over training, code sharing between
paired modalities, and the claim rows.

Every size, schedule and setting here is ours (marked); the paper's and the reference
code's numbers live in `nbkit.models.srcid` and docs/methods/srcid.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

__all__ = ["MODEL", "TRAIN", "DATA", "VARIANTS", "COMPARISON", "make_data", "club_gaussian_staircase", "exact_club",
           "gaussian_mi_to_rho", "StudyResult", "srcid_study", "evaluate_model", "usage_over_training",
           "claim_rows", "comparison_table", "summary_table", "REFERENCE"]

# ours: CPU-sized (the paper: codebook 400 x 256, 5 epochs on 40k clips). The full profile
# of the notebook passes the paper-sized codebook.
MODEL: dict[str, Any] = dict(d=16, hidden=32, d_specific=16, steps=8, n_codes=64, club_hidden=64, cpc_context=32,
                             dead_after=60, active_window=20, warm_eps=0.1, warm_patience=5, warm_min_steps=20)
# ours: Adam at the reference lr 4e-4 barely moves in ~100 steps; 3e-3 (explored: 2e-3, 3e-3) and
# a fixed number of epochs without validation (the pretraining is self-supervised)
TRAIN: dict[str, Any] = dict(epochs=8, batch_size=64, lr=3e-3, optimizer="adam", weight_decay=0.0, progress=False)
# ours: the synthetic sequence data of the quick profile (two modalities, 8 steps, shared
# factors decide the label, private factors per modality)
DATA: dict[str, Any] = dict(n=1000, seq_len=8, dims=[16, 24], snr=[2.0, 2.0], k_shared=4, k_private=4, n_classes=4)

# the compared settings: config overrides on MODEL (ours: VQ/RVQ/FSQ are the one-layer model
# with the quantizer swapped, without CLUB and without the cross-modal EMA/commitment, so they
# differ only in the quantizer)
VARIANTS: dict[str, dict[str, Any]] = {
    "VQ": dict(layers=1, quantizer="vq", cross_modal=False, lambda_club=0.0),
    "RVQ": dict(layers=1, quantizer="rvq", cross_modal=False, lambda_club=0.0),
    "FSQ": dict(layers=1, quantizer="fsq", cross_modal=False, lambda_club=0.0),
    "DCID": dict(layers=1),
    "DCID w/o CLUB": dict(layers=1, lambda_club=0.0),
    "DCID w/o CPC": dict(layers=1, lambda_cpc=0.0),
    "SRCID": dict(layers=2, warm_start="mi"),
    "SRCID w/o warm start": dict(layers=2, warm_start="off"),
    "SRCID (epoch rule)": dict(layers=2, warm_start="epoch", warm_epoch=3),
}
COMPARISON = ("VQ", "RVQ", "FSQ", "DCID", "SRCID")

# the reference numbers the spec gives (DCID, AVT pretraining on VGGSound-AVEL 40K, AVE
# cross-modal precision V->A / A->V): references, never targets
REFERENCE = {"DCID": (54.1, 55.0), "DCID w/o CLUB": (50.2, 51.8), "DCID w/o CPC": (43.8, 49.2)}


def make_data(source: str = "synthetic", seed: int = 0, fractions: Sequence[float] = (0.7, 0.3), **kwargs):
    """(train, test) splits by ``seed`` (ours: 70/30; the study trains without validation).
    ``source="synthetic"``: `nbkit.data.sequences.synthetic_sequences` with `DATA` (overridden
    by ``kwargs``); ``"avdigits"``: `load_avdigits_sequences` (kwargs: n, image, image_noise)."""
    from .._checks import check_choice
    from ..data.sequences import load_avdigits_sequences, synthetic_sequences

    check_choice("source", source, ("synthetic", "avdigits"))
    if source == "synthetic":
        ds = synthetic_sequences(**{**DATA, "seed": seed, **kwargs})
    else:
        ds = load_avdigits_sequences(**{"n": 1500, "seed": seed, **kwargs})
    return ds.split(fractions, seed=seed)


# ---------------------------------------------------------------- CLUB on known-MI Gaussians
def gaussian_mi_to_rho(mi: float, dim: int) -> float:
    """rho of (x, y) ~ N(0, [[I, rho I], [rho I, I]]) in ``dim`` dimensions with I(x; y) = mi:
    mi = -dim/2 log(1 - rho^2)."""
    return math.sqrt(1 - math.exp(-2 * mi / dim))


def exact_club(mi: float, dim: int) -> float:
    """The CLUB value with the TRUE conditional q = p(y|x) for that Gaussian:
    dim rho^2 / (1 - rho^2) (>= mi; the gap is KL(p(x)p(y) || p(x, y)))."""
    r2 = gaussian_mi_to_rho(mi, dim) ** 2
    return dim * r2 / (1 - r2)


def club_gaussian_staircase(levels: Sequence[float] = (2, 4, 6, 8, 10), steps: int = 300, dim: int = 20,
                            batch: int = 64, hidden: int = 30, lr: float = 5e-3, seed: int = 0) -> pd.DataFrame:
    """CLUB's own validation (Cheng et al. 2020): samples of correlated Gaussians whose true MI
    steps through ``levels`` (nats), ``steps`` batches per level; each step the estimator takes
    one likelihood step (`nbkit.losses.CLUB.fit`) and reports its estimate on that batch.
    Their setting: dim 20, batch 64, hidden 15, lr 5e-3, 4000 steps per level; ours: hidden 30,
    ``steps`` per level (CPU). Returns step, true_mi, estimate, exact_club (the bound with the
    true conditional, see `exact_club`)."""
    from .._checks import check_int
    from ..losses import CLUB

    steps, dim, batch = check_int("steps", steps, 1), check_int("dim", dim, 1), check_int("batch", batch, 2)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    club = CLUB(dim, dim, hidden=hidden, lr=lr, steps=1, seed=seed)
    rows, k = [], 0
    for mi in levels:
        rho = gaussian_mi_to_rho(float(mi), dim)
        for _ in range(steps):
            x = torch.randn(batch, dim, generator=g)
            y = rho * x + math.sqrt(1 - rho ** 2) * torch.randn(batch, dim, generator=g)
            club.fit(x, y)
            with torch.no_grad():
                est = float(club.mi_est(x, y))
            rows.append({"step": k, "true_mi": float(mi), "estimate": est, "exact_club": exact_club(mi, dim)})
            k += 1
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- the study
@dataclass
class StudyResult:
    """``metrics``: one row per (variant, seed) with every measured number; ``crossmodal``:
    source/target accuracies; ``history``: per-step training logs (variant, seed, step,
    metric, value); ``models``: the trained models by (variant, seed)."""

    metrics: pd.DataFrame
    crossmodal: pd.DataFrame
    history: pd.DataFrame
    models: dict = field(default_factory=dict, repr=False)


def evaluate_model(model, train, test, seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """The frozen model's numbers on ``test`` (classifiers fitted on ``train``): cross-modal
    accuracy per direction and their mean ``cross_acc``, unimodal accuracy per modality and
    their mean ``uni_acc``, reconstruction MSE (layer 1, mean over modalities) ``recon``,
    retrieval R@1/rsum between the first two modalities, the share of paired positions with
    the same layer-1 code ``same_code``, and per-codebook usage on the test set."""
    from ..evaluate import code_agreement, cross_modal_generalization, discrete_representations, zero_shot_retrieval
    from ..nn.quantize import codebook_usage

    tr = discrete_representations(model, train)
    te = discrete_representations(model, test)
    cm = cross_modal_generalization(tr["rep"], tr["y"], te["rep"], te["y"], seed=seed)
    mods = list(model.modalities)
    a, b = mods[0], mods[1]
    cross = cm[cm.source != cm.target]
    uni = cm[cm.source == cm.target]
    row = {"cross_acc": float(cross.acc.mean()), "uni_acc": float(uni.acc.mean())}
    for r in cm.itertuples():
        row[f"acc {r.source}->{r.target}"] = r.acc
    row["recon"] = float(np.mean([te["recon_error"][m].mean().item() for m in mods]))
    ret = zero_shot_retrieval(te["rep"], a, b)
    row.update({"R@1": (ret[f"{a}->{b} R@1"] + ret[f"{b}->{a} R@1"]) / 2, "rsum": ret["rsum"],
                "medr": (ret[f"{a}->{b} medr"] + ret[f"{b}->{a} medr"]) / 2})
    row["same_code"] = code_agreement(te["codes"][a], te["codes"][b])["same_code/0"]
    allc = torch.cat([te["codes"][m].reshape(-1, te["codes"][m].shape[-1]) for m in mods])
    for j, (layer, cb, k) in enumerate(model.codebook_columns()):
        u = codebook_usage(allc[:, j], k)
        row[f"perplexity {layer}.{cb}"] = u["perplexity"]
        row[f"active {layer}.{cb}"] = u["active"]
    row["warm_fired_step"] = float(model.warm.fired_step) if model.warm.fired_step is not None else float("nan")
    return row, cm


def srcid_study(train, test, seeds: Sequence[int] = (0, 1, 2), variants: Sequence[str] = COMPARISON,
                config=None, train_config=None, progress: bool = False) -> StudyResult:
    """Train every variant (`VARIANTS`, overrides on ``config``, default `MODEL`) once per seed
    on ``train`` (self-supervised, fixed epochs: ``train_config``, default `TRAIN`), with
    `nbkit.regulate.ModelMonitor` logging the warm start and codebook usage per step; then
    measure each with `evaluate_model` on ``test``."""
    from ..models.srcid import SRCID
    from ..progress import progress_bar
    from ..regulate import ModelMonitor
    from . import as_config, as_train_config, check_seeds, fit

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    seeds = check_seeds(seeds)
    base = as_config(SRCID, MODEL if config is None else config)
    tc = as_train_config(TRAIN if train_config is None else train_config)
    metrics, cms, hist, models = [], [], [], {}
    jobs = [(s, v) for s in seeds for v in variants]
    bar = progress_bar(len(jobs), "SRCID study", enabled=progress)
    for s, v in jobs:
        cfg = as_config(SRCID, base, **VARIANTS[v], seed=s)
        model, trainer = fit(SRCID, train, None, config=cfg, train_config=tc, seed=s, regulator=ModelMonitor())
        row, cm = evaluate_model(model, train, test, seed=s)
        metrics.append({"variant": v, "seed": s, **row, "train_s": trainer.train_time_s})
        cms.append(cm.assign(variant=v, seed=s))
        h = trainer.history.frame
        hist.append(h[h.metric.str.startswith(("reg/", "loss/"))].assign(variant=v, seed=s))
        models[(v, s)] = model
        bar.update(1)
    bar.close()
    return StudyResult(pd.DataFrame(metrics), pd.concat(cms, ignore_index=True),
                       pd.concat(hist, ignore_index=True), models)


def usage_over_training(history: pd.DataFrame, kind: str = "perplexity", every: int = 1) -> pd.DataFrame:
    """Per (variant, codebook, step): the logged codebook ``kind`` ("perplexity" of each
    training batch, or "active" fraction), mean over seeds; ``every`` keeps every k-th step."""
    if kind not in ("perplexity", "active"):
        raise ValueError(f"kind must be 'perplexity' or 'active', got {kind!r}")
    h = history[history.metric.str.startswith("reg/usage/") & history.metric.str.endswith("/" + kind)]
    if h.empty:
        raise ValueError(f"the history has no codebook {kind} (train with nbkit.regulate.ModelMonitor)")
    h = h.assign(codebook=h.metric.str.slice(len("reg/usage/")).str.replace("/" + kind, "", regex=False))
    out = h.groupby(["variant", "codebook", "step"], as_index=False).value.mean()
    return out[out.step % int(every) == 0].rename(columns={"value": kind})


# ---------------------------------------------------------------- tables and claims
def comparison_table(metrics: pd.DataFrame, variants: Sequence[str] | None = None, digits: int = 3) -> pd.DataFrame:
    """mean ± std over seeds of the main numbers, one row per variant (in ``variants`` order)."""
    from ..viz import summary_table as _st

    cols = [c for c in ("cross_acc", "uni_acc", "recon", "R@1", "same_code", "perplexity L1.0", "active L1.0",
                        "warm_fired_step") if c in metrics.columns]
    t = _st(metrics, "variant", cols, digits=digits)
    if variants is not None:
        t = t.set_index("variant").loc[[v for v in variants if v in set(metrics.variant)]].reset_index()
    return t


def claim_rows(metrics: pd.DataFrame, dataset: str, record: bool = True) -> pd.DataFrame:
    """Notebook 04's claims, each an effect paired by seed (accuracies in points, x100):

    - precise quantizers improve unimodal quality: unimodal accuracy RVQ - VQ and FSQ - VQ
      (> 0), reconstruction MSE RVQ - VQ and FSQ - VQ (< 0);
    - ... but lower cross-modal transfer: cross-modal accuracy RVQ - VQ, FSQ - VQ (< 0);
    - SRCID beats one-layer DCID on cross-modal transfer (> 0);
    - the warm start matters: SRCID - SRCID w/o warm start (> 0);
    - CLUB matters, cross-CPC matters: DCID - DCID w/o CLUB, DCID - DCID w/o CPC (> 0; the
      spec's DCID ablation on AVE gives +3.55 and +8.05 points, mean of V->A and A->V)."""
    from ..claims import claim

    paper = "SRCID (arXiv 2412.19128)"
    pts = metrics.assign(cross_pts=metrics.cross_acc * 100, uni_pts=metrics.uni_acc * 100)
    have = set(pts.variant)
    kw = dict(paper=paper, by="variant", dataset=dataset, record=record, digits=2)
    rows = []
    ref_q = "SRCID paper: RVQ/FSQ better unimodally, worse cross-modally (its tables not retrievable)"
    for q in ("RVQ", "FSQ"):
        if {q, "VQ"} <= have:
            rows.append(claim(pts, claim=f"{q} improves unimodal accuracy over VQ", value="uni_pts", treatment=q,
                              control="VQ", units="points", reference=ref_q, **kw))
            rows.append(claim(pts, claim=f"{q} reconstructs better than VQ (lower MSE)", value="recon", treatment=q,
                              control="VQ", direction="less", units="MSE", reference=ref_q,
                              **{**kw, "digits": 4}))
            rows.append(claim(pts, claim=f"{q} lowers cross-modal transfer compared with VQ", value="cross_pts",
                              treatment=q, control="VQ", direction="less", units="points", reference=ref_q, **kw))
    if {"SRCID", "DCID"} <= have:
        rows.append(claim(pts, claim="SRCID beats one-layer DCID on cross-modal transfer", value="cross_pts",
                          treatment="SRCID", control="DCID", units="points",
                          reference="SRCID paper: +2.63 points on average over four downstream tasks (its data)",
                          reference_value=2.63, **kw))
    if {"SRCID", "SRCID w/o warm start"} <= have:
        rows.append(claim(pts, claim="the warm start matters (SRCID with vs without it, cross-modal transfer)",
                          value="cross_pts", treatment="SRCID", control="SRCID w/o warm start", units="points",
                          reference="SRCID paper: warm start critical (numbers not retrievable)", **kw))
    for name, ref in (("CLUB", "DCID w/o CLUB"), ("CPC", "DCID w/o CPC")):
        if {"DCID", ref} <= have:
            full, abl = REFERENCE["DCID"], REFERENCE[ref]
            eff = (full[0] - abl[0] + full[1] - abl[1]) / 2
            rows.append(claim(pts, claim=f"{'cross-CPC' if name == 'CPC' else name} matters (DCID with vs without it, "
                                         f"cross-modal transfer)", value="cross_pts", treatment="DCID", control=ref,
                              units="points", reference_value=eff,
                              reference=f"spec's DCID ablation, AVE V->A/A->V {full[0]}/{full[1]} vs {abl[0]}/{abl[1]} "
                                        f"(its data; mean effect {eff:+.2f})", **kw))
    return pd.concat(rows, ignore_index=True)


def summary_table(metrics: pd.DataFrame, staircase: pd.DataFrame | None = None, last: int = 100) -> pd.DataFrame:
    """Notebook 04's closing table: our numbers (mean over seeds) beside the paper's / the
    reference's where there is one."""
    g = metrics.groupby("variant")
    f = (lambda v, c, k=1.0, d=1: f"{g.get_group(v)[c].mean() * k:.{d}f}" if v in g.groups else "not run")
    rows = [
        {"quantity": "cross-modal accuracy (%), VQ / RVQ / FSQ / DCID / SRCID",
         "ours": " / ".join(f(v, "cross_acc", 100) for v in COMPARISON), "paper": "SRCID best; RVQ/FSQ below VQ"},
        {"quantity": "unimodal accuracy (%), VQ / RVQ / FSQ",
         "ours": " / ".join(f(v, "uni_acc", 100) for v in ("VQ", "RVQ", "FSQ")), "paper": "RVQ/FSQ above VQ"},
        {"quantity": "reconstruction MSE, VQ / RVQ / FSQ",
         "ours": " / ".join(f(v, "recon", 1, 3) for v in ("VQ", "RVQ", "FSQ")), "paper": "—"},
        {"quantity": "cross-modal accuracy (%), DCID / w/o CLUB / w/o CPC",
         "ours": " / ".join(f(v, "cross_acc", 100) for v in ("DCID", "DCID w/o CLUB", "DCID w/o CPC")),
         "paper": "AVE (mean of V->A, A->V): 54.6 / 51.0 / 46.5 (spec, its data)"},
        {"quantity": "cross-modal accuracy (%), SRCID / w/o warm start",
         "ours": " / ".join(f(v, "cross_acc", 100) for v in ("SRCID", "SRCID w/o warm start")),
         "paper": "warm start critical"},
        {"quantity": "same layer-1 code for paired positions, VQ / DCID / SRCID",
         "ours": " / ".join(f(v, "same_code", 1, 3) for v in ("VQ", "DCID", "SRCID")), "paper": "—"},
    ]
    if staircase is not None:
        s = staircase.groupby("true_mi").apply(lambda d: d.estimate.tail(last).mean(), include_groups=False)
        rows.append({"quantity": "CLUB estimate on Gaussians with MI " + ", ".join(f"{m:g}" for m in s.index) + " nats",
                     "ours": ", ".join(f"{v:.1f}" for v in s.values), "paper": "tracks the true MI (CLUB paper)"})
    rows.append({"quantity": "seeds", "ours": str(metrics.seed.nunique()), "paper": "—"})
    return pd.DataFrame(rows)
