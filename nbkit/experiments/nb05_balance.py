"""Notebook 05, modality balance: RedReg beside OGM-GE, AGM, PMR, MMPareto, InfoReg.

Every method trains the same encoders and fused linear head (`EarlyFusion`) with the same
SGD settings on the same data; the `Regulator` plugged into the Trainer (built by name from
`nbkit.regulate.REGULATORS`, reference defaults) and the LOSS differ. The loss is each
method's reference protocol by default (`PROTOCOLS["reference"]`: what its public code trains
with, docs/methods/balance_baselines.md): OGM-GE, AGM and PMR train on the fused
cross-entropy alone (PMR plus its prototype term), InfoReg adds the cross-entropy of the split
fused head, MMPareto and RedReg (and RedReg's joint baseline) add one auxiliary head per
modality. `PROTOCOLS["aux"]` trains every method with RedReg's auxiliary heads instead
(nbkit's earlier common protocol). Sizes, epochs and learning rate are our choices
(CPU-sized); the paper's setting is SGD lr 2e-3, momentum 0.9, wd 1e-4, 100 epochs on
CREMA-D / Kinetics-Sounds, which we do not have.
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

__all__ = ["MODEL", "TRAIN", "METHODS", "ABLATIONS", "PROTOCOLS", "make_setting", "regulator_for",
           "protocol_of", "run_method", "compare", "unimodal_baselines", "imbalance_frames",
           "monitor_frame", "fire_fractions", "optimizer_scaling_demo", "accuracy_table", "weak_modality",
           "claim_rows", "dominant_red", "trigger_sweep", "roles", "training_confidence",
           "coefficient_curves", "protocol_table", "split_accuracy", "key_lesson", "protocol_gain",
           "summary_markdown"]

# ours: small CPU-sized encoders and the SGD settings used for every comparison
MODEL = dict(aux_heads=True, d=32, hidden=64)
TRAIN = dict(epochs=10, optimizer="sgd", lr=0.02, momentum=0.9, weight_decay=1e-4, batch_size=64, progress=False)

# the methods compared, by their names in nbkit.regulate.REGULATORS (reference defaults)
METHODS = BALANCE_METHODS

# The loss each method trains with (issue 12, item 5): EarlyFusion config overrides ("model")
# and regulator options ("regulator"). "reference": what each public code trains with;
# "aux": every method with RedReg's auxiliary heads (CE(fused) + sum_m CE(head_m)).
_REFERENCE = {
    "joint": {"model": {"aux_heads": True}},      # RedReg's joint baseline (xia-zhe/RedReg main_RedReg.py)
    "OGM-GE": {"model": {"aux_heads": False}},    # CE(fused) alone (OGM-GE_CVPR2022 main.py)
    "AGM": {"model": {"aux_heads": False}},       # CE(fused) alone, through its hooks (AGM_ICCV2023 CREMAD_main.py)
    "PMR": {"model": {"aux_heads": False}},       # CE(fused) + alpha CE(prototypes) (Modal-Imbalance-PMR main_Prototype_grad.py)
    "MMPareto": {"model": {"aux_heads": True}},   # CE(fused) + CE(head_a) + CE(head_v) (MMPareto_ICML2024 code/MMPareto.py)
    "InfoReg": {"model": {"aux_heads": False}},   # CE(fused) + CE(split_a) + CE(split_v) (InfoReg_CVPR2025 main.py;
                                                  # the split terms come from InfoReg(split_losses=True))
    "RedReg": {"model": {"aux_heads": True}},     # CE(fused) + CE(head_a) + CE(head_v) (main_RedReg.py)
}
# joint training with the fused cross-entropy alone: the baseline of OGM-GE, AGM and PMR's own codes
_REFERENCE["joint (fused CE only)"] = {"model": {"aux_heads": False}}
_AUX = {m: {"model": {"aux_heads": True}} for m in _REFERENCE}
_AUX["InfoReg"] = {"model": {"aux_heads": True}, "regulator": {"split_losses": False}}
PROTOCOLS: dict[str, dict[str, dict]] = {"reference": _REFERENCE, "aux": _AUX}

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


def protocol_of(method, protocol: str | None = "reference") -> dict:
    """{"model": EarlyFusion overrides, "regulator": regulator options} of ``method`` under
    ``protocol`` ("reference", "aux", or None: nothing overridden). Methods outside the
    comparison (RedReg ablations, custom regulators) get RedReg's auxiliary heads."""
    if protocol is None:
        return {"model": {}, "regulator": {}}
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {list(PROTOCOLS)} or None, got {protocol!r}")
    spec = PROTOCOLS[protocol].get(method, {"model": {"aux_heads": True}}) if isinstance(method, str) \
        else {"model": {"aux_heads": True}}
    return {"model": dict(spec.get("model", {})), "regulator": dict(spec.get("regulator", {}))}


