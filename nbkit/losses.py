"""Representation losses shared by the models: contrastive alignment, decorrelation,
orthogonality, regression alignment.

Every function takes plain tensors [B, d] (one row per sample) and returns a scalar.
Batch statistics need at least two samples: a smaller batch is answered by a ValueError
that names the argument. Equations follow docs/methods/dsrsd.md; normalisations that are our
choices (so that one weight means the same thing for any d) are marked "(ours)".

Inputs are checked where they enter: a non-tensor, a wrong shape, a batch too small for
its statistic, or a NaN/inf value is an error that names the function and the argument;
so are bad settings (``tau``, ``eps``, ``kind``, ``symmetric``). Integer tensors are used
as float32.

Extreme magnitudes: each function is invariant to the scale of its inputs in exact
arithmetic, but float32 is not (squares overflow above ~1e19, and the small constants
that guard a zero norm or a constant column swamp tiny values). When an input is that far
out of range it is first divided by a detached constant (its largest magnitude), so a
batch at 1e30 or 1e-30 gives the same value as at 1; inputs in the normal range take the
plain path, bit for bit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_batch_size, check_choice, check_finite, check_number

__all__ = ["info_nce", "decorrelation", "covariance", "orthogonality", "regression_alignment"]

_TINY_NORM = 1e-12     # F.normalize's guard: a row norm below it would not be normalised to 1


def _check_2d(fn: str, name: str, t: Tensor, minimum: int = 2) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor [B, d], got {type(t).__name__}")
    if t.ndim != 2:
        raise ValueError(f"{fn}: {name} must have shape [B, d] (one row per sample), got {tuple(t.shape)}")
    if t.is_complex():
        raise TypeError(f"{fn}: {name} must hold real numbers, got {t.dtype}")
    check_batch_size(f"{fn}: {name}", t.shape[0], minimum)


def _checked(fn: str, value: Tensor, **inputs: Tensor) -> Tensor:
    """``value`` after the NaN/inf check of the inputs. Every entry of every input reaches
    the value of these losses, so a NaN/inf input always makes it non-finite: one check of
    the scalar (one sync) replaces a pass over each input, and only a non-finite value
    looks at the inputs, to name the one that holds NaN/inf (`check_finite`). A non-finite
    value from finite inputs (an "mse" that overflows float32) is returned as it is."""
    if not bool(torch.isfinite(value.detach())):
        for name, t in inputs.items():
            check_finite(f"{fn}: {name}", t)
    return value


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


def _unit_rows(t: Tensor) -> Tensor:
    """Rows scaled to unit L2 norm (zero rows stay zero). Rows whose norm overflows float32
    or is below F.normalize's guard are first divided by their (detached) largest entry;
    the result is exact because row normalisation ignores a positive factor."""
    t = t.float()
    n = t.norm(dim=1, keepdim=True)
    lo, hi = (float(v) for v in torch.aminmax(n.detach()))
    if _TINY_NORM <= lo and hi < float("inf"):
        return t / n.clamp_min(_TINY_NORM).expand_as(t)          # = F.normalize(t, dim=1), bit for bit
    scale = t.detach().abs().amax(1, keepdim=True)
    if hi < float("inf") and not bool(((n.detach() < _TINY_NORM) & (scale > 0)).any()):
        return t / n.clamp_min(_TINY_NORM).expand_as(t)          # only exact zero rows are small
    return F.normalize(t / torch.where(scale > 0, scale, torch.ones_like(scale)), dim=1)


def _rescaled(t: Tensor) -> Tensor:
    """``t`` divided by its (detached) largest magnitude: the fallback for inputs whose
    squares overflow or vanish next to a guard constant."""
    m = t.detach().abs().max()
    return t / m if bool(m > 0) else t


def info_nce(a: Tensor, b: Tensor, tau: float = 0.1, symmetric: bool = True) -> Tensor:
    r"""Symmetric InfoNCE between paired rows of ``a`` and ``b`` (row i of a pairs with row i of b).

    With L2-normalised rows \hat a_i, \hat b_i and similarity S_ij = <\hat a_i, \hat b_j> / tau:

        L_{a->b} = -1/B sum_i log( exp(S_ii) / sum_j exp(S_ij) )
        L_con    = (L_{a->b} + L_{b->a}) / 2          (``symmetric``; else L_{a->b} only)

    What values to expect: perfectly aligned distinct pairs give about 0 at a low
    temperature. Unrelated pairs give about log(B) only when the similarities spread little
    next to tau: for random directions in d dimensions the cosines have variance ~1/d, and
    the loss is about log(B) + 1/(2 d tau^2) while that excess is small (wide vectors or a
    high temperature). At the default tau = 0.1 with d = 64 unrelated pairs already sit
    near log(B) + 0.8, and for small d far above log(B). tau: 0.07..0.1 in the DSRSD
    method notes (the paper does not state it); it must be finite and > 0 (tau = inf
    would make the loss the constant log B).
    """
    _check_pair("info_nce", a, b)
    tau = check_number("info_nce: tau", tau, 0.0, lo_open=True)
    check_choice("info_nce: symmetric", symmetric, (True, False))
    a_n = _unit_rows(a)
    b_n = _unit_rows(b)
    logits = a_n @ b_n.T / tau                                     # S [B, B]
    target = torch.arange(a.shape[0], device=a.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
    return _checked("info_nce", loss, a=a, b=b)


def covariance(z: Tensor, eps: float = 1e-5) -> Tensor:
    r"""Correlation-style covariance of a standardised batch (the C of L_dec):

        S = (Z - mean_batch(Z)) / sqrt(var_batch(Z) + eps)      (unit variance per dim)
        C = S^T S / (N - 1)                                     [d, d], diagonal ~ 1

    ``eps`` inside the square root (ours, > 0) keeps a constant dimension finite and its
    gradient free of NaN (a plain ``z.std()`` has an infinite derivative at zero variance).
    It is absolute, so a dimension whose variance is not far above eps is shrunk towards
    0; when EVERY dimension's variance is below eps (or a variance overflows float32), the
    batch is first divided by its largest magnitude, so a batch at 1e-30 or 1e30 is not
    reported as uncorrelated.
    """
    _check_2d("covariance", "z", z)
    c = _covariance(z, check_number("covariance: eps", eps, 0.0, lo_open=True))
    _checked("covariance", c.sum(), z=z)
    return c


def _covariance(z: Tensor, eps: float) -> Tensor:
    z = z.float()
    n = z.shape[0]
    zc = z - z.mean(0, keepdim=True)
    var = zc.pow(2).sum(0, keepdim=True) / (n - 1)                 # Bessel-corrected
    vmax = float(var.detach().max())                               # inf if any variance overflowed
    if not eps <= vmax < float("inf") and bool(zc.detach().abs().max() > 0):
        z = _rescaled(z)
        zc = z - z.mean(0, keepdim=True)
        var = zc.pow(2).sum(0, keepdim=True) / (n - 1)
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
    c = _covariance(z, check_number("covariance: eps", eps, 0.0, lo_open=True))
    off = c - torch.diag_embed(torch.diagonal(c))
    return _checked("decorrelation", off.pow(2).sum() / (d * (d - 1)), z=z)


def orthogonality(s: Tensor, p: Tensor, eps: float = 1e-8) -> Tensor:
    r"""Orthogonality between a shared batch s [N, d_s] and a private batch p [N, d_p]
    (MISA-style "difference" loss, see docs/methods/dsrsd.md):

        \hat S, \hat P = columns centred over the batch, then L2-normalised (unit columns)
        L_orth = || \hat S^T \hat P ||_F^2 / (d_s d_p)

    i.e. the mean squared correlation between every shared and every private dimension.
    Reference values: 0 when the two column spaces are orthogonal; 1/d when s and p have
    d uncorrelated columns spanning the same space (e.g. p = s with white s: each shared
    column matches exactly one private column); 1, its maximum, only when every shared
    dimension is perfectly correlated with every private dimension (both streams of rank
    one). MISA normalises rows; we normalise columns; the division by d_s d_p (= d^2) is
    ours. ``eps`` (> 0) guards constant columns; a batch whose columns all have norms
    below 1e4 eps, or overflow float32, is first divided by its largest magnitude.
    """
    _check_pair("orthogonality", s, p, same_dim=False, names=("s", "p"))
    eps = check_number("orthogonality: eps", eps, 0.0, lo_open=True)
    cols = []
    for t in (s, p):
        t = t.float() - t.float().mean(0, keepdim=True)
        nrm = t.norm(dim=0, keepdim=True)
        if not 1e4 * eps <= float(nrm.detach().max()) < float("inf") and bool(t.detach().abs().max() > 0):
            t = _rescaled(t)
            nrm = t.norm(dim=0, keepdim=True)
        cols.append(t / (nrm + eps))
    sh, pr = cols
    return _checked("orthogonality", (sh.T @ pr).pow(2).sum() / (sh.shape[1] * pr.shape[1]), s=s, p=p)


def regression_alignment(pred: Tensor, target: Tensor, kind: str = "mse") -> Tensor:
    r"""Regression-style alignment (DSRSD-Net's L_align) between paired rows:

        kind="mse":  L_align = 1/(B d) sum_i || pred_i - target_i ||^2
        kind="cos":  L_align = 1/B sum_i (1 - cos(pred_i, target_i))

    The paper's form is || g(s_A) - s_B ||^2; the model passes pred = g(s_A), target = s_B
    (and the symmetric pair). Averaging over d (ours) keeps the weight independent of d.
    "mse" is in the inputs' units squared (inf when that overflows float32); "cos" is
    scale-free, also at extreme magnitudes.
    """
    # one pair is enough here (no batch statistic)
    _check_pair("regression_alignment", pred, target, minimum=1, names=("pred", "target"))
    if kind == "mse":
        return _checked("regression_alignment", F.mse_loss(pred.float(), target.float()), pred=pred, target=target)
    if kind == "cos":
        pf, tf = pred.float(), target.float()
        lo, hi = (float(v) for v in torch.aminmax(torch.cat([pf.norm(dim=1), tf.norm(dim=1)]).detach()))
        if 1e-3 <= lo and hi < float("inf"):        # cosine_similarity's eps (1e-8) is then negligible
            value = (1 - F.cosine_similarity(pf, tf, dim=1)).mean()
        else:
            value = (1 - (_unit_rows(pf) * _unit_rows(tf)).sum(1)).mean()
        return _checked("regression_alignment", value, pred=pred, target=target)
    raise ValueError(f"regression_alignment: kind must be 'mse' or 'cos', got {kind!r}")
