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

__all__ = ["info_nce", "decorrelation", "covariance", "orthogonality", "regression_alignment",
           "gaussian_loglik", "club_upper_bound", "CLUB", "fit_clubs", "cpc_nce", "CrossCPC", "gaussian_kl",
           "gaussian_kl_matrix", "modality_consistency"]

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


# =====================================================================================
# SRCID (issue 9): CLUB (a variational upper bound of mutual information, with its own
# estimator network and optimiser) and cross-modal CPC. docs/methods/srcid.md gives the
# equations; the public reference is haihuangcode/CMG (model/CLUB.py, model/CPC.py) and
# haihuangcode/TOC_H-DCID (same files), marked "(reference code)"; our choices "(ours)".
import math as _math  # noqa: E402

from torch import nn as _nn  # noqa: E402


def _check_seq(fn: str, name: str, t, minimum: int = 2) -> Tensor:
    """[B, D] (read as T = 1) or [B, T, D] -> [B, T, D]; NaN is an error naming ``name``."""
    from ._checks import check_finite

    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor [B, D] or [B, T, D], got {type(t).__name__}")
    if t.ndim not in (2, 3):
        raise ValueError(f"{fn}: {name} must have shape [B, D] or [B, T, D], got {tuple(t.shape)}")
    check_batch_size(f"{fn}: {name}", t.shape[0], minimum)
    check_finite(f"{fn}: {name}", t)
    return t[:, None, :] if t.ndim == 2 else t


def gaussian_loglik(mu: Tensor, logvar: Tensor, y: Tensor) -> Tensor:
    r"""The CLUB estimator's training objective (reference code, ``loglikeli``): the
    Gaussian log-likelihood of y under N(mu, diag exp(logvar)) without its constant,

        LL = 1/(2 N) sum_{rows} sum_d [ -(mu_d - y_d)^2 / exp(logvar_d) - logvar_d ],

    rows = every (sample, time step). q_theta is fitted by maximising LL."""
    y = _check_seq("gaussian_loglik", "y", y, minimum=1)
    mu = mu.reshape(-1, mu.shape[-1])
    logvar = logvar.reshape(-1, logvar.shape[-1])
    y = y.reshape(-1, y.shape[-1])
    if mu.shape != y.shape or logvar.shape != y.shape:
        raise ValueError(f"gaussian_loglik: mu, logvar and y must have the same shape, got "
                         f"{tuple(mu.shape)}, {tuple(logvar.shape)}, {tuple(y.shape)}")
    return _gll(mu, logvar, y)


def _gll(mu: Tensor, logvar: Tensor, y: Tensor) -> Tensor:
    mu, logvar, y = (t.reshape(-1, t.shape[-1]) for t in (mu, logvar, y))
    return (-(mu - y) ** 2 / logvar.exp() - logvar).sum(1).mean(0) / 2


def club_upper_bound(mu: Tensor, logvar: Tensor, y: Tensor, perm: Tensor) -> Tensor:
    r"""The sampled CLUB estimate (Cheng et al. 2020, CLUBSample; the reference code's
    ``mi_est``) for q(y|x) = N(mu(x), diag exp(logvar(x))), per sample b, time t, dim d:

        pos_bd = -mean_t (mu_btd - y_btd)^2         / exp(mean_t logvar_btd)
        neg_bd = -mean_t (mu_btd - y_{pi(b)td})^2   / exp(mean_t logvar_btd)
        I_CLUB = 1/(2B) sum_b sum_d (pos_bd - neg_bd)

    with pi = ``perm`` a permutation of the batch (the negatives: y paired with another
    sample's x). With T = 1 this is CLUBSample exactly; the mean over time is the reference
    code's grouping for sequences. An upper bound of I(x; y) when q is the true conditional;
    in expectation over pi it equals E_p(x,y)[log q] - E_p(x)p(y)[log q]."""
    y = _check_seq("club_upper_bound", "y", y)
    mu = mu if mu.ndim == 3 else mu[:, None, :]
    logvar = logvar if logvar.ndim == 3 else logvar[:, None, :]
    if mu.shape != y.shape or logvar.shape != y.shape:
        raise ValueError(f"club_upper_bound: mu, logvar and y must have the same shape, got "
                         f"{tuple(mu.shape)}, {tuple(logvar.shape)}, {tuple(y.shape)}")
    inv_var = (-logvar.mean(1)).exp()                                        # [B, D]
    pos = -((mu - y) ** 2).mean(1) * inv_var
    neg = -((mu - y[perm]) ** 2).mean(1) * inv_var
    return (pos.sum(-1) - neg.sum(-1)).mean() / 2


