"""Metrics and protocols (docs/ARCHITECTURE.md): accuracy/AUC, running a model over a
dataset, linear probes, 2-D projections (PCA, t-SNE, UMAP; UMAP imported lazily, it compiles
with numba), missing-modality robustness curves (MultiBench), shared-space disentanglement
diagnostics, and cross-modal retrieval (R@k, median rank, rSum)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data.batch import MultimodalDataset

__all__ = ["accuracy", "auc", "classification_metrics", "collect", "linear_probe", "probe_table",
           "project_2d", "ROBUSTNESS_LEVELS", "robustness_curve", "relative_robustness",
           "effective_robustness", "shared_matrix", "shared_correlation", "stream_diagnostics",
           "retrieval_metrics"]


def _np(a) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.detach().float().cpu().numpy() if a.is_floating_point() else a.detach().cpu().numpy()
    return np.asarray(a)


def accuracy(logits, y) -> float:
    logits, y = _np(logits), _np(y)
    if logits.ndim != 2 or logits.shape[0] != y.shape[0]:
        raise ValueError(f"logits must be [N, C] matching y [N]; got {logits.shape} and {y.shape}")
    return float((logits.argmax(1) == y).mean())


def auc(logits, y) -> float:
    """ROC AUC: binary on the class-1 probability, else macro one-vs-rest. NaN when a class is absent."""
    from sklearn.metrics import roc_auc_score

    logits, y = _np(logits), _np(y)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    classes = np.unique(y)
    if len(classes) < 2:
        return float("nan")
    if logits.shape[1] == 2:
        return float(roc_auc_score(y, p[:, 1]))
    if len(classes) < logits.shape[1]:
        return float("nan")
    return float(roc_auc_score(y, p, multi_class="ovr", average="macro"))


def classification_metrics(logits, y) -> dict[str, float]:
    return {"acc": accuracy(logits, y), "auc": auc(logits, y)}


@torch.no_grad()
def collect(model, ds: MultimodalDataset, batch_size: int = 1024, device=None, with_terms: bool = False) -> dict[str, Any]:
    """Run ``model`` over ``ds`` in eval mode; concatenate every Output field on the CPU.

    Returns ``{"logits", "y", "features": {m: ...}, "shared", "private", "unimodal_logits",
    "gate", "fused", "factors", "present"}`` (empty fields left out) and, with
    ``with_terms``, the mean of each unweighted loss term.
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    acc: dict[str, Any] = {}
    terms_sum: dict[str, float] = {}
    n_seen = 0
    try:
        for batch in ds.batches(batch_size):
            b = batch.to(device)
            out = model(b)
            for name in ("logits", "fused", "gate"):
                v = getattr(out, name)
                if v is not None:
                    acc.setdefault(name, []).append(v.float().cpu())
            for name in ("features", "shared", "private", "unimodal_logits", "codes"):
                for m, v in getattr(out, name).items():
                    acc.setdefault(name, {}).setdefault(m, []).append(v.float().cpu() if v.is_floating_point() else v.cpu())
            if with_terms and len(b) >= 2:
                for k, v in model.loss_terms(b, out).items():
                    terms_sum[k] = terms_sum.get(k, 0.0) + float(v) * len(b)
                n_seen += len(b)
    finally:
        model.train(was_training)
    res: dict[str, Any] = {}
    for k, v in acc.items():
        res[k] = torch.cat(v) if isinstance(v, list) else {m: torch.cat(t) for m, t in v.items()}
    res["y"] = ds.y
    res["factors"] = ds.factors
    res["present"] = ds.present
    if with_terms and n_seen:
        res["terms"] = {k: s / n_seen for k, s in terms_sum.items()}
    return res