def regulator_for(method, seed: int, registry: dict | None = None, **options) -> Regulator:
    """The regulator of one run: ``method`` is a name in ``registry`` (its value: a callable
    ``seed -> Regulator``, or a dict of RedReg overrides), in `ABLATIONS`, or in
    `nbkit.regulate.REGULATORS` (built with ``options``); or a callable ``seed -> Regulator``."""
    if callable(method) and not isinstance(method, str):
        return method(int(seed))
    if method == "joint (fused CE only)":
        method = "joint"
    spec = {**ABLATIONS, **(registry or {})}.get(method)
    if callable(spec):
        return spec(int(seed))
    if isinstance(spec, dict):
        return make_regulator("RedReg", seed=int(seed), **spec)
    return make_regulator(method, seed=int(seed), **options)


@torch.no_grad()
def split_accuracy(model, ds, features: dict | None = None) -> dict[str, float]:
    """Test accuracy of each modality's block of the fused linear head alone (logits
    h_m W_m^T + b / M: the per-modality read-out OGM-GE and InfoReg score with), for any
    EarlyFusion model, auxiliary heads or not: {"split/<m>": accuracy}."""
    from ..evaluate import collect

    head = getattr(model, "head", None)
    if not isinstance(head, torch.nn.Linear):
        return {}
    feats = collect(model, ds)["features"] if features is None else features
    y = ds.y.numpy()
    res, start = {}, 0
    for m in model.modalities:
        z = torch.as_tensor(np.asarray(feats[m]), dtype=head.weight.dtype)
        d = z.shape[1]
        logits = z @ head.weight[:, start:start + d].detach().cpu().t() + head.bias.detach().cpu() / len(model.modalities)
        res[f"split/{m}"] = float((logits.argmax(1).numpy() == y).mean())
        start += d
    return res


def run_method(method, data, seed: int = 0, registry: dict | None = None, probe: bool = True,
               config=None, train_config=None, protocol: str | None = "reference"):
    """Train one method on ``data`` = (train, val, test); return (row, trainer).

    ``config``: the EarlyFusion config (default `MODEL`), with the ``protocol``'s overrides
    on top (`protocol_of`: "reference" by default, "aux", or None to use ``config`` as is);
    ``train_config``: default `TRAIN`.
    row: method, protocol, seed, acc (fused, test), acc/<m> (each auxiliary head, test, where
    the model has them), split/<m> (the fused head's block of modality m alone, bias / M),
    probe/<m> (linear-probe accuracy of each encoder's test features), ms_step, epochs.
    """
    from ..evaluate import collect, linear_probe
    from ..models import EarlyFusion

    train, val, test = data
    spec = protocol_of(method, protocol)
    reg = regulator_for(method, seed, registry, **spec["regulator"])
    tc = as_train_config(TRAIN if train_config is None else train_config)
    cfg = as_config(EarlyFusion, MODEL if config is None else config, **spec["model"])
    model, trainer = fit(EarlyFusion, train, val, seed=int(seed), regulator=reg, config=cfg, train_config=tc)
    ev = trainer.evaluate(test)
    row = {"method": method if isinstance(method, str) else getattr(reg, "name", "custom"),
           "protocol": protocol or "as configured",
           "acc": ev["acc"], **{k: v for k, v in ev.items() if k.startswith("acc/")},
           "ms_step": 1000 * trainer.train_time_s / max(trainer.step, 1), "epochs": tc.epochs}
    feats = collect(model, test)["features"]
    row.update(split_accuracy(model, test, feats))
    if probe:
        for m, z in feats.items():
            row[f"probe/{m}"] = linear_probe(z, test.y.numpy(), kind="classification", seed=int(seed))
    return row, trainer


