"""Representation losses shared by the models: contrastive alignment, decorrelation,
orthogonality, regression alignment.

Every function takes plain tensors [B, d] (one row per sample) and returns a scalar.
Batch statistics need at least two samples: a smaller batch is answered by a ValueError
that names the argument. Equations follow specs/dsrsd.md; normalisations that are our
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
    (MISA-style "difference" loss, as in specs/dsrsd.md):

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


# ====================================================================== CDDS (notebook 07)
# Constrained decoupling and distribution sampling (AAAI 2026, arXiv 2603.05566); no official
# code exists, see docs/methods/cdds.md for what is the paper's and what is ours.
__all__ += ["gaussian_kl", "gaussian_kl_matrix", "modality_consistency"]


def _check_gaussian(fn: str, name: str, mu: Tensor, sigma: Tensor) -> None:
    from ._checks import check_finite

    for n, t in ((f"mu_{name}", mu), (f"sigma_{name}", sigma)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{fn}: {n} must be a torch.Tensor, got {type(t).__name__}")
        check_finite(f"{fn}: {n}", t)
    if mu.shape != sigma.shape:
        raise ValueError(f"{fn}: mu_{name} and sigma_{name} must have the same shape, got "
                         f"{tuple(mu.shape)} and {tuple(sigma.shape)}")
    if (sigma <= 0).any():
        raise ValueError(f"{fn}: sigma_{name} must be > 0 everywhere (a standard deviation), got a minimum "
                         f"of {float(sigma.min()):g}")


def gaussian_kl(mu_p: Tensor, sigma_p: Tensor, mu_q: Tensor, sigma_q: Tensor) -> Tensor:
    r"""Elementwise closed-form KL(N(mu_p, sigma_p^2) || N(mu_q, sigma_q^2)) (nats):

        KL = log(sigma_q / sigma_p) + (sigma_p^2 + (mu_p - mu_q)^2) / (2 sigma_q^2) - 1/2

    Broadcasts like ``mu_p - mu_q``. 0 iff the two Gaussians are equal; not symmetric.
    """
    for n, t in (("mu_p", mu_p), ("sigma_p", sigma_p), ("mu_q", mu_q), ("sigma_q", sigma_q)):
        if not isinstance(t, Tensor):
            raise TypeError(f"gaussian_kl: {n} must be a torch.Tensor, got {type(t).__name__}")
    if (sigma_p <= 0).any() or (sigma_q <= 0).any():
        raise ValueError("gaussian_kl: sigma_p and sigma_q must be > 0 (standard deviations)")
    vp, vq = sigma_p.pow(2), sigma_q.pow(2)
    return torch.log(sigma_q) - torch.log(sigma_p) + (vp + (mu_p - mu_q).pow(2)) / (2 * vq) - 0.5


def gaussian_kl_matrix(mu_a: Tensor, sigma_a: Tensor, mu_b: Tensor, sigma_b: Tensor,
                       reduction: str = "mean") -> Tensor:
    r"""The CDDS KL matrix between the per-dimension Gaussians of two modalities.

    Rows n of ``mu_a, sigma_a`` [B, d_a] and ``mu_b, sigma_b`` [B, d_b] are one matched pair:
    sample n's dimension i of modality a is N(mu_a[n, i], sigma_a[n, i]^2) (in CDDS: mean and
    spread over the z noisy passes), likewise for b. Per pair,

        K^(n)_ij = KL( N(mu_a[n,i], sigma_a[n,i]^2) || N(mu_b[n,j], sigma_b[n,j]^2) )   [d_a, d_b]

    reduction="none" returns every K^(n) [B, d_a, d_b] (memory B d_a d_b); "mean" returns the
    batch mean K = 1/B sum_n K^(n) [d_a, d_b] WITHOUT building the [B, d_a, d_b] tensor: with
    r = 1/(2 sigma_b^2) the sum splits into matrix products (ours; equal to the explicit mean,
    a test compares):

        B K_ij = sum_n [log sigma_b[n,j] - log sigma_a[n,i] - 1/2]
                 + sum_n (sigma_a[n,i]^2 + mu_a[n,i]^2) r[n,j] - 2 sum_n mu_a[n,i] mu_b[n,j] r[n,j]
                 + sum_n mu_b[n,j]^2 r[n,j]

    i.e. O(B d_a d_b) time but O(d_a d_b + B (d_a + d_b)) memory, computed in float64 (the
    expanded square cancels large terms when sigma is small). See docs/methods/cdds.md.
    """
    from ._checks import check_choice

    check_choice("reduction", reduction, ("mean", "none"))
    _check_gaussian("gaussian_kl_matrix", "a", mu_a, sigma_a)
    _check_gaussian("gaussian_kl_matrix", "b", mu_b, sigma_b)
    for n, t in (("mu_a", mu_a), ("mu_b", mu_b)):
        if t.ndim != 2:
            raise ValueError(f"gaussian_kl_matrix: {n} must have shape [B, d] (one row per sample), got {tuple(t.shape)}")
    if mu_a.shape[0] != mu_b.shape[0]:
        raise ValueError(f"gaussian_kl_matrix: mu_a and mu_b must hold the same (matched) samples, got "
                         f"{mu_a.shape[0]} and {mu_b.shape[0]} rows")
    if reduction == "none":
        return gaussian_kl(mu_a[:, :, None], sigma_a[:, :, None], mu_b[:, None, :], sigma_b[:, None, :])
    B, out_dtype = mu_a.shape[0], torch.promote_types(mu_a.dtype, mu_b.dtype)
    # float64 inside (ours): the expanded square subtracts terms of size mu^2 / sigma^2, which
    # loses the small KL of a well-matched pair to float32 rounding once sigma is small
    mu_a, sigma_a, mu_b, sigma_b = (t.double() for t in (mu_a, sigma_a, mu_b, sigma_b))
    r = 0.5 / sigma_b.pow(2)                                               # [B, d_b]
    const = (torch.log(sigma_b).sum(0)[None, :] - torch.log(sigma_a).sum(0)[:, None]) - 0.5 * B
    quad = (sigma_a.pow(2) + mu_a.pow(2)).T @ r - 2 * mu_a.T @ (mu_b * r) + (mu_b.pow(2) * r).sum(0)[None, :]
    return ((const + quad) / B).to(out_dtype)


def modality_consistency(mu: Tensor, sigma: Tensor) -> Tensor:
    r"""CDDS modality consistency L_m for one modality's modality components: every sample's
    per-dimension Gaussian N(mu[n, j], sigma[n, j]^2) should look like the modality's own
    batch distribution in that dimension, the moment-matched Gaussian of the batch mixture

        mu_bar_j = 1/B sum_n mu[n,j],   s_bar_j^2 = 1/B sum_n (sigma[n,j]^2 + (mu[n,j] - mu_bar_j)^2)
        L_m = 1/(B d) sum_{n,j} KL( N(mu[n,j], sigma[n,j]^2) || N(mu_bar_j, s_bar_j^2) )

    (the paper: "KL divergence keeps the modality components of all patches/words of one
    modality alike"; the moment-matched batch Gaussian as the common reference is ours). 0 when
    every sample has the same modality component; it grows as the components carry
    sample-specific content relative to their spread.
    """
    _check_gaussian("modality_consistency", "m", mu, sigma)
    if mu.ndim != 2:
        raise ValueError(f"modality_consistency: mu_m must have shape [B, d], got {tuple(mu.shape)}")
    check_batch_size("modality_consistency: mu_m", mu.shape[0])
    mu_bar = mu.mean(0, keepdim=True)
    s_bar = torch.sqrt((sigma.pow(2) + (mu - mu_bar).pow(2)).mean(0, keepdim=True))
    return gaussian_kl(mu, sigma, mu_bar.expand_as(mu), s_bar.expand_as(mu)).mean()
