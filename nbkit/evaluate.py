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
from .nn import eval_mode

__all__ = ["accuracy", "auc", "classification_metrics", "collect", "linear_probe", "probe_table",
           "project_2d", "ROBUSTNESS_LEVELS", "robustness_curve", "relative_robustness",
           "effective_robustness", "shared_matrix", "shared_correlation", "stream_diagnostics",
           "retrieval_metrics", "discrete_representations", "pool_time", "cross_modal_generalization",
           "zero_shot_retrieval", "code_agreement", "code_cooccurrence", "coco_map", "detections",
           "detection_map", "found_objects", "fusion_degradation", "neighbour_agreement"]


def _np(a) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.detach().float().cpu().numpy() if a.is_floating_point() else a.detach().cpu().numpy()
    return np.asarray(a)


def _logits_labels(logits, y) -> tuple[np.ndarray, np.ndarray]:
    """Checked (logits [N, C] finite floats, y [N] integer labels in [0, C))."""
    logits, y = _np(logits), _np(y)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be an [N, C] array with C >= 2 classes, got shape {logits.shape}")
    if y.ndim != 1 or y.shape[0] != logits.shape[0]:
        raise ValueError(f"y must have shape [N] matching logits [N, C]; got logits {logits.shape} and y {y.shape}")
    if not np.issubdtype(logits.dtype, np.number):
        raise TypeError(f"logits must hold numbers, got dtype {logits.dtype}")
    if not np.isfinite(logits).all():
        raise ValueError(f"logits must be finite, got {int(np.isnan(logits).sum())} NaN and "
                         f"{int(np.isinf(logits).sum())} inf values (a diverged model?)")
    if np.issubdtype(y.dtype, np.floating):
        if not (np.isfinite(y).all() and np.all(y == np.round(y))):
            raise ValueError("y must hold integer class labels, got non-integral float values")
        y = y.astype(np.int64)
    elif not np.issubdtype(y.dtype, np.integer) and y.dtype != bool:
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= logits.shape[1]):
        raise ValueError(f"y must hold class labels in 0..{logits.shape[1] - 1} (one per logit column), "
                         f"got labels from {y.min()} to {y.max()}")
    return logits, y


def accuracy(logits, y) -> float:
    logits, y = _logits_labels(logits, y)
    return float((logits.argmax(1) == y).mean())


