"""Notebook 01, the residual dual-stream decomposition of DSRSD-Net: train one
model, probe its shared and private streams against known factors, compare the residual
shared head with a plain MLP head over seeds, 2-D maps of both spaces.

Every function returns tidy frames (one row per seed x setting x metric) that `nbkit.viz`
draws. Sizes and schedules are our choices (the paper gives none we could retrieve).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.batch import MultimodalDataset
from ..evaluate import classification_metrics, collect, linear_probe, project_2d

__all__ = ["TRAIN", "stream_representations", "stream_probes", "probe_matrix", "separation",
           "residual_vs_plain", "stream_embeddings", "summary_01", "claim_rows"]


# ours: the spec's optimiser (AdamW, lr 1e-3, wd 1e-5) with our epochs and batch size
TRAIN = dict(epochs=15, batch_size=128, lr=1e-3, weight_decay=1e-5, progress=False)


def stream_representations(model, ds: MultimodalDataset, include_inputs: bool = True) -> dict[str, torch.Tensor]:
    """{"shared/<m>", "private/<m>"} (and "input/<m>", the raw features flattened, as the
    reference of what is linearly available) for every modality."""
    res = collect(model, ds)
    if "shared" not in res or "private" not in res:
        raise ValueError(f"{type(model).__name__} has no shared/private streams in its Output")
    reps: dict[str, torch.Tensor] = {}
    for m in ds.modalities:
        if include_inputs:
            reps[f"input/{m}"] = ds.x[m].reshape(len(ds), -1).float()
        reps[f"shared/{m}"] = res["shared"][m]
        reps[f"private/{m}"] = res["private"][m]
    return reps


def _default_targets(ds: MultimodalDataset) -> dict[str, Any]:
    if "shared" in ds.factors:                                   # synthetic: known factors
        return {k: v for k, v in ds.factors.items() if k == "shared" or k.startswith("private/")}
    return {"class": ds.y}


def stream_probes(model, ds: MultimodalDataset, targets: Mapping[str, Any] | Sequence[str] | None = None,
                  seed: int = 0, include_inputs: bool = True, max_input_dim: int = 4096) -> pd.DataFrame:
    """Linear probes from every stream of every modality to every target.

    targets: {name: tensor [N] or [N, k]}, or names of ``ds.factors`` ("class" means ``ds.y``);
    default: the synthetic factors "shared" and "private/<m>", else the class.
    Returns columns representation, stream (input/shared/private), modality, target, metric
    (R2 for continuous targets, accuracy for class targets), score. Only samples that have
    the modality are probed for it.
    """
    if targets is None:
        targets = _default_targets(ds)
    elif not isinstance(targets, Mapping):
        names = list(targets)
        unknown = [t for t in names if t != "class" and t not in ds.factors]
        if unknown:
            raise KeyError(f"targets {unknown} are not among ds.factors {sorted(ds.factors)} (or 'class')")
        targets = {t: (ds.y if t == "class" else ds.factors[t]) for t in names}
    reps = stream_representations(model, ds, include_inputs=include_inputs)
    rows = []
    for rn, z in reps.items():
        stream, m = rn.split("/", 1)
        if stream == "input" and z.shape[1] > max_input_dim:
            continue
        keep = ds.present[:, ds.modalities.index(m)]
        for tn, t in targets.items():
            t = torch.as_tensor(t)[keep]
            kind = "classification" if not t.is_floating_point() and t.ndim == 1 else "regression"
            rows.append({"representation": rn, "stream": stream, "modality": m, "target": tn,
                         "metric": "accuracy" if kind == "classification" else "R2",
                         "score": linear_probe(z[keep], t, kind=kind, seed=seed)})
    return pd.DataFrame(rows)


def probe_matrix(probes: pd.DataFrame) -> pd.DataFrame:
    """representation x target grid of probe scores (mean over seeds if several)."""
    return probes.pivot_table(index="representation", columns="target", values="score", aggfunc="mean",
                              sort=False)


def separation(probes: pd.DataFrame) -> pd.DataFrame:
    """Per modality: how well each stream carries the factor it should (synthetic factors).

    shared_on_shared, private_on_shared, shared_on_private, private_on_private (probe R2), and
    ``separation`` = (shared_on_shared - private_on_shared) + (private_on_private - shared_on_private):
    > 0 when the shared stream is the better read-out of the shared factors AND the private
    stream the better read-out of the modality's private factors.
    """
    rows = []
    group_cols = [c for c in ("seed", "variant") if c in probes.columns]
    groups = probes.groupby(group_cols) if group_cols else [((), probes)]
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        for m in g.modality.unique():
            def score(stream, target):
                r = g[(g.stream == stream) & (g.modality == m) & (g.target == target)].score
                if r.empty:
                    raise KeyError(f"no probe of stream {stream!r} of {m!r} on target {target!r}")
                return float(r.mean())
            row = dict(zip(group_cols, key), modality=m,
                       shared_on_shared=score("shared", "shared"), private_on_shared=score("private", "shared"),
                       shared_on_private=score("shared", f"private/{m}"),
                       private_on_private=score("private", f"private/{m}"))
            row["separation"] = (row["shared_on_shared"] - row["private_on_shared"]
                                 + row["private_on_private"] - row["shared_on_private"])
            rows.append(row)
    return pd.DataFrame(rows)


def residual_vs_plain(train: MultimodalDataset, val: MultimodalDataset, test: MultimodalDataset,
                      seeds: Sequence[int] = (0, 1, 2), config=None, train_config=None, progress: bool = True,
                      variants: Mapping[str, dict] | None = None, return_models: bool = False) -> tuple:
    """Train each variant of DSRSD-Net (``config``: a DSRSDConfig or dict; each variant's
    overrides on top) for each seed with ``train_config`` (default `TRAIN`); returns
    ``(metrics, probes)`` (and, with ``return_models``, a third item {(variant, seed): (model, trainer)}).

    variants default: {"residual": {}, "plain MLP": {"residual": False}} (spec ablation
    "w/o residual"). metrics: one row per seed x variant with acc, auc and, when the data has
    synthetic factors, the mean (over modalities) of the `separation` columns.
    """
    from tqdm.auto import tqdm

    from ..models.dsrsd import DSRSD
    from . import as_config, as_train_config, check_seeds, fit

    variants = dict(variants or {"residual": {}, "plain MLP": {"residual": False}})
    seeds = check_seeds(seeds)
    base = as_config(DSRSD, config)
    tc = as_train_config(TRAIN if train_config is None else train_config)
    rows, probe_frames, models = [], [], {}
    bar = tqdm(total=len(seeds) * len(variants), desc="residual vs plain", disable=not progress, leave=False)
    for seed in seeds:
        for name, over in variants.items():
            model, trainer = fit(DSRSD, train, val, seed=seed, config=as_config(DSRSD, base, **over), train_config=tc)
            res = collect(model, test)
            row = {"seed": seed, "variant": name, **classification_metrics(res["logits"], res["y"])}
            if "shared" in test.factors:
                pr = stream_probes(model, test, seed=seed, include_inputs=False).assign(seed=seed, variant=name)
                probe_frames.append(pr)
                sep = separation(pr).drop(columns=["seed", "variant", "modality"]).mean()
                row.update(sep.to_dict())
            rows.append(row)
            if return_models:
                models[(name, seed)] = (model, trainer)
            bar.update(1)
    bar.close()
    probes = pd.concat(probe_frames, ignore_index=True) if probe_frames else pd.DataFrame()
    return (pd.DataFrame(rows), probes, models) if return_models else (pd.DataFrame(rows), probes)


def stream_embeddings(model, ds: MultimodalDataset, modality: str, method: str = "tsne", n: int = 500,
                      seed: int = 0) -> dict[str, Any]:
    """2-D maps of one modality's shared and private spaces on the same ``n`` samples.

    Returns {"shared": xy [n, 2], "private": xy [n, 2], "index": the samples' indices,
    "y": their labels, "factors": their factors}, ready for `nbkit.viz.embedding_figure`.
    """
    if modality not in ds.modalities:
        raise KeyError(f"modality {modality!r} is not among {list(ds.modalities)}")
    if int(n) < 5:
        raise ValueError(f"n must be >= 5 points, got {n}")
    g = torch.Generator().manual_seed(int(seed))
    have = torch.nonzero(ds.present[:, ds.modalities.index(modality)]).flatten()
    idx = have[torch.randperm(len(have), generator=g)[: int(n)]].sort().values
    sub = ds.subset(idx)
    res = collect(model, sub)
    return {"shared": project_2d(res["shared"][modality], method, seed=seed),
            "private": project_2d(res["private"][modality], method, seed=seed),
            "index": idx.numpy(), "y": sub.y.numpy(), "factors": {k: v.numpy() for k, v in sub.factors.items()}}


def summary_01(metrics: pd.DataFrame, sep: pd.DataFrame, av_eval: Mapping[str, float] | None = None,
               av_probes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Notebook 01's closing table: one row per (data, model, quantity) with mean, std and the
    number of seeds it averages. Every value is measured here (none is the paper's)."""
    rows = []

    def add(data, model, quantity, values):
        v = np.asarray(list(values), dtype=float)
        rows.append({"data": data, "model": model, "quantity": quantity, "mean": float(v.mean()),
                     "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n_seeds": int(v.size)})

    for variant, g in metrics.groupby("variant", sort=False):
        add("synthetic", variant, "test accuracy", g["acc"])
        add("synthetic", variant, "test AUC", g["auc"])
    cols = ["shared_on_shared", "private_on_shared", "shared_on_private", "private_on_private", "separation"]
    for variant, g in sep.groupby("variant", sort=False):
        per_seed = g.groupby("seed")[cols].mean()          # mean over modalities
        for c in cols:
            add("synthetic", variant, f"probe R2 {c}" if c != "separation" else "separation score", per_seed[c])
    if av_eval is not None:
        add("avdigits", "residual", "test accuracy (1 seed)", [av_eval["acc"]])
    if av_probes is not None and not av_probes.empty:
        for (rep, tgt), g in av_probes.groupby(["representation", "target"], sort=False):
            add("avdigits", "residual", f"probe acc {rep} -> {tgt} (1 seed)", g["score"])
    return pd.DataFrame(rows)


def claim_rows(sep: pd.DataFrame, dataset: str, variant: str = "residual", record: bool = True) -> pd.DataFrame:
    """Notebook 01's claim: the residual dual-stream module splits each modality into shared
    and private factors, i.e. the `separation` score (mean over modalities, per seed) of
    ``variant`` is > 0. The paper states it qualitatively (no number)."""
    from ..claims import claim

    per_seed = sep[sep.variant == variant].groupby("seed", as_index=False).separation.mean().assign(variant=variant)
    return claim(per_seed, paper="DSRSD-Net (arXiv 2512.07568)",
                 claim="the residual dual-stream module splits each modality into shared and private factors "
                       "(probe separation score > 0)",
                 value="separation", by="variant", treatment=variant, against=0.0, dataset=dataset,
                 reference="qualitative claim of the paper (no number)", record=record)