def linear_probe(z, target, kind: str = "auto", seed: int = 0, test_size: float = 0.3) -> float:
    """How linearly decodable ``target`` is from the representation ``z``.

    kind: "regression" -> R^2 of ridge regression (mean over target columns),
          "classification" -> accuracy of logistic regression, "auto" chooses by dtype.
    Scored on a held-out part (``test_size``), split by ``seed``.
    """
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    z, t = _np(z).reshape(len(_np(z)), -1), _np(target)
    if len(z) != len(t):
        raise ValueError(f"z has {len(z)} rows but target has {len(t)}")
    if len(z) < 10:
        raise ValueError(f"a linear probe needs at least 10 samples, got {len(z)}")
    if kind == "auto":
        kind = "classification" if np.issubdtype(t.dtype, np.integer) and t.ndim == 1 else "regression"
    if kind not in ("classification", "regression"):
        raise ValueError(f"kind must be 'auto', 'classification' or 'regression', got {kind!r}")
    strat = t if kind == "classification" and np.min(np.bincount(t.astype(int))[np.unique(t.astype(int))]) >= 2 else None
    ztr, zte, ttr, tte = train_test_split(z, t, test_size=test_size, random_state=seed, stratify=strat)
    sc = StandardScaler().fit(ztr)
    ztr, zte = sc.transform(ztr), sc.transform(zte)
    if kind == "classification":
        clf = LogisticRegression(max_iter=500, C=1.0).fit(ztr, ttr)
        return float((clf.predict(zte) == tte).mean())
    reg = Ridge(alpha=1.0).fit(ztr, ttr)
    pred = reg.predict(zte)
    return float(r2_score(tte, pred, multioutput="uniform_average"))


def probe_table(representations: dict[str, Any], targets: dict[str, Any], seed: int = 0):
    """Tidy frame of linear-probe scores: every representation x every target."""
    import pandas as pd

    rows = []
    for rn, z in representations.items():
        for tn, t in targets.items():
            kind = "classification" if np.issubdtype(_np(t).dtype, np.integer) and _np(t).ndim == 1 else "regression"
            rows.append({"representation": rn, "target": tn, "metric": "accuracy" if kind == "classification" else "R2",
                         "score": linear_probe(z, t, kind=kind, seed=seed)})
    return pd.DataFrame(rows)


def project_2d(z, method: str = "pca", seed: int = 0, **kwargs) -> np.ndarray:
    """[N, 2] projection of ``z`` by PCA, t-SNE or UMAP (UMAP imported only when asked for)."""
    z = _np(z).reshape(len(_np(z)), -1).astype(np.float32)
    if len(z) < 5:
        raise ValueError(f"project_2d needs at least 5 points, got {len(z)}")
    method = method.lower()
    if method == "pca":
        from sklearn.decomposition import PCA
        return PCA(2, random_state=seed).fit_transform(z)
    if method == "tsne":
        from sklearn.manifold import TSNE
        perplexity = kwargs.pop("perplexity", min(30.0, (len(z) - 1) / 3))
        return TSNE(2, perplexity=perplexity, random_state=seed, init="pca", **kwargs).fit_transform(z)
    if method == "umap":
        import umap  # lazy: numba compiles on first import
        return umap.UMAP(n_components=2, random_state=seed, **kwargs).fit_transform(z)
    raise ValueError(f"method must be 'pca', 'tsne' or 'umap', got {method!r}")


# ------------------------------------------------------------------ robustness protocol
# MultiBench style (Liang et al., NeurIPS 2021 datasets track; specs/evaluation.md): a
# curve of the test metric over 11 imperfection levels 0, .1, ..., 1; relative robustness =
# area under it (trapezoid rule); effective robustness = deviation from the late-fusion
# curve after shifting late fusion to the same clean score (MultiBench sums the deviation
# over the levels; ``reduce="mean"`` gives it per level, in metric units).
ROBUSTNESS_LEVELS = tuple(round(0.1 * i, 1) for i in range(11))


def _curve_arrays(values, levels, name: str = "values"):
    v = np.asarray(values, dtype=float).ravel()
    lv = np.asarray(ROBUSTNESS_LEVELS if levels is None else levels, dtype=float).ravel()
    if v.size < 2:
        raise ValueError(f"{name} must hold the metric at >= 2 levels, got {v.size}")
    if lv.size != v.size:
        raise ValueError(f"{name} has {v.size} points but levels has {lv.size}; pass levels= "
                         f"matching the curve (default: the 11 levels 0, .1, ..., 1)")
    if not np.all(np.diff(lv) > 0):
        raise ValueError(f"levels must be strictly increasing, got {lv.tolist()}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contains NaN/Inf ({v.tolist()}); a metric was undefined at some level")
    return v, lv


def relative_robustness(values, levels=None) -> float:
    """Area under the robustness curve (trapezoid rule over ``levels``, default 0..1 in 11
    steps). A model whose metric stays at its clean value ``c`` scores ``c`` on the 0..1 axis."""
    v, lv = _curve_arrays(values, levels)
    return float(np.sum((v[1:] + v[:-1]) * np.diff(lv) / 2))