def auc(logits, y) -> float:
    """ROC AUC: binary on the class-1 probability, else macro one-vs-rest. NaN when a class is absent."""
    from sklearn.metrics import roc_auc_score

    logits, y = _logits_labels(logits, y)
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
    from ._checks import check_int

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (an nbkit model), got {type(model).__name__}")
    if not isinstance(ds, MultimodalDataset):
        raise TypeError(f"ds must be a MultimodalDataset, got {type(ds).__name__}")
    batch_size = check_int("batch_size", batch_size, 1)
    device = device or next(model.parameters()).device
    acc: dict[str, Any] = {}
    terms_sum: dict[str, float] = {}
    n_seen = 0
    with eval_mode(model):
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

    from ._checks import check_choice, check_int, check_number

    z, t = _np(z), _np(target)
    if z.ndim < 1 or t.ndim < 1:
        raise ValueError(f"z and target must have one row per sample, got shapes {z.shape} and {t.shape}")
    z = z.reshape(len(z), -1)
    if len(z) != len(t):
        raise ValueError(f"z has {len(z)} rows but target has {len(t)}")
    if len(z) < 10:
        raise ValueError(f"a linear probe needs at least 10 samples, got {len(z)}")
    for name, a in (("z", z), ("target", t)):
        if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
            raise TypeError(f"{name} must hold numbers, got dtype {a.dtype}")
        if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite, got {int(np.isnan(a).sum())} NaN and "
                             f"{int(np.isinf(a).sum())} inf values")
    check_choice("kind", kind, ("auto", "classification", "regression"))
    test_size = check_number("test_size", test_size, 0.0, 1.0, lo_open=True, hi_open=True)
    seed = check_int("seed", seed, 0)
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
    from ._checks import check_choice, check_int

    if not isinstance(method, str):
        raise ValueError(f"method must be 'pca', 'tsne' or 'umap', got {method!r}")
    z = _np(z)
    z = z.reshape(len(z), -1).astype(np.float32) if z.ndim >= 1 else z
    if z.ndim < 1 or len(z) < 5:
        raise ValueError(f"project_2d needs at least 5 points (rows of z), got {len(z) if z.ndim else 0}")
    if not np.isfinite(z).all():
        raise ValueError(f"z must be finite, got {int(np.isnan(z).sum())} NaN and {int(np.isinf(z).sum())} inf values")
    seed = check_int("seed", seed, 0)
    method = method.lower()
    check_choice("method", method, ("pca", "tsne", "umap"))
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
# MultiBench style (Liang et al., NeurIPS 2021 datasets track): a
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

    from ._checks import check_choice, check_int, check_number

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module (an nbkit model), got {type(model).__name__}")
    if not isinstance(ds, MultimodalDataset):
        raise TypeError(f"ds must be a MultimodalDataset, got {type(ds).__name__}")
    if kind not in ("missing", "noise"):
        raise ValueError(f"kind must be 'missing' or 'noise', got {kind!r}")
    if metric not in ("auc", "acc"):
        raise ValueError(f"metric must be 'auc' or 'acc', got {metric!r}")
    check_int("batch_size", batch_size, 1)
    check_int("seed", seed)
    check_choice("keep_one", keep_one, (True, False))
    if isinstance(levels, (str, bytes)):
        raise TypeError(f"levels must be a list of numbers, got {levels!r}")
    lv = [check_number(f"levels[{i}]", v) for i, v in enumerate(ROBUSTNESS_LEVELS if levels is None else levels)]
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
def _similarity(a, b, similarity: str) -> Tensor:
    """The [N, N] query-by-item similarity of `retrieval_metrics` (float64)."""
    from ._checks import check_finite

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
    return S


def _partner_ranks(M: Tensor, relevant: Tensor | None) -> Tensor:
    """Rank (1 = best) of each query's true partner (the diagonal of ``M``), or, given
    ``relevant`` [N, N], of its best-ranked relevant item; a tie counts against the query."""
    if relevant is None:
        true = M.diagonal()[:, None]
        return (M >= true).sum(1).double()           # 1 + number of others at least as similar
    best = M.masked_fill(~relevant, float("-inf")).max(1, keepdim=True).values
    return 1 + ((M >= best) & ~relevant).sum(1).double()


