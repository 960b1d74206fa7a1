"""Notebook 00, the data tour: which modality carries the label on its own,
and what the raw features look like. Each returns a tidy frame or arrays for `nbkit.viz`."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..data.batch import MultimodalDataset

__all__ = ["unimodal_accuracy", "dominance", "factor_dependence", "raw_projection", "missing_summary",
           "keep_one_rates", "describe_maps", "read_speed", "read_dominance", "read_missing", "read_probes"]


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

    from ..evaluate import accuracy, collect
    from ..progress import progress_bar
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
    bar = progress_bar(len(jobs), "unimodal models", enabled=progress)
    for name, ds, s, m in jobs:
        bar.update(1)
        if (name, s) not in splits:
            splits[name, s] = ds.split((0.7, 0.15, 0.15), seed=s)
        tr, va, te = splits[name, s]
        model, trainer = fit(Unimodal, tr, va, seed=s, config={**sizes, "modality": m}, train_config=tc)
        res = collect(model, te)
        chance = float(np.bincount(te.y.numpy()).max() / len(te))
        rows.append(dict(dataset=name, modality=m, seed=s, acc=accuracy(res["logits"], res["y"]),
                         chance=chance, train_s=trainer.train_time_s))
    bar.close()
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


# ------------------------------------------------------------------ generated reading
# The notebook's "what this run shows" sentences: written from the numbers of the run, so
# they cannot drift from the figures above them (docs/ARCHITECTURE.md, notebook template).

def keep_one_rates(p: float, n_modalities: int = 2) -> dict[str, float]:
    """Closed form of `nbkit.data.drop_modalities` with ``keep_one``: each of M modalities is
    dropped independently with probability p; a sample that lost all M gets one back, chosen
    uniformly. So a modality is missing with probability p - p^M / M (it was dropped, and
    not the one given back), all M are present with probability (1 - p)^M, and exactly one
    is present with probability M p^(M-1) (1 - p) + p^M. For M = 2: p - p^2/2, (1 - p)^2."""
    from .._checks import check_int, check_probability

    p = check_probability("p", p)
    M = check_int("n_modalities", n_modalities, 2)
    return {"missing": p - p ** M / M, "all present": (1 - p) ** M,
            "one present": M * p ** (M - 1) * (1 - p) + p ** M}


def _strength(score: float, chance: float) -> str:
    lift = (score - chance) / (1 - chance) if chance < 1 else 0.0
    return "strongly" if lift > 0.5 else "partly" if lift > 0.15 else "hardly"


def describe_maps(panels: Mapping[str, tuple], k: int = 10) -> tuple[pd.DataFrame, str]:
    """Numbers for 2-D maps drawn by `nbkit.viz.embedding_grid_figure` (the same
    ``{title: (xy, color[, name])}``): `nbkit.evaluate.neighbour_agreement` of each map with
    its colour. Returns (frame, markdown): one bullet per map, "<title>: the k nearest
    neighbours share the <name> of a point in 63% of cases (chance 10%): strongly grouped",
    the word from the lift over chance ((score - chance) / (1 - chance): > 0.5 strongly,
    > 0.15 partly, else hardly)."""
    from ..evaluate import neighbour_agreement

    rows, lines = [], []
    for title, spec in panels.items():
        xy, color = spec[0], np.asarray(spec[1])
        name = spec[2] if len(spec) > 2 else "label"
        a = neighbour_agreement(xy, color, k=k)
        rows.append({"map": title, "colour": name, **a})
        if a["kind"] == "purity":
            lines.append(f"- **{title}**: the {k} nearest neighbours of a point share its {name} in "
                         f"{a['score']:.0%} of cases (chance {a['chance']:.0%}): {_strength(a['score'], a['chance'])} "
                         f"grouped by {name}.")
        else:
            lines.append(f"- **{title}**: a point's {name} and the mean {name} of its {k} nearest neighbours "
                         f"correlate at r = {a['score']:.2f} (0 if the map ignored it): "
                         f"{_strength(max(a['score'], 0.0), 0.0)} ordered by {name}.")
    return pd.DataFrame(rows), "\n".join(lines)


def read_speed(ds: MultimodalDataset) -> str:
    """One sentence on how the avdigits speaking rate shows in the audio: Spearman rho
    between the speed (words/min) and the spoken word's duration (s), over ``ds``."""
    from scipy.stats import spearmanr

    for f in ("speed", "duration"):
        if f not in ds.factors:
            raise KeyError(f"{ds.name} has no factor {f!r} (have {sorted(ds.factors)}); use nbkit.data.load_avdigits")
    sp, du = ds.factors["speed"].numpy(), ds.factors["duration"].numpy()
    rho = float(spearmanr(sp, du).statistic)
    slow, fast = du[sp <= np.percentile(sp, 25)].mean(), du[sp >= np.percentile(sp, 75)].mean()
    return (f"Over all {len(ds)} clips, speed and the word's duration have Spearman rho = {rho:+.2f}: the slowest "
            f"quarter of clips (speed <= {np.percentile(sp, 25):.0f} words/min) last {slow:.2f} s on average, the "
            f"fastest quarter {fast:.2f} s. Speed is visible in the audio as duration; nothing in the image depends on it.")


