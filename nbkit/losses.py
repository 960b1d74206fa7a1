"""Representation losses shared by the models: contrastive alignment, decorrelation,
orthogonality, regression alignment.

Every function takes plain tensors [B, d] (one row per sample) and returns a scalar.
Batch statistics need at least two samples: a smaller batch is answered by a ValueError
that names the argument. Equations follow docs/methods/dsrsd.md; normalisations that are our
choices (so that one weight means the same thing for any d) are marked "(ours)".
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_batch_size

__all__ = ["info_nce", "decorrelation", "covariance", "orthogonality", "regression_alignment"]


def _check_2d(fn: str, name: str, t: Tensor, minimum: int = 2) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor [B, d], got {type(t).__name__}")
    if t.ndim != 2:
        raise ValueError(f"{fn}: {name} must have shape [B, d] (one row per sample), got {tuple(t.shape)}")
    check_batch_size(f"{fn}: {name}", t.shape[0], minimum)


def _check_pair(fn: str, a: Tensor, b: Tensor, same_dim: bool = True, minimum: int = 2,
                names: tuple[str, str] = ("a", "b")) -> None:
    _check_2d(fn, names[0], a, minimum)
    _check_2d(fn, names[1], b, minimum)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{fn}: {names[0]} and {names[1]} must hold the same samples (paired rows), "
                         f"got {a.shape[0]} and {b.shape[0]} rows")
    if same_dim and a.shape[1] != b.shape[1]:
        raise ValueError(f"{fn}: {names[0]} and {names[1]} must have the same width d, got "
                         f"{a.shape[1]} and {b.shape[1]}")


def info_nce(a: Tensor, b: Tensor, tau: float = 0.1, symmetric: bool = True) -> Tensor:
    r"""Symmetric InfoNCE between paired rows of ``a`` and ``b`` (row i of a pairs with row i of b).

    With L2-normalised rows \hat a_i, \hat b_i and similarity S_ij = <\hat a_i, \hat b_j> / tau:

        L_{a->b} = -1/B sum_i log( exp(S_ii) / sum_j exp(S_ij) )
        L_con    = (L_{a->b} + L_{b->a}) / 2          (``symmetric``; else L_{a->b} only)

    Unrelated pairs give about log(B); perfectly aligned distinct pairs give about 0 at a
    low temperature. tau: 0.07..0.1 in the DSRSD spec (the paper does not state it).
    """
    _check_pair("info_nce", a, b)
    if not tau > 0:
        raise ValueError(f"info_nce: tau must be > 0, got {tau}")
    a_n = F.normalize(a.float(), dim=1)
    b_n = F.normalize(b.float(), dim=1)
    logits = a_n @ b_n.T / tau                                     # S [B, B]
    target = torch.arange(a.shape[0], device=a.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
    return loss


def covariance(z: Tensor, eps: float = 1e-5) -> Tensor:
    r"""Correlation-style covariance of a standardised batch (the C of L_dec):

        S = (Z - mean_batch(Z)) / sqrt(var_batch(Z) + eps)      (unit variance per dim)
        C = S^T S / (N - 1)                                     [d, d], diagonal ~ 1

    ``eps`` inside the square root (ours) keeps a constant dimension finite and its gradient
    free of NaN (a plain ``z.std()`` has an infinite derivative at zero variance).
    """
    _check_2d("covariance", "z", z)
    z = z.float()
    n = z.shape[0]
    zc = z - z.mean(0, keepdim=True)
    var = zc.pow(2).sum(0, keepdim=True) / (n - 1)                 # Bessel-corrected
    s = zc / torch.sqrt(var + eps)
    return s.T @ s / (n - 1)


def decorrelation(z: Tensor, eps: float = 1e-5) -> Tensor:
    r"""Semantic decorrelation loss (DSRSD-Net's L_dec) on a batch of shared vectors z [N, d]:

        C     = covariance(z)                   (standardised batch, see `covariance`)
        L_dec = sum_{i != j} C_ij^2 / (d (d - 1))

    The paper writes sum_{i != j} C_ij^2; dividing by d(d-1) (ours) makes L_dec the mean
    squared off-diagonal correlation, in [0, 1] and comparable across d, so lambda_dec in
    [1e-3, 1e-1] means the same for any width. 0 for white data; for two dimensions with
    correlation rho it equals rho^2.
    """
    _check_2d("decorrelation", "z", z)
    d = z.shape[1]
    if d < 2:
        raise ValueError(f"decorrelation: z needs at least 2 dimensions to have off-diagonal "
                         f"covariance, got shape {tuple(z.shape)}")
    c = covariance(z, eps)
    off = c - torch.diag_embed(torch.diagonal(c))
    return off.pow(2).sum() / (d * (d - 1))


def orthogonality(s: Tensor, p: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Orthogonality between a shared batch s [N, d_s] and a private batch p [N, d_p]
    (MISA-style "difference" loss, see docs/methods/dsrsd.md):

        \hat S, \hat P = columns centred over the batch, then L2-normalised (unit columns)
        L_orth = || \hat S^T \hat P ||_F^2 / (d_s d_p)

    i.e. the mean squared correlation between every shared and every private dimension:
    0 when the two column spaces are orthogonal, 1 when they coincide. MISA normalises
    rows; the spec (and we) normalise columns; the division by d_s d_p (= d^2) is ours.
    """
    _check_pair("orthogonality", s, p, same_dim=False, names=("s", "p"))
    s = s.float() - s.float().mean(0, keepdim=True)
    p = p.float() - p.float().mean(0, keepdim=True)
    s = s / (s.norm(dim=0, keepdim=True) + eps)
    p = p / (p.norm(dim=0, keepdim=True) + eps)
    return (s.T @ p).pow(2).sum() / (s.shape[1] * p.shape[1])


def regression_alignment(pred: Tensor, target: Tensor, kind: str = "mse") -> Tensor:
    r"""Regression-style alignment (DSRSD-Net's L_align) between paired rows:

        kind="mse":  L_align = 1/(B d) sum_i || pred_i - target_i ||^2
        kind="cos":  L_align = 1/B sum_i (1 - cos(pred_i, target_i))

    The paper's form is || g(s_A) - s_B ||^2; the model passes pred = g(s_A), target = s_B
    (and the symmetric pair). Averaging over d (ours) keeps the weight independent of d.
    """
    # one pair is enough here (no batch statistic)
    _check_pair("regression_alignment", pred, target, minimum=1, names=("pred", "target"))
    if kind == "mse":
        return F.mse_loss(pred.float(), target.float())
    if kind == "cos":
        return (1 - F.cosine_similarity(pred.float(), target.float(), dim=1)).mean()
    raise ValueError(f"regression_alignment: kind must be 'mse' or 'cos', got {kind!r}")