def retrieval_metrics(a, b, ks=(1, 5, 10), similarity: str = "cosine", names: tuple[str, str] = ("a", "b"),
                      *, labels=None) -> dict[str, float]:
    """Cross-modal retrieval between paired rows: row i of ``a`` [N, d] and row i of ``b``
    [N, d'] are the same item (compare d == d' unless ``similarity="precomputed"``, where
    ``a`` is the [N, N] similarity matrix, rows = queries of ``a``, columns = items of ``b``).

    For each direction (a->b: each row of ``a`` queries all of ``b``, and b->a) the rank of
    the true partner (1 = best; ties count against the query: every other item scoring at
    least as high ranks before it): R@k in percent, median rank and mean rank; plus
    ``rsum`` = the sum of R@k over both directions (VSE convention). Keys:
    ``"{a}->{b} R@1"``, ..., ``"{a}->{b} medr"``, ``"{a}->{b} meanr"``, the same for
    ``"{b}->{a}"``, and ``"rsum"``.

    medr = floor(median of the ranks), the median averaging the two middle ranks of an even
    count, and meanr = mean rank: VSE++'s ``floor(median(r0)) + 1`` and ``mean(r0) + 1`` of its
    0-based ranks r0 (github.com/fartashf/vsepp, evaluation.py). VSE++ breaks ties by sort
    order; here a tie counts against the query (a constant similarity gives rank N, not 1).

    ``labels`` (keyword, [N], optional; added for CDDS, notebook 07): item j is relevant to
    query i when ``labels[i] == labels[j]`` (class-level retrieval, e.g. any spoken "three"
    for a handwritten 3), and a query's rank is that of its best-ranked relevant item (VSE++
    scores its five captions per image the same way); ties between relevant and irrelevant
    items again count against the query."""
    from ._checks import check_choice, check_int

    check_choice("similarity", similarity, ("cosine", "dot", "precomputed"))
    if isinstance(names, (str, bytes)) or len(tuple(names)) != 2 or not all(isinstance(n, str) for n in names):
        raise ValueError(f"names must be a pair of modality names (str, str), got {names!r}")
    S = _similarity(a, b, similarity)
    if isinstance(ks, (str, bytes)) or not hasattr(ks, "__iter__"):
        raise TypeError(f"ks must be a list of cut-offs k >= 1 (e.g. (1, 5, 10)), got {ks!r}")
    ks = [check_int("ks[i]", k, 1) for k in ks]
    if not ks:
        raise ValueError("ks must hold at least one k, got []")
    relevant = None
    if labels is not None:
        lab = torch.as_tensor(_np(labels))
        if lab.ndim != 1 or lab.shape[0] != S.shape[0] or lab.is_floating_point():
            raise ValueError(f"labels must be [N] integer class labels with N = {S.shape[0]} (one per pair), "
                             f"got {lab.dtype} {tuple(lab.shape)}")
        relevant = lab[:, None] == lab[None, :]
    out: dict[str, float] = {}
    rsum = 0.0
    for name, M in ((f"{names[0]}->{names[1]}", S), (f"{names[1]}->{names[0]}", S.T)):
        ranks = _partner_ranks(M, relevant)
        for k in ks:
            r = float((ranks <= k).double().mean() * 100)
            out[f"{name} R@{k}"] = r
            rsum += r
        out[f"{name} medr"] = float(torch.floor(ranks.quantile(0.5)))
        out[f"{name} meanr"] = float(ranks.mean())
    out["rsum"] = rsum
    return out


# =====================================================================================
# SRCID (issue 9): protocols for discrete (codebook) representations. All choices in this
# block are ours unless marked; docs/methods/srcid.md.


@torch.no_grad()
def discrete_representations(model, ds: MultimodalDataset, batch_size: int = 512) -> dict[str, Any]:
    """Run a frozen model (eval mode) over ``ds``: per modality the quantised representation
    ``rep`` [N, S, D] (``Output.shared``), its ``codes`` [N, S, n_codebooks] and the per-sample
    reconstruction error ``recon_error`` [N] (``Output.extras["recon_error"]`` where the model
    reports it), plus ``y``."""
    if not isinstance(ds, MultimodalDataset) or len(ds) == 0:
        raise ValueError("ds must be a non-empty MultimodalDataset")
    dev = next(model.parameters()).device
    acc: dict[str, dict[str, list]] = {"rep": {}, "codes": {}, "recon_error": {}}
    with eval_mode(model):
        for batch in ds.batches(batch_size):
            out = model(batch.to(dev))
            if not out.shared or not out.codes:
                raise ValueError(f"{type(model).__name__} returns no quantised representation (Output.shared and "
                                 f"Output.codes are empty); these protocols need a codebook model such as SRCID")
            for m in out.shared:
                acc["rep"].setdefault(m, []).append(out.shared[m].float().cpu())
                acc["codes"].setdefault(m, []).append(out.codes[m].cpu())
                err = out.extras.get("recon_error", {}).get(m)
                if err is not None:
                    acc["recon_error"].setdefault(m, []).append(err.float().cpu())
    res = {k: {m: torch.cat(v) for m, v in d.items()} for k, d in acc.items()}
    res["y"] = ds.y
    return res


def pool_time(rep, how: str = "mean") -> np.ndarray:
    """[N, S, D] -> [N, D] by the mean (or max) over time; [N, D] passes through."""
    from ._checks import check_choice

    check_choice("how", how, ("mean", "max"))
    r = _np(rep)
    if r.ndim == 2:
        return r
    if r.ndim != 3:
        raise ValueError(f"rep must be [N, S, D] or [N, D], got shape {r.shape}")
    return r.mean(1) if how == "mean" else r.max(1)