class CLUB(_nn.Module):
    r"""CLUB (Cheng et al., ICML 2020): a variational upper bound of I(x; y) with its own
    estimator q_theta(y|x) = N(mu(x), diag exp(logvar(x))).

    Architecture (reference code, ``CLUBSample_group``): mu and logvar are two MLPs
    x_dim -> hidden/2 -> hidden/2 -> hidden/2 -> y_dim with ReLU, logvar bounded in (-1, 1)
    by a final tanh; PyTorch's default uniform initialisation. Training alternates (reference
    code): `fit` takes ``steps`` (5) Adam steps (lr 1e-3) maximising `gaussian_loglik` on
    DETACHED samples with the estimator's own optimiser; then `mi_est` gives
    `club_upper_bound`, through which the model minimises the bound (gradients reach x and y,
    never the estimator).

    ``n`` > 1 holds n independent estimators (e.g. one per modality, as the reference has)
    computed together as batched matrix products (ours: the same numbers, a fraction of the
    time on a CPU). Each has its own parameters; they share one Adam, which updates every
    parameter elementwise from its own gradient, so this equals n separate optimisers. With
    n > 1 the inputs are lists of n tensors and results have one entry per estimator.

    The estimator's parameters keep ``requires_grad=False`` outside `fit`, so a model that
    holds a CLUB never hands them to its own optimiser (the reference keeps them in a
    separate optimiser the same way). Inputs: [B, D] or [B, T, D] (rows = time steps).
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 256, lr: float = 1e-3, steps: int = 5, n: int = 1,
                 seed: int = 0):
        super().__init__()
        from ._checks import check_int, check_number

        self.x_dim = check_int("x_dim", x_dim, 1)
        self.y_dim = check_int("y_dim", y_dim, 1)
        self.hidden = check_int("hidden", hidden, 2)
        self.lr = check_number("lr", lr, 0.0, lo_open=True)
        self.steps = check_int("steps", steps, 0)
        self.n = check_int("n", n, 1)
        g = torch.Generator().manual_seed(check_int("seed", seed))
        h = self.hidden // 2
        sizes = [(self.x_dim, h), (h, h), (h, h), (h, self.y_dim)]
        G = 2 * self.n                              # groups: n mu-networks, then n logvar-networks
        self.weights = _nn.ParameterList()
        self.biases = _nn.ParameterList()
        for d_in, d_out in sizes:                   # U(-1/sqrt(in), 1/sqrt(in)): torch.nn.Linear's default
            bound = 1 / _math.sqrt(d_in)
            self.weights.append(_nn.Parameter((torch.rand(G, d_in, d_out, generator=g) * 2 - 1) * bound))
            self.biases.append(_nn.Parameter((torch.rand(G, 1, d_out, generator=g) * 2 - 1) * bound))
        self.requires_grad_(False)
        self._gen = torch.Generator().manual_seed(int(seed) + 1)
        self.optimizer: torch.optim.Optimizer | None = None

    # ---------------------------------------------------------------- inputs
    def _stack(self, v, name: str, minimum: int) -> Tensor:
        """list of n tensors (or one tensor when n == 1) -> [n, B, T, D], checked."""
        vs = [v] if isinstance(v, Tensor) else list(v)
        if len(vs) != self.n:
            raise ValueError(f"CLUB: {name} must be {'a tensor' if self.n == 1 else f'a list of {self.n} tensors'} "
                             f"(one per estimator), got {len(vs)}")
        vs = [_check_seq("CLUB", name if self.n == 1 else f"{name}[{i}]", t, minimum) for i, t in enumerate(vs)]
        if len({tuple(t.shape) for t in vs}) != 1:
            raise ValueError(f"CLUB: every {name} must have the same shape, got {[tuple(t.shape) for t in vs]}")
        return torch.stack(vs)

    def _xy(self, x, y, minimum=2):
        X, Y = self._stack(x, "x", minimum), self._stack(y, "y", minimum)
        if X.shape[1:3] != Y.shape[1:3]:
            raise ValueError(f"CLUB: x and y must hold the same samples and time steps, got "
                             f"{tuple(X.shape[1:])} and {tuple(Y.shape[1:])}")
        if X.shape[-1] != self.x_dim or Y.shape[-1] != self.y_dim:
            raise ValueError(f"CLUB: x must have last dimension {self.x_dim} and y {self.y_dim} (the estimator's "
                             f"sizes), got {X.shape[-1]} and {Y.shape[-1]}")
        return X, Y

    # ---------------------------------------------------------------- q(y|x)
    def mu_logvar(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """X [n, B, T, x_dim] -> (mu, logvar), each [n, B, T, y_dim]."""
        n, B, T, _ = X.shape
        h = X.reshape(n, B * T, -1).float().repeat(2, 1, 1)               # [2n, BT, x_dim]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.relu(h)
        mu, logvar = h[:n], torch.tanh(h[n:])
        return mu.reshape(n, B, T, -1), logvar.reshape(n, B, T, -1)

    def _out(self, v: Tensor):
        return v[0] if self.n == 1 else v

    def loglik(self, x, y) -> Tensor:
        """`gaussian_loglik` of y under q(y|x) (the estimator's objective), per estimator."""
        X, Y = self._xy(x, y, minimum=1)
        mu, logvar = self.mu_logvar(X)
        return self._out(torch.stack([gaussian_loglik(mu[i], logvar[i], Y[i]) for i in range(self.n)]))

    def mi_est(self, x, y, perm: Tensor | None = None) -> Tensor:
        """`club_upper_bound` per estimator, negatives from ``perm`` (default: a fresh random
        permutation of the batch from this estimator's own generator, shared by its n parts)."""
        X, Y = self._xy(x, y)
        if perm is None:
            perm = torch.randperm(X.shape[1], generator=self._gen).to(X.device)
        mu, logvar = self.mu_logvar(X)
        return self._out(torch.stack([club_upper_bound(mu[i], logvar[i], Y[i], perm) for i in range(self.n)]))

    forward = mi_est

    def fit(self, x, y, steps: int | None = None):
        """``steps`` (default ``self.steps``) Adam steps maximising the log-likelihood of the
        (detached) pairs; returns the last log-likelihood (per estimator). The optimiser is the
        estimator's own (created on first use)."""
        return fit_clubs([(self, x, y)], steps)[0]

    def _optimizer(self) -> torch.optim.Optimizer:
        if self.optimizer is None:
            params = list(self.parameters())
            try:                                            # one fused update for all tensors where supported
                self.optimizer = torch.optim.Adam(params, lr=self.lr, fused=True)
            except (RuntimeError, TypeError):
                self.optimizer = torch.optim.Adam(params, lr=self.lr)
        return self.optimizer


def fit_clubs(jobs, steps: int | None = None) -> list:
    """Fit several CLUB estimators at once: ``jobs`` = [(club, x, y), ...]. Each takes
    ``steps`` (default: its own ``steps``) Adam steps with ITS OWN optimiser on its own
    log-likelihood; the losses are summed into one backward pass, which gives every estimator
    exactly its own gradient (their parameters are disjoint), so the result equals fitting
    them one after another. Returns each final log-likelihood (a float, or a list per
    estimator bank with n > 1)."""
    prepared = [(c, *c._xy([t.detach() for t in x] if not isinstance(x, Tensor) else x.detach(),
                           [t.detach() for t in y] if not isinstance(y, Tensor) else y.detach(), minimum=1))
                for c, x, y in jobs]
    if not prepared:
        return []
    n = max(c.steps for c, _, _ in prepared) if steps is None else int(steps)
    opts = [c._optimizer() for c, _, _ in prepared]
    lls: list = [float("nan")] * len(prepared)
    with torch.enable_grad():
        for c, _, _ in prepared:
            c.requires_grad_(True)
        try:
            for k in range(n):
                active = [i for i, (c, _, _) in enumerate(prepared) if steps is not None or k < c.steps]
                for i in active:
                    opts[i].zero_grad(set_to_none=True)
                per = []
                for i in active:
                    c, X, Y = prepared[i]
                    mu, logvar = c.mu_logvar(X)
                    per.append(torch.stack([_gll(mu[j], logvar[j], Y[j]) for j in range(c.n)]))
                (-torch.cat(per).sum()).backward()
                for i in active:
                    opts[i].step()
                for i, v in zip(active, per):
                    vals = v.detach().tolist()
                    lls[i] = vals[0] if prepared[i][0].n == 1 else vals
        finally:
            for (c, _, _), o in zip(prepared, opts):
                c.requires_grad_(False)
                o.zero_grad(set_to_none=True)
    return lls


def cpc_nce(targets: Tensor, preds: Tensor) -> Tensor:
    r"""One CPC InfoNCE term (reference code, ``Cross_CPC``): with scores
    S_ij = <z_i, p_j> between the true future z_i of sample i and the prediction p_j made
    from sample j's context,

        L = -1/B sum_i log softmax_j(S_ij) |_{j = i}

    (softmax over predictions, raw dot products, no temperature). Unrelated pairs give about
    log B; a perfect predictor gives about 0."""
    _check_pair("cpc_nce", targets, preds, names=("targets", "preds"))
    s = targets.float() @ preds.float().T
    return -torch.diagonal(torch.log_softmax(s, dim=1)).mean()


class CrossCPC(_nn.Module):
    r"""Cross-modal contrastive predictive coding (reference code, ``Cross_CPC`` /
    ``Cross_CPC_AVT``). For each modality m an autoregressive LSTM summarises its sequence up
    to a time step t, c^m_t = LSTM_m(z^m_{<=t}), and a linear predictor W_m maps it to a
    prediction of a future step, p^m = W_m c^m_t. The loss sums `cpc_nce` terms:

        L = sum_{a != b} w_cross * NCE(z^b_{t+1}, p^a) + sum_m w_self * NCE(z^m_{t+1}, p^m)

    w_cross = 1, w_self = 0.1 (reference code: "slightly computing self nce ... provides a
    direction to align modalities"); t is drawn uniformly from [1, T - 2] once per call, the
    same for every modality and sample (reference code, k = 1 step ahead). Unrelated
    sequences give about (M(M-1) w_cross + M w_self) log B; ``terms`` holds each NCE alone.
    Sizes are ours (the reference uses a 2-layer LSTM with 256-d context)."""

    def __init__(self, modalities, dim: int, context: int = 64, num_layers: int = 1, cross_weight: float = 1.0,
                 self_weight: float = 0.1, min_start: int = 1):
        super().__init__()
        from ._checks import check_int, check_weight

        mods = [str(m) for m in modalities]
        if len(mods) < 2 or len(set(mods)) != len(mods):
            raise ValueError(f"modalities must name >= 2 distinct modalities, got {mods}")
        self.modalities = tuple(mods)
        self.dim = check_int("dim", dim, 1)
        self.context = check_int("context", context, 1)
        self.cross_weight = check_weight("cross_weight", cross_weight)
        self.self_weight = check_weight("self_weight", self_weight)
        self.min_start = check_int("min_start", min_start, 0)
        self.lstm = _nn.ModuleDict({m: _nn.LSTM(self.dim, self.context, check_int("num_layers", num_layers, 1),
                                                batch_first=True) for m in mods})
        self.pred = _nn.ModuleDict({m: _nn.Linear(self.context, self.dim) for m in mods})

    def forward(self, z: dict[str, Tensor], t: int | None = None, generator: torch.Generator | None = None) -> dict:
        """``z``: modality -> [B, T, dim] (pre-quantisation general features). Returns
        ``{"loss", "terms": {(a, b): NCE of a's prediction of b's future}, "acc": {...}, "t"}``."""
        missing = [m for m in self.modalities if m not in z]
        if missing:
            raise KeyError(f"CrossCPC: z lacks modalities {missing}; it needs {list(self.modalities)}")
        seqs = {m: _check_seq("CrossCPC", f"z[{m!r}]", z[m]) for m in self.modalities}
        shapes = {tuple(s.shape) for s in seqs.values()}
        if len(shapes) != 1:
            raise ValueError(f"CrossCPC: every modality needs the same [B, T, dim] shape, got "
                             f"{ {m: tuple(s.shape) for m, s in seqs.items()} }")
        B, T, D = next(iter(shapes))
        if D != self.dim:
            raise ValueError(f"CrossCPC: z must have last dimension {self.dim}, got {D}")
        hi = T - 1 - self.min_start                       # number of admissible context ends
        if hi < 1:
            raise ValueError(f"CrossCPC needs sequences of at least {self.min_start + 2} steps, got T={T}")
        if t is None:
            t = int(torch.randint(hi, (1,), generator=generator)) + self.min_start
        elif not self.min_start <= int(t) <= T - 2:
            raise ValueError(f"t must be in [{self.min_start}, {T - 2}], got {t}")
        t = int(t)
        preds, futures = {}, {}
        for m, s in seqs.items():
            ctx, _ = self.lstm[m](s[:, :t + 1].float())
            preds[m] = self.pred[m](ctx[:, t])
            futures[m] = s[:, t + 1].float()
        loss, terms, acc = 0.0, {}, {}
        for a in self.modalities:
            for b in self.modalities:
                w = self.self_weight if a == b else self.cross_weight
                nce = cpc_nce(futures[b], preds[a])
                terms[(a, b)] = nce
                with torch.no_grad():
                    acc[(a, b)] = float((futures[b] @ preds[a].T).argmax(1).eq(torch.arange(B, device=nce.device))
                                        .float().mean())
                if w:
                    loss = loss + w * nce
        if not isinstance(loss, Tensor):
            loss = next(iter(terms.values())) * 0.0
        return {"loss": loss, "terms": terms, "acc": acc, "t": t}

# ====================================================================== CDDS (notebook 07)
# Constrained decoupling and distribution sampling (AAAI 2026, arXiv 2603.05566); no official
# code exists, see docs/methods/cdds.md for what is the paper's and what is ours.


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
