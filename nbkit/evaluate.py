"""Metrics and protocols: accuracy/AUC, running a model over a dataset, linear probes,
2-D projections (PCA, t-SNE, UMAP; UMAP imported lazily, it compiles with numba)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data.batch import MultimodalDataset

__all__ = ["accuracy", "auc", "classification_metrics", "collect", "linear_probe", "probe_table",
           "project_2d"]


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
