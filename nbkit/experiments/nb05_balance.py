"""Notebook 05, modality balance: RedReg beside OGM-GE, AGM, PMR, MMPareto, InfoReg.

Every method trains the same architecture (the RedReg one: `EarlyFusion(aux_heads=True)`,
a fused linear head on [h_a; h_v] plus one auxiliary head per modality, loss
CE(fused) + CE(head_a) + CE(head_v)) with the same SGD settings on the same data; only the
`Regulator` plugged into the Trainer changes (built by name from `nbkit.regulate.REGULATORS`).
Sizes, epochs and learning rate are our choices (CPU-sized); the paper's setting is SGD lr
2e-3, momentum 0.9, wd 1e-4, 100 epochs on CREMA-D / Kinetics-Sounds, which we do not have.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.batch import MultimodalDataset
from ..regulate import BALANCE_METHODS, GradScale, Regulator, make_regulator
from . import as_config, as_train_config, fit, over_seeds

__all__ = ["MODEL", "TRAIN", "METHODS", "ABLATIONS", "make_setting", "regulator_for",
           "run_method", "compare", "unimodal_baselines", "imbalance_frames", "monitor_frame",
           "fire_fractions", "optimizer_scaling_demo", "accuracy_table", "weak_modality", "claim_rows",
           "dominant_red", "trigger_sweep"]

# ours: small CPU-sized encoders and the SGD settings used for every comparison
MODEL = dict(aux_heads=True, d=32, hidden=64)
TRAIN = dict(epochs=10, optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=1e-4, batch_size=64, progress=False)

# the methods compared, by their names in nbkit.regulate.REGULATORS (reference defaults)
METHODS = BALANCE_METHODS

# RedReg ablations (docs/methods/redreg.md): each flips one switch of the public-code default
ABLATIONS: dict[str, dict] = {
    "RedReg": {},
    "w/o gate": {"gate": False},
    "w/o monitor": {"monitor": False},
    "w/o projection": {"projection": "none"},
    "w/o dropout": {"dropout": False},
    "paper projection": {"projection": "paper"},
}


def make_setting(source: str = "avdigits", image_noise: float = 1.0, n: int = 1500,
                 snr: Sequence[float] = (4.0, 0.25), seed: int = 0, path=None
                 ) -> tuple[MultimodalDataset, MultimodalDataset, MultimodalDataset]:
    """(train, val, test) of a setting where one modality dominates.

    source="avdigits": `load_avdigits(image_noise=...)`, a stratified subset of ``n`` pairs
    (image [784], audio [32, 32] log-mel); the image noise sets how strongly the image leads.
    source="synthetic": `make_synthetic` with modalities "audio" and "image" at ``snr``
    (the first clearly stronger). Split 60/20/20 by ``seed``.
    """
    if source == "avdigits":
        from ..data import load_avdigits

        ds = load_avdigits(path, image_noise=float(image_noise), n=int(n), seed=int(seed))
    elif source == "synthetic":
        from ..data import make_synthetic

        snr = [float(s) for s in snr]
        if len(snr) != 2:
            raise ValueError(f"snr must be (strong, weak), got {snr}")
        ds = make_synthetic(n=int(n), dims=[32, 32], snr=snr, names=["audio", "image"], seed=int(seed))
    else:
        raise ValueError(f"source must be 'avdigits' or 'synthetic', got {source!r}")
    return ds.split((0.6, 0.2, 0.2), seed=int(seed))


def regulator_for(method, seed: int, registry: dict | None = None) -> Regulator:
    """The regulator of one run: ``method`` is a name in ``registry`` (its value: a callable
    ``seed -> Regulator``, or a dict of RedReg overrides), in `ABLATIONS`, or in
    `nbkit.regulate.REGULATORS`; or a callable ``seed -> Regulator`` itself."""
    if callable(method) and not isinstance(method, str):
        return method(int(seed))
    spec = {**ABLATIONS, **(registry or {})}.get(method)
    if callable(spec):
        return spec(int(seed))
    if isinstance(spec, dict):
        return make_regulator("RedReg", seed=int(seed), **spec)
    return make_regulator(method, seed=int(seed))


def run_method(method, data, seed: int = 0, registry: dict | None = None, probe: bool = True,
               config=None, train_config=None):
    """Train one method on ``data`` = (train, val, test); return (row, trainer).

    ``config``: the EarlyFusion config (default `MODEL`); ``train_config``: default `TRAIN`.
    row: method, seed, acc (fused, test), acc/<m> (each auxiliary head, test),
    probe/<m> (linear-probe accuracy of each encoder's test features), ms_step, epochs.
    """
    from ..evaluate import collect, linear_probe
    from ..models import EarlyFusion

    train, val, test = data
    reg = regulator_for(method, seed, registry)
    tc = as_train_config(TRAIN if train_config is None else train_config)
    model, trainer = fit(EarlyFusion, train, val, seed=int(seed), regulator=reg,
                         config=as_config(EarlyFusion, MODEL if config is None else config), train_config=tc)
    ev = trainer.evaluate(test)
    row = {"method": method if isinstance(method, str) else getattr(reg, "name", "custom"),
           "acc": ev["acc"], **{k: v for k, v in ev.items() if k.startswith("acc/")},
           "ms_step": 1000 * trainer.train_time_s / max(trainer.step, 1), "epochs": tc.epochs}
    if probe:
        feats = collect(model, test)["features"]
        for m, z in feats.items():
            row[f"probe/{m}"] = linear_probe(z, test.y.numpy(), kind="classification", seed=int(seed))
    return row, trainer


def compare(methods: Iterable, data, seeds: Sequence[int], registry: dict | None = None,
            progress: bool = True, config=None, train_config=None) -> tuple[pd.DataFrame, dict]:
    """Every method over every seed: (one row per method x seed, {(method, seed): History})."""
    methods = list(methods)
    hists: dict = {}

    def one(seed):
        rows = []
        for mth in methods:
            row, tr = run_method(mth, data, seed, registry=registry, config=config, train_config=train_config)
            hists[(row["method"], int(seed))] = tr.history
            rows.append(row)
        return rows

    return over_seeds(one, seeds, desc="seeds", progress=progress), hists


def unimodal_baselines(data, seeds: Sequence[int], config=None, train_config=None) -> pd.DataFrame:
    """Each modality trained alone (same encoder sizes, same SGD): the ceiling a balanced
    joint model's unimodal head could reach. One row per modality x seed."""
    from ..models import EarlyFusion, Unimodal

    train, val, test = data
    tc = as_train_config(TRAIN if train_config is None else train_config)
    sizes = as_config(EarlyFusion, MODEL if config is None else config)   # Unimodal keeps d, hidden, dropout

    def one(seed):
        rows = []
        for m in train.modalities:
            _, tr = fit(Unimodal, train, val, seed=int(seed), config=as_config(Unimodal, sizes, modality=m),
                        train_config=tc)
            rows.append({"modality": m, "acc_alone": tr.evaluate(test)["acc"]})
        return rows

    return over_seeds(one, seeds, desc="unimodal", progress=False)


def weak_modality(history) -> str:
    """The modality with the lower mean training confidence (true-class probability of its
    head) under joint training: the one the balance methods try to help."""
    f = history.frame
    conf = f[f.metric.str.startswith("reg/conf/")].groupby("metric").value.mean()
    if conf.empty:
        raise KeyError("no reg/conf/<m> logged; train with GradMonitor (method 'joint') or RedReg")
    return str(conf.idxmin()).split("/", 2)[2]


def imbalance_frames(history) -> dict[str, pd.DataFrame]:
    """From one joint run: per-epoch validation accuracy (fused, each head) and per-epoch
    mean gradient norm of each encoder, tidy (epoch, metric, value)."""
    f = history.frame
    acc = f[(f.split == "val") & f.metric.str.match(r"^acc(/|$)")][["epoch", "metric", "value"]]
    g = f[(f.split == "train") & f.metric.str.startswith("reg/gnorm/")]
    g = g.groupby(["epoch", "metric"], as_index=False).value.mean()
    g["metric"] = g.metric.str.replace("reg/gnorm/", "grad norm ", regex=False)
    return {"accuracy": acc.reset_index(drop=True), "grad_norm": g}


def monitor_frame(history) -> pd.DataFrame:
    """RedReg's per-step signals, wide: one row per step, one column per reg/<name>."""
    f = history.frame
    f = f[(f.split == "train") & f.metric.str.startswith("reg/")]
    w = f.pivot_table(index="step", columns="metric", values="value", aggfunc="last")
    w.columns = [c[len("reg/"):] for c in w.columns]
    return w.reset_index()


def fire_fractions(histories: dict, method: str = "RedReg") -> pd.DataFrame:
    """Fraction of training steps on which RedReg's trigger, gate, and the pull-back
    (beta * gate > 0) were on, per seed (plus how often each modality was dominant)."""
    rows = []
    for (mth, seed), h in histories.items():
        if mth != method:
            continue
        w = monitor_frame(h)
        rows.append({"method": mth, "seed": seed, "steps": len(w), "trigger": w["trigger"].mean(),
                     "gate": w["gate"].mean(), "fired (beta*gate>0)": w["fired"].mean(),
                     "dominant = first modality": (w["dominant"] == 0).mean(),
                     "mean red~ (dominant)": np.nanmean(np.where(w["dominant"] == 0, w.filter(like="red_norm/").iloc[:, 0],
                                                                  w.filter(like="red_norm/").iloc[:, -1]))})
    if not rows:
        raise KeyError(f"no histories of {method!r} among {sorted({k[0] for k in histories})}")
    return pd.DataFrame(rows)


def accuracy_table(results: pd.DataFrame, by: str = "method", digits: int = 3) -> pd.DataFrame:
    """mean ± std over seeds of every accuracy column, per method (strings for display)."""
    from ..viz import summary_table

    cols = [c for c in results.columns if c == "acc" or c.startswith("acc/") or c.startswith("probe/")]
    return summary_table(results, by, cols + (["ms_step"] if "ms_step" in results else []), digits=digits)


def optimizer_scaling_demo(data, modality: str, scales: Sequence[float] = (1.0, 0.5, 0.1),
                           optimizers: Sequence[str] = ("sgd", "adam"), steps: int = 20, seed: int = 0,
                           lr: dict | None = None) -> pd.DataFrame:
    """Why balance demos use SGD (OGM-GE issue #26): multiply one encoder's gradient by a
    constant k on every step (what OGM-GE does with its coefficient) and measure how far
    that encoder moves in ``steps`` steps, relative to k = 1. Under SGD the distance
    shrinks with k; under Adam, which divides by the running gradient scale, it barely moves.
    """
    from ..models import EarlyFusion
    from ..train import Trainer

    train = data[0]
    lr = {"sgd": TRAIN["lr"], "adam": 1e-3, "adamw": 1e-3, **(lr or {})}
    bs = TRAIN["batch_size"]
    sub = train.subset(torch.arange(min(len(train), steps * bs)))
    rows = []
    for opt in optimizers:
        for k in scales:
            torch.manual_seed(int(seed))
            model = EarlyFusion(sub.dims(), sub.n_classes, as_config(EarlyFusion, MODEL))
            theta0 = torch.cat([p.detach().flatten().clone() for p in model.encoders[modality].parameters()])
            Trainer(model, regulator=GradScale({modality: float(k)}), seed=int(seed), epochs=1, optimizer=opt,
                    lr=lr[opt], batch_size=bs, progress=False, momentum=0.9, weight_decay=0.0).fit(sub)
            theta = torch.cat([p.detach().flatten() for p in model.encoders[modality].parameters()])
            rows.append({"optimizer": opt, "scale k": k, "distance": float((theta - theta0).norm())})
    df = pd.DataFrame(rows)
    df["relative to k=1"] = df.groupby("optimizer")["distance"].transform(
        lambda s: s / float(s[df.loc[s.index, "scale k"] == 1.0].iloc[0]) if (df.loc[s.index, "scale k"] == 1.0).any() else math.nan)
    return df


def claim_rows(results: pd.DataFrame, weak: str, dataset: str, base: str = "joint", method: str = "RedReg",
               rivals: Sequence[str] = ("OGM-GE", "InfoReg"), record: bool = True) -> pd.DataFrame:
    """The paper's claims as rows whose effect is ``method`` minus the other, paired by seed
    (fused accuracy over joint training; the weak modality's head over joint training; fused
    accuracy over each rival). The paper's numbers are levels on CREMA-D / Kinetics-Sounds
    (RedReg 73.86 % / 71.13 % fused top-1), not gaps on our data: cited in the reference text."""
    from ..claims import claim

    ref = "RedReg paper: RedReg 73.86 % fused top-1 on CREMA-D, above OGM-GE, AGM, PMR, InfoReg (its data)"
    specs = [(f"{method} improves fused accuracy over joint training", "acc", base),
             (f"{method} improves the weak modality's ({weak}) accuracy over joint training", f"acc/{weak}", base)]
    specs += [(f"{method} beats {r} on fused accuracy", "acc", r) for r in rivals]
    return pd.concat([claim(results, paper="RedReg (arXiv 2511.13755)", claim=c, value=col, treatment=method,
                            control=other, dataset=dataset, reference=ref, record=record)
                      for c, col, other in specs], ignore_index=True)


def dominant_red(history, normalized: bool = False) -> pd.Series:
    """Per step, the redundancy (raw, or EMA-normalised) of the modality RedReg took as dominant."""
    w = monitor_frame(history)
    mods = [c.split("/", 1)[1] for c in w.columns if c.startswith("conf/")]
    key = "red_norm" if normalized else "red"
    vals = w[[f"{key}/{m}" for m in mods]].to_numpy()
    return pd.Series(vals[np.arange(len(w)), w["dominant"].astype(int).to_numpy()], index=w["step"], name=key)



def trigger_sweep(history, Rs: Sequence[float], gammas: Sequence[float], normalized: bool = True) -> pd.DataFrame:
    """Offline sweep of RedReg's trigger over R and gamma on one run's logged trajectory:
    the fraction of steps on which r_d = red_d - gamma max(S_d, 0) > R for the modality that
    was dominant (red: EMA-normalised or raw). Counterfactual (training would have changed
    had the trigger behaved differently), but it shows where the threshold can bite.
    Tidy: one row per (gamma, R) with ``fraction``."""
    Rs, gammas = [float(r) for r in Rs], [float(g) for g in gammas]
    if not Rs or not gammas:
        raise ValueError("Rs and gammas must each hold at least one value")
    if any(g < 0 for g in gammas):
        raise ValueError(f"gammas must be >= 0, got {gammas}")
    w = monitor_frame(history)
    mods = [c.split("/", 1)[1] for c in w.columns if c.startswith("conf/")]
    dom = w["dominant"].astype(int).to_numpy()
    idx = np.arange(len(w))
    red = dominant_red(history, normalized=normalized).to_numpy()
    S = w[[f"S/{m}" for m in mods]].to_numpy()[idx, dom]
    rows = [{"gamma": g, "R": R, "fraction": float(np.mean(red - g * np.maximum(S, 0.0) > R))}
            for g in gammas for R in Rs]
    return pd.DataFrame(rows)