def cross_modal_generalization(train_reps: dict, y_train, test_reps: dict, y_test, pool: str = "mean",
                               seed: int = 0, C: float = 1.0):
    """Cross-modal generalization (DCID/SRCID downstream protocol): with the encoder frozen,
    fit a classifier on modality A's representations of ``train_reps`` and test it on
    modality B's of ``test_reps``, for every ordered pair (A, B); A == B is the unimodal
    accuracy. The classifier (ours): time ``pool``-ing, standardisation fitted on A, then
    multinomial logistic regression (C=``C``). Returns a tidy frame: source, target, acc."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if not isinstance(train_reps, dict) or not isinstance(test_reps, dict) or not train_reps:
        raise TypeError("train_reps and test_reps must be non-empty dicts {modality: [N, S, D] representations}")
    if set(train_reps) != set(test_reps):
        raise ValueError(f"train_reps and test_reps must name the same modalities, got {sorted(train_reps)} "
                         f"and {sorted(test_reps)}")
    ytr, yte = _np(y_train).ravel(), _np(y_test).ravel()
    Xtr = {m: pool_time(v, pool) for m, v in train_reps.items()}
    Xte = {m: pool_time(v, pool) for m, v in test_reps.items()}
    dims = {m: v.shape[1] for m, v in {**Xtr}.items()} | {f"test {m}": v.shape[1] for m, v in Xte.items()}
    if len(set(dims.values())) != 1:
        raise ValueError(f"every modality's representation must have the same width (one shared space), got {dims}")
    for m in Xtr:
        if len(Xtr[m]) != len(ytr) or len(Xte[m]) != len(yte):
            raise ValueError(f"train_reps[{m!r}] / test_reps[{m!r}] must have one row per label "
                             f"({len(ytr)} / {len(yte)}), got {len(Xtr[m])} / {len(Xte[m])}")
    rows = []
    for a in Xtr:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=300, random_state=seed))
        clf.fit(Xtr[a], ytr)
        for b in Xte:
            rows.append({"source": a, "target": b, "acc": float((clf.predict(Xte[b]) == yte).mean())})
    return pd.DataFrame(rows)


def zero_shot_retrieval(reps: dict, a: str, b: str, pool: str = "mean", ks=(1, 5, 10)) -> dict[str, float]:
    """Zero-shot retrieval between paired items of modalities ``a`` and ``b``: cosine
    similarity of their time-``pool``-ed representations, `retrieval_metrics` (R@k both
    directions, median and mean rank, rsum)."""
    for m in (a, b):
        if m not in reps:
            raise KeyError(f"no representation for modality {m!r}; have {sorted(reps)}")
    return retrieval_metrics(pool_time(reps[a], pool), pool_time(reps[b], pool), ks=ks, names=(a, b))


def code_agreement(codes_a, codes_b) -> dict[str, float]:
    """How often paired items of two modalities pick the same code. ``codes_*`` [N, S, C]
    (C codebooks) or [N, S]: ``same_code`` = fraction of (sample, step) positions where both
    chose the same code, per codebook column c (``same_code/c``) and, for the first codebook,
    ``same_mode`` = fraction of samples whose most frequent code over time is the same (the
    reference code's "equal_num")."""
    A, B = torch.as_tensor(codes_a), torch.as_tensor(codes_b)
    if A.shape != B.shape:
        raise ValueError(f"codes_a and codes_b must have the same shape (paired items), got {tuple(A.shape)} and "
                         f"{tuple(B.shape)}")
    if A.ndim == 2:
        A, B = A[..., None], B[..., None]
    if A.ndim != 3 or A.is_floating_point():
        raise ValueError(f"codes must be integer codes [N, S] or [N, S, C], got {A.dtype} {tuple(A.shape)}")
    out = {f"same_code/{c}": float((A[..., c] == B[..., c]).double().mean()) for c in range(A.shape[-1])}
    out["same_mode"] = float((torch.mode(A[..., 0], 1).values == torch.mode(B[..., 0], 1).values).double().mean())
    return out


def code_cooccurrence(codes_a, codes_b, n_codes: int, top: int | None = 20) -> tuple[np.ndarray, list[int], list[int]]:
    """Counts [K, K] of (code chosen by modality a, code chosen by b) over paired positions of
    ONE codebook (``codes_*``: [N, S] or [N]); with ``top`` only the most used codes of each
    (rows: a's, columns: b's). Returns (matrix, row codes, column codes). A diagonal matrix
    means the modalities share their codes."""
    from ._checks import check_int

    K = check_int("n_codes", n_codes, 1)
    A = torch.as_tensor(codes_a).reshape(-1).long()
    B = torch.as_tensor(codes_b).reshape(-1).long()
    if A.shape != B.shape:
        raise ValueError(f"codes_a and codes_b must pair up one to one, got {A.numel()} and {B.numel()} codes")
    if A.numel() == 0 or int(torch.cat([A, B]).min()) < 0 or int(torch.cat([A, B]).max()) >= K:
        raise ValueError(f"codes must be non-empty and lie in [0, {K})")
    M = torch.zeros(K, K, dtype=torch.long).index_put_((A, B), torch.ones_like(A), accumulate=True).numpy()
    rows, cols = list(range(K)), list(range(K))
    if top is not None and top < K:
        used = np.argsort(-(M.sum(1) + M.sum(0)), kind="stable")[:check_int("top", top, 1)]
        used = sorted(int(i) for i in used)
        M, rows, cols = M[np.ix_(used, used)], used, used
    return M, rows, cols


# =======================================================================================
# RSC-MD (notebook 06): detection metrics. Appended block. mAP comes from pycocotools'
# COCOeval (the COCO reference implementation), never from a hand-written AP.
import copy  # noqa: E402


def _det_list(items, name: str, with_scores: bool) -> list[dict[str, np.ndarray]]:
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"{name} must be a list with one dict per image, got {type(items).__name__}")
    out = []
    for i, d in enumerate(items):
        if not isinstance(d, dict) or "boxes" not in d or "labels" not in d or (with_scores and "scores" not in d):
            keys = "boxes, scores, labels" if with_scores else "boxes, labels"
            raise ValueError(f"{name}[{i}] must be a dict with {keys}, got {d if not isinstance(d, dict) else sorted(d)}")
        b = _np(d["boxes"]).astype(np.float64).reshape(-1, 4)
        l = _np(d["labels"]).astype(np.int64).reshape(-1)
        s = _np(d["scores"]).astype(np.float64).reshape(-1) if with_scores else np.ones(len(b))
        if not (len(b) == len(l) == len(s)):
            raise ValueError(f"{name}[{i}] has {len(b)} boxes, {len(l)} labels and {len(s)} scores; they must match")
        if not np.isfinite(b).all() or not np.isfinite(s).all():
            raise ValueError(f"{name}[{i}] must hold finite boxes and scores")
        if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
            j = int(np.nonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))[0][0])
            raise ValueError(f"{name}[{i}] box {j} must have x1 <= x2 and y1 <= y2 (x1, y1, x2, y2), got {b[j].tolist()}")
        out.append({"boxes": b, "labels": l, "scores": s})
    return out