def compare(methods: Iterable, data, seeds: Sequence[int], registry: dict | None = None,
            progress: bool = True, config=None, train_config=None, protocol: str | None = "reference",
            probe: bool = True) -> tuple[pd.DataFrame, dict]:
    """Every method over every seed under ``protocol`` (see `run_method`):
    (one row per method x seed, {(method, seed): History})."""
    methods = list(methods)
    if not methods:
        raise ValueError("methods must name at least one method")
    hists: dict = {}

    def one(seed):
        rows = []
        for mth in methods:
            row, tr = run_method(mth, data, seed, registry=registry, config=config, train_config=train_config,
                                 protocol=protocol, probe=probe)
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
               rivals: Sequence[str] = ("OGM-GE", "AGM", "PMR", "InfoReg"), record: bool = True) -> pd.DataFrame:
    """The paper's claims as rows whose effect is ``method`` minus the other, paired by seed
    (fused accuracy over joint training; the weak modality's head over joint training; fused
    accuracy over each rival; the rivals the paper names). The paper's numbers are levels on
    CREMA-D / Kinetics-Sounds (RedReg 73.86 % / 71.13 % fused top-1), not gaps on our data:
    cited in the reference text. ``results`` must hold one protocol only (one row per method
    and seed)."""
    if "protocol" in results and results["protocol"].nunique() > 1:
        raise ValueError(f"results mix protocols {sorted(results['protocol'].unique())}; pass one protocol's rows")
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


# ------------------------------------------------------------------ notebook 05 helpers (issue 12/13)
def roles(weak: str, modalities: Sequence[str]) -> dict[str, str]:
    """Display names that say what each modality does under joint training: the weak one
    (lower training confidence) is "slow-fitting", the others "fast-fitting"."""
    if weak not in modalities:
        raise KeyError(f"weak modality {weak!r} is not among {list(modalities)}")
    return {m: f"{m} ({'slow' if m == weak else 'fast'}-fitting)" for m in modalities}


def training_confidence(histories: dict, method: str = "joint", names: dict | None = None) -> pd.DataFrame:
    """Per epoch and seed, each head's mean training confidence (true-class probability of
    its unimodal logits, ``reg/conf/<m>``): what decides which modality is "dominant".
    Tidy: epoch, seed, modality (renamed by ``names``), confidence."""
    rows = []
    for (mth, seed), h in histories.items():
        if mth != method:
            continue
        f = h.frame
        f = f[(f.split == "train") & f.metric.str.startswith("reg/conf/")]
        g = f.groupby(["epoch", "metric"], as_index=False).value.mean()
        for r in g.itertuples(index=False):
            m = r.metric.split("/", 2)[2]
            rows.append({"epoch": int(r.epoch), "seed": int(seed), "modality": (names or {}).get(m, m),
                         "confidence": float(r.value)})
    if not rows:
        raise KeyError(f"no reg/conf/<m> logged for {method!r}; train it with a GradMonitor ('joint') or RedReg")
    return pd.DataFrame(rows)


def coefficient_curves(ratios: Sequence[float], ogm_alpha: float = 0.8, pmr_alpha: float = 0.6) -> pd.DataFrame:
    """How strongly OGM-GE and PMR act as a function of the dominance ratio
    rho = s_dominant / s_weak (their summed-score ratios), from the library functions:
    OGM-GE's factor on the dominant encoder's gradient, and the weight of the weak
    modality's prototype loss under PMR's public rule and our old clipped rule.
    Tidy: ratio, rule, value."""
    from ..regulate import ogm_coefficients, pmr_coefficients

    ratios = [float(r) for r in ratios]
    if not ratios or min(ratios) <= 0:
        raise ValueError(f"ratios must be positive numbers, got {ratios}")
    rows = []
    for r in ratios:
        k = ogm_coefficients({"weak": 1.0, "dominant": r}, ogm_alpha)["dominant"]
        rows.append({"ratio": r, "rule": f"OGM-GE: factor on the dominant gradient (alpha={ogm_alpha:g})", "value": k})
        for rule, label in (("public", "PMR public rule"), ("clipped", "PMR clipped rule (ours, old)")):
            w = pmr_alpha * pmr_coefficients({"weak": 1.0, "dominant": r}, rule)["weak"]
            rows.append({"ratio": r, "rule": f"{label}: weight of the weak prototype loss", "value": w})
    return pd.DataFrame(rows)


def protocol_table(results: pd.DataFrame, methods: Sequence[str] | None = None, value: str = "acc",
                   digits: int = 3) -> pd.DataFrame:
    """mean ± std of ``value`` per method (rows) and protocol (columns), for results of
    several protocols concatenated (column ``protocol``)."""
    if "protocol" not in results:
        raise KeyError("results have no 'protocol' column; use rows from run_method / compare")
    g = results.groupby(["method", "protocol"])[value].agg(["mean", "std"])
    cell = g.apply(lambda r: f"{r['mean']:.{digits}f} ± {0.0 if pd.isna(r['std']) else r['std']:.{digits}f}", axis=1)
    tab = cell.unstack("protocol").fillna("-")
    order = [m for m in (methods or results["method"].drop_duplicates()) if m in tab.index]
    return tab.loc[order]