def read_dominance(acc: pd.DataFrame, clean: str, noisy: str | None = None, sequence: str | None = None,
                   synthetic: str | None = None) -> str:
    """What section 4 of notebook 00 shows, from a `unimodal_accuracy` frame: the stronger
    modality per dataset and by how much, whether image noise widened the gap, how the
    same audio scores through the sequence encoder, and the synthetic gap."""
    dom = dominance(acc).set_index("dataset")
    mean = acc.groupby(["dataset", "modality"], sort=False).acc.mean()
    n = acc.seed.nunique()
    for name in (clean, noisy, sequence, synthetic):
        if name is not None and name not in dom.index:
            raise KeyError(f"dataset {name!r} is not in the frame (have {list(dom.index)})")
    r = dom.loc[clean]
    out = [f"On **{clean}** the {r.stronger} alone reaches {r.stronger_acc:.3f} test accuracy and the "
           f"{r.weaker} alone {r.weaker_acc:.3f} (gap {r.gap:+.3f}, mean of {n} seed{'s' if n != 1 else ''})."]
    if noisy is not None:
        q = dom.loc[noisy]
        img = mean.get((noisy, "image"), float("nan"))
        change = "widens" if q.gap > r.gap and q.stronger == r.stronger else "does not widen"
        out.append(f"With noise on the images ({noisy}) the image alone reaches {img:.3f}; the stronger modality is "
                   f"the {q.stronger} and the gap {change} ({r.gap:+.3f} -> {q.gap:+.3f}).")
    if sequence is not None and (clean, "audio") in mean.index:
        seq, flat = mean[(sequence, "audio")], mean[(clean, "audio")]
        word = "lower" if seq < flat else "higher"
        out.append(f"The same clips through the small sequence encoder score {seq:.3f}, {word} than the flat MLP's "
                   f"{flat:.3f} with this budget: which modality looks dominant depends on the encoder and the "
                   f"training budget as well as on the data.")
    if synthetic is not None:
        q = dom.loc[synthetic]
        out.append(f"On **{synthetic}** the {q.stronger} modality wins by {q.gap:+.3f} ({q.stronger_acc:.3f} vs "
                   f"{q.weaker_acc:.3f}): there the gap is set by the signal-to-noise ratios.")
    return " ".join(out)


def read_missing(summary: pd.DataFrame, ps: Sequence[float], modalities: Sequence[str]) -> str:
    """Measured missing rates of a `missing_summary` frame (one row per p, same order as
    ``ps``) beside the keep-one closed form of `keep_one_rates`."""
    if len(summary) != len(ps):
        raise ValueError(f"summary has {len(summary)} rows but ps has {len(ps)} values")
    lines = []
    for (_, row), p in zip(summary.iterrows(), ps):
        th = keep_one_rates(float(p), len(modalities))
        miss = " and ".join(f"{row[f'missing {m}']:.1%} miss {m}" for m in modalities)
        lines.append(f"- at p = {p:g}: {miss} (closed form p - p²/{len(modalities)} = {th['missing']:.1%}); "
                     f"{row['all present']:.1%} have every modality ((1 - p)^{len(modalities)} = {th['all present']:.1%}).")
    return "\n".join(lines)


def read_probes(dep: pd.DataFrame) -> str:
    """One sentence from a `factor_dependence` frame: how well the label reads from each
    ground-truth factor group, against the majority-class rate."""
    t = dep.set_index("representation").score
    chance = float(dep.chance.iloc[0])
    priv = [k for k in t.index if k.startswith("private/")]
    return (f"A linear probe reads the label from the shared factors with accuracy {t['shared']:.3f}; from the private "
            f"factors " + ", ".join(f"of {k.split('/', 1)[1]} {t[k]:.3f}" for k in priv)
            + f", against a majority-class rate of {chance:.3f}.")