def coco_map(preds, targets, n_classes: int | None = None, subsets: dict | None = None) -> dict[str, float]:
    """mAP@[.5:.95] (``map``) and mAP@0.5 (``map50``) by pycocotools' ``COCOeval`` (bbox,
    area "all", maxDets 100): the COCO reference implementation, not a hand-written AP.

    preds:   one dict per image: ``boxes`` [k, 4] (x1, y1, x2, y2 pixels), ``scores`` [k],
             ``labels`` [k] (class index).
    targets: one dict per image: ``boxes``, ``labels``.
    subsets: optional {name: image indices}: also ``map/<name>``, ``map50/<name>`` over those
             images (one COCOeval.evaluate, one accumulate per subset).
    Classes without a ground-truth object are left out of the mean (COCO's rule); NaN when
    no image (of a subset) has an object."""
    P, T = _det_list(preds, "preds", True), _det_list(targets, "targets", False)
    if len(P) != len(T):
        raise ValueError(f"preds and targets must have one entry per image, got {len(P)} and {len(T)}")
    groups = {"": list(range(len(T)))}
    for name, idx in (subsets or {}).items():
        idx = [int(i) for i in np.asarray(_np(idx)).reshape(-1)]
        if any(i < 0 or i >= len(T) for i in idx):
            raise ValueError(f"subsets[{name!r}] must hold image indices in [0, {len(T) - 1}]")
        groups[f"/{name}"] = idx
    labels = [t["labels"] for t in T] + [p["labels"] for p in P]
    C = int(n_classes) if n_classes is not None else int(max((l.max() for l in labels if len(l)), default=-1)) + 1
    if any(((l < 0) | (l >= C)).any() for l in labels if len(l)):
        raise ValueError(f"labels must be class indices in [0, {C - 1}]")
    xywh = (lambda b: np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1))
    anns, aid = [], 1
    for i, t in enumerate(T):
        for b, l in zip(xywh(t["boxes"]), t["labels"]):
            anns.append({"id": aid, "image_id": i + 1, "category_id": int(l) + 1, "bbox": b.tolist(),
                         "area": float(b[2] * b[3]), "iscrowd": 0})
            aid += 1
    rows = [np.column_stack([np.full(len(p["boxes"]), i + 1), xywh(p["boxes"]), p["scores"], p["labels"] + 1])
            for i, p in enumerate(P) if len(p["boxes"])]
    has_gt = {int(a["image_id"]) - 1 for a in anns}
    res: dict[str, float] = {}
    if not anns or not rows:
        for g, idx in groups.items():
            v = 0.0 if any(i in has_gt for i in idx) else float("nan")
            res[f"map{g}"], res[f"map50{g}"] = v, v
        return res
    return _run_cocoeval(len(T), anns, rows, C, groups)


