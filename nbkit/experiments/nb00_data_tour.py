"""Notebook 00, the data tour: which modality carries the label on its own,
and what the raw features look like. Each returns a tidy frame or arrays for `nbkit.viz`."""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ..data.batch import MultimodalDataset

__all__ = ["unimodal_accuracy", "dominance", "factor_dependence", "raw_projection", "missing_summary"]


def unimodal_accuracy(datasets: Mapping[str, MultimodalDataset], seeds: Iterable[int] = (0, 1, 2),
                      config=None, train_config=None, progress: bool = True) -> pd.DataFrame:
    """Train a `Unimodal` model (encoder + linear head) on each modality of each dataset.

    For every dataset and seed: a stratified 70/15/15 split by the seed, then one model per
    modality (``config``: a ModelConfig or dict of sizes; ``train_config``: a TrainConfig or
    dict, default 5 epochs, batch 128, best validation epoch kept). Returns one row per
    (dataset, modality, seed) with test accuracy ``acc``, ``chance`` (the majority-class
    rate of the test part) and training seconds.
    """
    import dataclasses

    from tqdm.auto import tqdm

    from ..evaluate import accuracy, collect
    from ..models.baselines import Unimodal
    from . import as_train_config, check_seeds, fit

    if not datasets:
        raise ValueError("datasets must name at least one MultimodalDataset")
    seeds = check_seeds(seeds)
    tc = as_train_config({"epochs": 5, "batch_size": 128, "progress": False, **(train_config or {})}
                         if not dataclasses.is_dataclass(train_config) else train_config)
    sizes = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config or {})
    jobs = [(name, ds, s, m) for name, ds in datasets.items() for s in seeds for m in ds.modalities]
    rows = []
    splits = {}
    for name, ds, s, m in tqdm(jobs, desc="unimodal models", disable=not progress, leave=False):
        if (name, s) not in splits:
            splits[name, s] = ds.split((0.7, 0.15, 0.15), seed=s)
        tr, va, te = splits[name, s]
        model, trainer = fit(Unimodal, tr, va, seed=s, config={**sizes, "modality": m}, train_config=tc)
        res = collect(model, te)
        chance = float(np.bincount(te.y.numpy()).max() / len(te))
        rows.append(dict(dataset=name, modality=m, seed=s, acc=accuracy(res["logits"], res["y"]),
                         chance=chance, train_s=trainer.train_time_s))
    return pd.DataFrame(rows)


def dominance(acc: pd.DataFrame) -> pd.DataFrame:
    """Per dataset of a `unimodal_accuracy` frame: the modality with the higher mean test
    accuracy, the runner-up, and the gap between their means (one row per dataset; a
    single-modality dataset has no runner-up)."""
    need = {"dataset", "modality", "acc"}
    if acc.empty or not need <= set(acc.columns):
        raise ValueError(f"dominance needs a unimodal_accuracy frame with columns {sorted(need)}")
    rows = []
    for name, g in acc.groupby("dataset", sort=False):
        m = g.groupby("modality", sort=False)["acc"].mean().sort_values(ascending=False)
        rows.append(dict(dataset=name, stronger=m.index[0], stronger_acc=float(m.iloc[0]),
                         weaker=m.index[1] if len(m) > 1 else None,
                         weaker_acc=float(m.iloc[1]) if len(m) > 1 else float("nan"),
                         gap=float(m.iloc[0] - m.iloc[1]) if len(m) > 1 else float("nan")))
    return pd.DataFrame(rows)


def factor_dependence(ds: MultimodalDataset, seed: int = 0) -> pd.DataFrame:
    """How well a linear probe reads the label from each ground-truth factor group of a
    synthetic dataset (``factors["shared"]`` and ``factors["private/<m>"]``): by
    construction the label depends on the shared factors only."""
    from ..evaluate import probe_table

    groups = {k: v for k, v in ds.factors.items() if k == "shared" or k.startswith("private/")}
    if "shared" not in groups:
        raise KeyError(f"{ds.name} has no ground-truth 'shared' factors (have {sorted(ds.factors)}); "
                       f"use nbkit.data.make_synthetic")
    t = probe_table(groups, {"label": ds.y}, seed=seed)
    t["chance"] = float(np.bincount(ds.y.numpy()).max() / len(ds))
    return t


def raw_projection(ds: MultimodalDataset, method: str = "tsne", n: int = 800, seed: int = 0,
                   pca_dims: int = 50) -> dict[str, np.ndarray]:
    """2-D projection of each modality's raw features (flattened) for ``n`` random samples.

    Features are standardized and reduced to ``pca_dims`` principal components first (cheap,
    and the usual prelude to t-SNE/UMAP). Returns ``{modality: [n, 2], "index": rows used}``.
    """
    from sklearn.decomposition import PCA

    from ..evaluate import project_2d

    if int(n) < 5:
        raise ValueError(f"n must be >= 5 points, got {n}")
    rng = np.random.default_rng(int(seed))
    idx = np.sort(rng.permutation(len(ds))[: int(n)])
    out: dict[str, np.ndarray] = {"index": idx}
    for m, t in ds.x.items():
        z = t[idx].reshape(len(idx), -1).numpy().astype(np.float32)
        z = (z - z.mean(0)) / (z.std(0) + 1e-6)
        k = min(int(pca_dims), z.shape[1], len(z) - 1)
        if k < z.shape[1]:
            z = PCA(k, random_state=int(seed)).fit_transform(z)
        out[m] = project_2d(z, method=method, seed=int(seed))
    return out


def missing_summary(masks: Mapping[str, np.ndarray], modalities) -> pd.DataFrame:
    """Fraction of samples missing each modality, and with both/one present, per mask."""
    rows = []
    for name, m in masks.items():
        m = np.asarray(m, dtype=bool)
        row = {"setting": name}
        for i, mo in enumerate(modalities):
            row[f"missing {mo}"] = float(1 - m[:, i].mean())
        row["all present"] = float(m.all(1).mean())
        row["none present"] = float((~m).all(1).mean())
        rows.append(row)
    return pd.DataFrame(rows)