def effective_robustness(values, reference, levels=None, reduce: str = "sum") -> float:
    """Deviation of a curve from the ``reference`` (late-fusion) curve shifted to the same
    clean score: ``f - (lf + f[0] - lf[0])``, summed over levels (MultiBench) or averaged
    (``reduce="mean"``). Positive: the model loses less than late fusion as corruption grows."""
    v, lv = _curve_arrays(values, levels, "values")
    r, _ = _curve_arrays(reference, lv, "reference")
    dev = v - (r + v[0] - r[0])
    if reduce == "sum":
        return float(dev.sum())
    if reduce == "mean":
        return float(dev.mean())
    raise ValueError(f"reduce must be 'sum' (MultiBench) or 'mean', got {reduce!r}")


def robustness_curve(model, ds: MultimodalDataset, levels=None, kind: str = "missing", metric: str = "auc",
                     modalities=None, seed: int = 0, keep_one: bool = True, batch_size: int = 1024):
    """The metric of a trained ``model`` on ``ds`` at each corruption level.

    kind="missing": every sample loses each targeted modality independently with probability
    p = level (`nbkit.data.drop_modalities`, ``keep_one`` so no sample is left empty);
    kind="noise": Gaussian noise of std level x feature std (`nbkit.data.add_noise`).
    The same ``seed`` at every level, so the draws are nested-comparable across models.
    Returns a tidy frame: level, metric, value (plus acc alongside when metric="auc").
    """
    import pandas as pd

    from .data.corrupt import add_noise, drop_modalities

    if not isinstance(ds, MultimodalDataset):
        raise TypeError(f"ds must be a MultimodalDataset, got {type(ds).__name__}")
    if kind not in ("missing", "noise"):
        raise ValueError(f"kind must be 'missing' or 'noise', got {kind!r}")
    if metric not in ("auc", "acc"):
        raise ValueError(f"metric must be 'auc' or 'acc', got {metric!r}")
    lv = [float(v) for v in (ROBUSTNESS_LEVELS if levels is None else levels)]
    if len(lv) < 1 or any(b <= a for a, b in zip(lv, lv[1:])) or lv[0] < 0 or (kind == "missing" and lv[-1] > 1):
        raise ValueError(f"levels must be a non-empty increasing list of levels >= 0 (<= 1 for "
                         f"missing probabilities), got {lv}")
    rows = []
    for level in lv:
        if kind == "missing":
            d = drop_modalities(ds, float(level), seed=seed, modalities=modalities, keep_one=keep_one)
        else:
            d = add_noise(ds, float(level), seed=seed, modalities=modalities)
        res = collect(model, d, batch_size=batch_size)
        m = classification_metrics(res["logits"], res["y"])
        rows.append({"level": float(level), "metric": metric, "value": m[metric], "acc": m["acc"]})
    return pd.DataFrame(rows)


# ------------------------------------------------- disentanglement: shared-space diagnostics
def shared_matrix(res: dict) -> torch.Tensor:
    """Shared vectors of every present (sample, modality), stacked: [sum_m N_m, d]
    (the "stacked shared batch S" of DSRSD-Net, docs/methods/dsrsd.md). ``res`` is `nbkit.evaluate.collect` output."""
    if not res.get("shared"):
        raise ValueError("the model's Output has no shared representations (Output.shared is empty); "
                         "shared-space diagnostics need a model with a shared stream, e.g. DSRSD")
    mods = list(res["shared"])
    pres = res["present"]
    return torch.cat([res["shared"][m][pres[:, i]] for i, m in enumerate(mods)], 0)


def shared_correlation(model_or_res, ds: MultimodalDataset | None = None) -> np.ndarray:
    """Correlation matrix [d, d] of the stacked shared space on ``ds`` (standardised, Bessel)."""
    from .losses import covariance

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
    from .losses import decorrelation, orthogonality

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