def key_lesson(results: pd.DataFrame, alone: pd.DataFrame) -> str:
    """The sentence notebook 05 is about, from this run's numbers: does any method's mean
    fused accuracy reach the best single modality trained alone (`unimodal_baselines`)?"""
    if results.empty or alone.empty:
        raise ValueError("results and alone must hold rows of this run")
    fused = results.groupby("method", sort=False).acc.mean()
    alone_acc = alone.groupby("modality").acc_alone.mean()
    best = alone_acc.idxmax()
    above = fused[fused >= alone_acc[best]]
    if above.empty:
        head = f"No method's fused accuracy reaches {best} trained alone ({alone_acc[best]:.3f})."
    else:
        verb = "reaches" if len(above) == 1 else "reach"
        head = (f"Only {', '.join(above.index)} {verb} {best} trained alone ({alone_acc[best]:.3f}); "
                f"every other method stays below.")
    return (f"{head} The best fused accuracy is {fused.idxmax()}'s, {fused.max():.3f} "
            f"({fused.max() - alone_acc[best]:+.3f} against {best} alone).")


def protocol_gain(both: pd.DataFrame) -> pd.DataFrame:
    """Per method, the paired (by seed) change of fused accuracy from the reference protocol
    to the auxiliary-heads protocol: mean, min and max over seeds."""
    if not {"method", "protocol", "seed", "acc"} <= set(both.columns):
        raise KeyError("both must have columns method, protocol, seed, acc")
    pair = both.pivot_table(index=["method", "seed"], columns="protocol", values="acc")
    missing = {"aux", "reference"} - set(pair.columns)
    if missing:
        raise ValueError(f"both must hold rows of the protocols 'aux' and 'reference'; missing {sorted(missing)}")
    return (pair["aux"] - pair["reference"]).dropna().groupby("method").agg(["mean", "min", "max"])


def summary_markdown(results: pd.DataFrame, alone: pd.DataFrame, claims: pd.DataFrame, histories: dict,
                     gain: pd.DataFrame | None = None, setting: str = "", steps: int | None = None) -> str:
    """Notebook 05's closing bullets, every number from this run: the claims' verdicts, the
    key lesson (`key_lesson`), how often RedReg's trigger and pull-back were on, when
    InfoReg's window was closed, the protocol effect (`protocol_gain`)."""
    fused = results.groupby("method", sort=False).acc.mean()
    verdicts = claims.verdict.value_counts()
    lines = []
    if setting:
        lines.append(f"- **Setting**: {setting}; each method under its reference protocol; "
                     f"{results.seed.nunique()} seeds.")
    lines.append(f"- **Claims**: {verdicts.get('supported', 0)} supported, {verdicts.get('not supported', 0)} not "
                 f"supported, {verdicts.get('inconclusive', 0)} inconclusive of {len(claims)}.")
    lines.append(f"- **Key lesson**: {key_lesson(results, alone)}")
    if any(m == "RedReg" for m, _ in histories):
        ff = fire_fractions(histories)
        trig, fired = ff.trigger.mean(), ff["fired (beta*gate>0)"].mean()
        lines.append(f"- **RedReg's monitor**: trigger on {trig:.0%} of the steps, pull-back on {fired:.0%}"
                     + (": what selects is the dominance test and the gate, not R." if trig > 0.95 else "."))
    win = [h.frame.query("metric == 'reg/window'") for (m, _), h in histories.items() if m == "InfoReg"]
    if win:
        w = pd.concat(win)
        by_epoch = w.groupby("epoch").value.mean()
        closed = [int(e) for e in by_epoch[by_epoch < 1].index]
        lines.append(f"- **InfoReg's window** was open on {w.value.mean():.0%} of the steps"
                     + (f"; closed for some seed in epoch(s) {closed}: with the zero padding, k is the newest "
                        "Fisher trace's share of all traces so far, which falls below 0.05 once that encoder's "
                        "gradient has collapsed." if closed else "; it never closed in this run."))
    if gain is not None and len(gain):
        lines.append(f"- **Protocol**: adding auxiliary heads moved a method's fused accuracy by "
                     f"{gain['mean'].min():+.3f} to {gain['mean'].max():+.3f}; under their reference protocols the "
                     f"methods span {fused.min():.3f} to {fused.max():.3f}.")
    if steps is not None:
        lines.append(f"- RedReg's growth rate S restarts each epoch (as in the code), so with {steps} steps per epoch "
                     f"it is the constant 1 for the first {min(10, steps)} steps of every epoch: at this scale the "
                     "monitor can hardly tell phases apart.")
    return "\n".join(lines)