def _run_cocoeval(n_images: int, anns: list, rows: list, C: int, groups: dict) -> dict[str, float]:
    """COCOeval (bbox) on ground-truth ``anns`` and detection ``rows`` of ``n_images`` images:
    ``map``/``map50`` overall and per group of image indices (see `coco_map`)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    res: dict[str, float] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": [{"id": i + 1} for i in range(n_images)], "annotations": anns,
                      "categories": [{"id": c + 1} for c in range(C)]}
        gt.createIndex()
        dt = gt.loadRes(np.concatenate(rows, 0))
        ev = COCOeval(gt, dt, "bbox")
        # only the numbers we report: area "all", 100 detections (COCO's defaults for them);
        # skipping the small/medium/large ranges makes evaluate() 4x faster
        ev.params.areaRng, ev.params.areaRngLbl, ev.params.maxDets = [[0.0, 1e10]], ["all"], [100]
        ev.evaluate()
        t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
        mean = (lambda a: float(a[a > -1].mean()) if (a > -1).any() else float("nan"))
        # a subset: accumulate over its images' per-image results. COCOeval.accumulate(p)
        # indexes images by their position in p.imgIds, so the per-image list and the
        # evaluated ids are narrowed to the subset first (evalImgs is ordered category,
        # area range, image)
        full, pe = ev.evalImgs, ev._paramsEval
        I0, A0, K0 = len(pe.imgIds), len(pe.areaRng), len(pe.catIds)
        pos = {img: n for n, img in enumerate(pe.imgIds)}
        for g, idx in groups.items():
            ids = sorted({i + 1 for i in idx})
            ev.evalImgs = [full[k * A0 * I0 + a * I0 + pos[i]] for k in range(K0) for a in range(A0) for i in ids]
            ev._paramsEval = copy.deepcopy(pe)
            ev._paramsEval.imgIds = ids
            p = copy.deepcopy(ev.params)
            p.imgIds = ids
            ev.accumulate(p)
            # what COCOeval.summarize() reports as stats[0] and stats[1]: the mean of the
            # interpolated precision over IoU thresholds (all, or 0.5), recall points, classes
            prec = ev.eval["precision"][:, :, :, 0, 0]                   # [T, R, K]
            res[f"map{g}"], res[f"map50{g}"] = mean(prec), mean(prec[t50])
    return res


@torch.no_grad()
def detections(model, ds: MultimodalDataset, head="fused", batch_size: int = 256, device=None):
    """Run a detector (``model.predict(batch, head)``, e.g. `nbkit.models.RSCMDDetector`)
    over ``ds``: (predictions, targets), one dict per image each. With a list of heads,
    predictions are {head: list} from one forward pass per batch."""
    from .data.scenes import scene_targets

    if not hasattr(model, "predict"):
        raise TypeError(f"{type(model).__name__} is not a detector (no predict(batch, head))")
    if not isinstance(ds, MultimodalDataset) or len(ds) == 0 or "boxes" not in ds.factors:
        raise ValueError("ds must be a non-empty detection data set (make_scenes / scenes_from_arrays)")
    many = isinstance(head, (list, tuple))
    device = device or next(model.parameters()).device
    preds: dict = {h: [] for h in (head if many else [head])}
    targets = []
    for batch in ds.batches(batch_size):
        got = model.predict(batch.to(device), head=list(preds))
        for h in preds:
            preds[h] += [{k: v.cpu() for k, v in p.items()} for p in got[h]]
        targets += [dict(zip(("boxes", "labels"), scene_targets(batch.factors, i))) for i in range(len(batch))]
    return (preds if many else preds[head]), targets


def detection_map(model, ds: MultimodalDataset, head: str = "fused", batch_size: int = 256,
                  subsets: dict | None = None) -> dict[str, float]:
    """`coco_map` of a detector's ``head`` ("fused" or a modality's auxiliary head) on ``ds``."""
    preds, targets = detections(model, ds, head, batch_size)
    return coco_map(preds, targets, n_classes=getattr(model, "n_classes", None), subsets=subsets)


def found_objects(preds, targets, iou: float = 0.5, score: float = 0.3) -> list[np.ndarray]:
    """Per image, a bool per ground-truth object: some prediction of its class with score >=
    ``score`` overlaps it with IoU >= ``iou`` (pycocotools' box IoU). The score threshold 0.3
    is the CenterNet reference code's visualisation threshold (``vis_thresh``)."""
    from pycocotools import mask as mask_utils

    from ._checks import check_number

    iou = check_number("iou", iou, 0.0, 1.0, lo_open=True)
    score = check_number("score", score, 0.0, 1.0)
    P, T = _det_list(preds, "preds", True), _det_list(targets, "targets", False)
    if len(P) != len(T):
        raise ValueError(f"preds and targets must have one entry per image, got {len(P)} and {len(T)}")
    xywh = (lambda b: np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).astype(np.float64))
    out = []
    for p, t in zip(P, T):
        hit = np.zeros(len(t["boxes"]), dtype=bool)
        keep = p["scores"] >= score
        if keep.any() and len(t["boxes"]):
            ious = np.asarray(mask_utils.iou(xywh(p["boxes"][keep]), xywh(t["boxes"]), [0] * len(t["boxes"])))
            same = p["labels"][keep][:, None] == t["labels"][None, :]
            hit = ((ious >= iou) & same).any(0)
        out.append(hit)
    return out


def fusion_degradation(unimodal_preds, fused_preds, targets, iou: float = 0.5, score: float = 0.3) -> dict[str, int]:
    """Fusion degradation counts: ground-truth objects a unimodal detector finds and the fused
    one misses (``degraded``), and the reverse (``rescued``), with `found_objects`' rule."""
    u = np.concatenate(found_objects(unimodal_preds, targets, iou, score) or [np.zeros(0, bool)])
    f = np.concatenate(found_objects(fused_preds, targets, iou, score) or [np.zeros(0, bool)])
    return {"objects": int(len(u)), "found_unimodal": int(u.sum()), "found_fused": int(f.sum()),
            "degraded": int((u & ~f).sum()), "rescued": int((f & ~u).sum())}

# ===================================================================================
# Notebooks 00-03, teaching (issue 13): how well a 2-D map groups a label. Appended block.


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