# ------------------------------------------------------------------------------- retrieval
def retrieval_metrics(a, b, ks=(1, 5, 10), similarity: str = "cosine", names: tuple[str, str] = ("a", "b")) -> dict[str, float]:
    """Cross-modal retrieval between paired rows: row i of ``a`` [N, d] and row i of ``b``
    [N, d'] are the same item (compare d == d' unless ``similarity="precomputed"``, where
    ``a`` is the [N, N] similarity matrix, rows = queries of ``a``, columns = items of ``b``).

    For each direction (a->b: each row of ``a`` queries all of ``b``, and b->a) the rank of
    the true partner (1 = best; ties count against the query: every other item scoring at
    least as high ranks before it): R@k in percent, median rank and mean rank; plus
    ``rsum`` = the sum of R@k over both directions (VSE convention). Keys:
    ``"{a}->{b} R@1"``, ..., ``"{a}->{b} medr"``, ``"{a}->{b} meanr"``, the same for
    ``"{b}->{a}"``, and ``"rsum"``."""
    from ._checks import check_choice, check_finite, check_int

    check_choice("similarity", similarity, ("cosine", "dot", "precomputed"))
    A = torch.as_tensor(_np(a), dtype=torch.float64)
    if similarity == "precomputed":
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 2:
            raise ValueError(f"a must be a square [N, N] similarity matrix with N >= 2 when similarity='precomputed', "
                             f"got {tuple(A.shape)}")
        check_finite("a", A)
        S = A
    else:
        B = torch.as_tensor(_np(b), dtype=torch.float64)
        if A.ndim != 2 or B.ndim != 2:
            raise ValueError(f"a and b must be [N, d] embedding matrices, got {tuple(A.shape)} and {tuple(B.shape)}")
        if A.shape != B.shape:
            raise ValueError(f"a and b must have the same shape [N, d] (row i of each is the same item), "
                             f"got {tuple(A.shape)} and {tuple(B.shape)}")
        if A.shape[0] < 2:
            raise ValueError(f"a and b must hold at least 2 paired rows, got {A.shape[0]}")
        check_finite("a", A), check_finite("b", B)
        if similarity == "cosine":
            A = A / A.norm(dim=1, keepdim=True).clamp_min(1e-12)
            B = B / B.norm(dim=1, keepdim=True).clamp_min(1e-12)
        S = A @ B.T
    ks = [check_int("ks[i]", k, 1) for k in ks]
    if not ks:
        raise ValueError("ks must hold at least one k, got []")
    out: dict[str, float] = {}
    rsum = 0.0
    for name, M in ((f"{names[0]}->{names[1]}", S), (f"{names[1]}->{names[0]}", S.T)):
        true = M.diagonal()[:, None]
        ranks = (M >= true).sum(1).double()          # 1 + number of others at least as similar
        for k in ks:
            r = float((ranks <= k).double().mean() * 100)
            out[f"{name} R@{k}"] = r
            rsum += r
        out[f"{name} medr"] = float(ranks.median())
        out[f"{name} meanr"] = float(ranks.mean())
    out["rsum"] = rsum
    return out


# ===================================================================================
# Notebooks 00-03, teaching (issue 13): how well a 2-D map groups a label. Appended block.
__all__ += ["neighbour_agreement"]


def neighbour_agreement(xy, labels, k: int = 10, categorical: bool | None = None) -> dict[str, float]:
    """How strongly the ``k`` nearest neighbours of each point of a 2-D map (or any [N, d]
    embedding) agree with its label, so a notebook can say in numbers what a scatter shows.

    categorical labels: ``score`` = mean fraction of a point's k neighbours with its label
    (neighbourhood purity); ``chance`` = sum_c f_c^2, the purity of a map that ignores the
    label (f_c: class frequencies). Continuous labels: ``score`` = Pearson r between a
    point's value and the mean value of its k neighbours; ``chance`` = 0.
    Returns {"score", "chance", "k", "kind"} ("purity" or "correlation")."""
    from sklearn.neighbors import NearestNeighbors

    from ._checks import check_int

    z = _np(xy).astype(np.float64)
    lab = _np(labels)
    if z.ndim != 2 or len(z) != len(lab) or lab.ndim != 1:
        raise ValueError(f"xy must be [N, d] and labels [N]; got {z.shape} and {lab.shape}")
    k = check_int("k", k, 1)
    if len(z) <= k:
        raise ValueError(f"k must be smaller than the number of points ({len(z)}), got {k}")
    if categorical is None:
        categorical = not np.issubdtype(lab.dtype, np.floating)
    if not np.isfinite(z).all():
        raise ValueError("xy must be finite (no NaN/inf)")
    idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z, return_distance=False)[:, 1:]
    if categorical:
        lab = np.asarray(lab).astype(str)
        score = float((lab[idx] == lab[:, None]).mean())
        _, counts = np.unique(lab, return_counts=True)
        return {"score": score, "chance": float(((counts / counts.sum()) ** 2).sum()), "k": k, "kind": "purity"}
    v = lab.astype(np.float64)
    if not np.isfinite(v).all() or v.std() == 0:
        raise ValueError("continuous labels must be finite and not constant")
    r = float(np.corrcoef(v, v[idx].mean(1))[0, 1])
    return {"score": r, "chance": 0.0, "k": k, "kind": "correlation"}
