"""Quantizers for discrete (codebook) representations: VQ with EMA codebook updates,
residual VQ (RVQ) and finite scalar quantization (FSQ). See docs/methods/srcid.md.

Every quantizer maps ``z [..., D]`` to a `Quantized` result:

- ``quantized``: same shape as ``z``; straight-through, so d quantized / d z is the identity
  (``z + (q - z).detach()``): the decoder's gradient passes to the encoder unchanged;
- ``codes``: long ``[..., n_codebooks]``, the chosen code of every codebook (RVQ: one per
  stage, FSQ: the implicit index of the level grid);
- ``commitment``: the mean squared distance ``mse(z, q.detach())`` (RVQ: summed over stages
  of each stage's residual), which pulls the encoder towards its codes (weighted by beta in
  the model; VQ-VAE's beta = 0.25).

Codebook usage (`codebook_usage`) is reported per codebook, never pooled across codebooks:
the perplexity ``exp(H(p))`` of the code frequencies p and the active fraction (codes used
at least once).

What follows the public reference code (haihuangcode/CMG and haihuangcode/TOC_H-DCID,
``model/main_model_2.py``) is marked "(reference code)", our choices "(ours)":

- EMA update (reference code): for each input in turn (each modality), with one-hot
  assignments E [N, K] and update targets X [N, D]::

      N_k  <- gamma N_k + (1 - gamma) sum_i E_ik
      N_k  <- (N_k + eps) / (n + K eps) * n,   n = sum_k N_k       (Laplace smoothing)
      m_k  <- gamma m_k + (1 - gamma) sum_i E_ik X_i
      e_k  <- m_k / N_k

  gamma = 0.99, eps = 1e-5. In DCID the target X of modality a is a mixture of its own
  feature and its paired modalities' features (``ema_targets``), so one code moves towards
  what both modalities put there. All inputs are assigned BEFORE any update, then updated in
  order (reference code).
- Dead-code reset (reference code): every step each code's "unused" counter grows by 1 and
  is set to 0 when the code is chosen; a code unused for more than ``dead_after`` steps (300)
  is re-initialised at a randomly chosen recently used code (counter < ``active_window``, 100)
  plus uniform noise of half-width ``reset_noise`` (1/1024). The reference resets only the
  code vector ``e_k``, which its next EMA update recomputes as ``m_k / N_k`` from the stale
  statistics (dragging it back) unless the reset code is chosen in that step; that is the
  default here. ``reset_ema=True`` (ours) also gives the reset code the EMA count of the code
  it copies and ``m_k = e_k N_k``, so the reset survives the next update.
- Initialisation (reference code): codes uniform in +-1/400, EMA counts 0.
- FSQ (Mentzer et al. 2023; identical codes to vector-quantize-pytorch's ``FSQ``, a test
  compares): bound each of the len(levels) channels with ``tanh(z + shift) * h - offset``
  (h = (L - 1)(1 + 1e-3)/2, offset 0.5 for even L), round with a straight-through
  gradient, divide by L // 2; a linear projection D -> len(levels) before and back after.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_finite, check_int, check_number

__all__ = ["Quantized", "VectorQuantizerEMA", "ResidualVQ", "FSQ", "codebook_usage", "make_quantizer",
           "QUANTIZERS"]


@dataclass
class Quantized:
    """What a quantizer returns (see the module docstring)."""

    quantized: Tensor      # [..., D], straight-through
    codes: Tensor          # [..., n_codebooks] long
    commitment: Tensor     # scalar
    hard: Tensor           # [..., D] the code vectors themselves (no gradient to z)


def _check_input(name: str, z, dim: int) -> Tensor:
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [..., {dim}], got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor [..., {dim}], got dtype {z.dtype}")
    if z.ndim < 2:
        raise ValueError(f"{name} must have shape [N, {dim}] or [B, T, {dim}] (rows of vectors), got {tuple(z.shape)}")
    if z.shape[-1] != dim:
        raise ValueError(f"{name} has last dimension {z.shape[-1]} but the codebook dimension is {dim}; "
                         f"project it to {dim} first (got shape {tuple(z.shape)})")
    if z.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(z.shape)})")
    check_finite(name, z)
    return z


def codebook_usage(codes, n_codes: int) -> dict[str, float]:
    """Usage of ONE codebook from the codes it emitted (any shape of long indices in
    [0, n_codes)): ``perplexity`` = exp(-sum_k p_k log p_k) with p the code frequencies (1 when
    one code is used, n_codes when all are used equally), ``active`` = fraction of codes used
    at least once, ``n`` = number of codes counted. For several codebooks call it once per
    codebook (the last axis of a quantizer's ``codes``): pooled counts would mix codebooks."""
    n_codes = check_int("n_codes", n_codes, 1)
    c = torch.as_tensor(codes)
    if c.is_floating_point() or c.dtype == torch.bool:
        raise TypeError(f"codes must be integer code indices, got dtype {c.dtype}")
    c = c.reshape(-1).long()
    if c.numel() == 0:
        raise ValueError("codes must hold at least one code, got none")
    if int(c.min()) < 0 or int(c.max()) >= n_codes:
        raise ValueError(f"codes must lie in [0, {n_codes}), got values in [{int(c.min())}, {int(c.max())}]")
    counts = torch.bincount(c, minlength=n_codes).double()
    p = counts / counts.sum()
    nz = p[p > 0]
    return {"perplexity": float(torch.exp(-(nz * nz.log()).sum())), "active": float((counts > 0).double().mean()),
            "n": int(c.numel())}


class VectorQuantizerEMA(nn.Module):
    """Vector quantization with an EMA-updated codebook, Laplace smoothing and dead-code
    reset (see the module docstring for the update rules and what is reference code).

    n_codes:       codebook size K (SRCID: 400, paper)
    dim:           code dimension D (SRCID: 256, paper)
    decay, eps:    EMA decay gamma and Laplace epsilon (0.99, 1e-5: reference code)
    dead_after:    steps without use before a code is reset (300, reference code); None: never
    active_window: a code used within this many steps counts as recently used (100, reference code)
    reset_noise:   half-width of the uniform noise added to a reset code (1/1024, reference code)
    reset_ema:     False (reference code): a reset sets the code vector only, and the next EMA
                   update recomputes it from the old statistics; True (ours): the reset code
                   also takes the copied code's EMA count and sum, so the reset lasts
    seed:          seeds this quantizer's own generator (which recent code a dead one copies)

    ``forward(z)`` quantizes one input; `quantize_many` several (one per modality) into the
    same codebook, assigning all before updating any, as the reference does. The codebook is
    updated only in training mode (``update=False`` skips it).
    """

    n_codebooks = 1

    def __init__(self, n_codes: int = 400, dim: int = 256, decay: float = 0.99, eps: float = 1e-5,
                 dead_after: int | None = 300, active_window: int = 100, reset_noise: float = 1 / 1024,
                 init_bound: float = 1 / 400, reset_ema: bool = False, seed: int = 0):
        super().__init__()
        self.n_codes = check_int("n_codes", n_codes, 1)
        self.dim = check_int("dim", dim, 1)
        self.decay = check_number("decay", decay, 0.0, 1.0, hi_open=True)
        self.eps = check_number("eps", eps, 0.0, lo_open=True)
        self.dead_after = check_int("dead_after", dead_after, 1, none_ok=True)
        self.active_window = check_int("active_window", active_window, 1)
        self.reset_noise = check_number("reset_noise", reset_noise, 0.0)
        self.reset_ema = check_bool("reset_ema", reset_ema)
        init_bound = check_number("init_bound", init_bound, 0.0, lo_open=True)
        g = torch.Generator().manual_seed(check_int("seed", seed))
        emb = (torch.rand(self.n_codes, self.dim, generator=g) * 2 - 1) * init_bound
        self.register_buffer("embedding", emb)
        self.register_buffer("ema_count", torch.zeros(self.n_codes))
        self.register_buffer("ema_weight", emb.clone())
        self.register_buffer("unused", -torch.ones(self.n_codes))        # -1: never used yet (reference code)
        self.register_buffer("n_resets", torch.zeros((), dtype=torch.long))
        self._gen = torch.Generator().manual_seed(int(seed) + 1)

    # ------------------------------------------------------------------ assignment
    def nearest(self, flat: Tensor) -> Tensor:
        """Index of the nearest code (squared Euclidean) for each row of ``flat`` [N, D]."""
        e = self.embedding
        d = torch.addmm((e * e).sum(1)[None, :], flat, e.t(), beta=1.0, alpha=-2.0)   # ||e||^2 - 2 z.e
        return d.argmin(1)

    # ------------------------------------------------------------------ updates
    @torch.no_grad()
    def ema_update(self, idx: Tensor, targets: Tensor) -> None:
        """One EMA step (reference code) with assignments ``idx`` [N] and update targets
        ``targets`` [N, D] (the assigned inputs, or DCID's cross-modal mixture)."""
        K = self.n_codes
        counts = torch.bincount(idx, minlength=K).to(self.ema_count.dtype)
        dw = torch.zeros_like(self.ema_weight).index_add_(0, idx, targets.to(self.ema_weight.dtype))
        g = self.decay
        cnt = g * self.ema_count + (1 - g) * counts
        n = cnt.sum()
        cnt = (cnt + self.eps) / (n + K * self.eps) * n                                 # Laplace smoothing
        self.ema_count.copy_(cnt)
        self.ema_weight.mul_(g).add_(dw, alpha=1 - g)
        self.embedding.copy_(self.ema_weight / self.ema_count[:, None])

    @torch.no_grad()
    def dead_code_step(self, used: Tensor) -> int:
        """Advance the unused counters by one step (``used``: every index chosen in it) and
        reset codes unused for more than ``dead_after`` steps. Returns the number reset."""
        self.unused.add_(1)
        self.unused[used.unique()] = 0
        if self.dead_after is None:
            return 0
        dead = torch.nonzero(self.unused > self.dead_after).flatten()
        if dead.numel() == 0:
            return 0
        recent = torch.nonzero((self.unused >= 0) & (self.unused < self.active_window)).flatten()
        self.unused[dead] = 0
        if recent.numel() == 0:
            return 0
        pick = recent[torch.randint(len(recent), (len(dead),), generator=self._gen).to(recent.device)]
        noise = (torch.rand(len(dead), self.dim, generator=self._gen) * 2 - 1).to(self.embedding) * self.reset_noise
        new = self.embedding[pick] + noise
        self.embedding[dead] = new
        if self.reset_ema:
            # ours: the reset code takes the EMA count of the code it copies (and m_k = e_k N_k),
            # so the reset survives the next EMA step (the reference's is recomputed from the
            # stale m_k / N_k there)
            self.ema_count[dead] = self.ema_count[pick]
            self.ema_weight[dead] = new * self.ema_count[dead, None]
        self.n_resets += len(dead)
        return int(len(dead))

    # ------------------------------------------------------------------ forward
    def quantize_many(self, zs: Sequence[Tensor], ema_targets: Sequence[Tensor] | None = None,
                      update: bool = True, names: Sequence[str] | None = None) -> list[Quantized]:
        """Quantize several inputs into this one codebook (DCID's shared codebook: one input per
        modality). All are assigned first; then, in training mode with ``update``, the EMA steps
        run input by input with ``ema_targets`` (default: the inputs), then one dead-code step."""
        names = list(names) if names is not None else [f"zs[{i}]" for i in range(len(zs))]
        zs = [_check_input(n, z, self.dim) for n, z in zip(names, zs)]
        flats = [z.detach().reshape(-1, self.dim).to(self.embedding.dtype) for z in zs]
        idxs = [self.nearest(f) for f in flats]
        hards = [self.embedding[i] for i in idxs]                  # codes before this step's update
        if self.training and update:
            tg = flats if ema_targets is None else [t.detach().reshape(-1, self.dim) for t in ema_targets]
            if len(tg) != len(flats) or any(t.shape != f.shape for t, f in zip(tg, flats)):
                raise ValueError("ema_targets must match zs one to one, with the same shapes")
            for i, t in zip(idxs, tg):
                self.ema_update(i, t)
            self.dead_code_step(torch.cat(idxs))
        out = []
        for z, i, h in zip(zs, idxs, hards):
            h = h.reshape(z.shape).to(z.dtype)
            out.append(Quantized(quantized=z + (h - z).detach(), codes=i.reshape(*z.shape[:-1], 1),
                                 commitment=F.mse_loss(z, h.detach()), hard=h))
        return out

    def forward(self, z: Tensor, ema_target: Tensor | None = None, update: bool = True) -> Quantized:
        return self.quantize_many([z], None if ema_target is None else [ema_target], update, names=["z"])[0]

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.n_codes]

    def active_fraction(self) -> list[float]:
        """Fraction of codes chosen within the last ``active_window`` steps (per codebook)."""
        u = self.unused
        return [float(((u >= 0) & (u < self.active_window)).float().mean())]

    def extra_repr(self) -> str:
        return f"n_codes={self.n_codes}, dim={self.dim}, decay={self.decay}, dead_after={self.dead_after}"


class ResidualVQ(nn.Module):
    """Residual VQ: stage s quantizes what the stages before it left over,
    r_0 = z, q_s = VQ_s(r_{s-1}), r_s = r_{s-1} - q_s, quantized = sum_s q_s (straight-through
    on the sum). Every stage has its own EMA codebook (`VectorQuantizerEMA`, same rules);
    commitment = sum_s mse(r_{s-1}, q_s) (as vector-quantize-pytorch's ResidualVQ sums its
    per-stage losses). SRCID's comparison: 4 stages of 400 codes (spec). With ``ema_targets``
    (DCID's mixture) stage s updates towards target - sum_{t<s} q_t (ours)."""

    def __init__(self, n_codes: int = 400, dim: int = 256, n_stages: int = 4, seed: int = 0, **vq_kwargs):
        super().__init__()
        self.n_stages = check_int("n_stages", n_stages, 1)
        self.dim = check_int("dim", dim, 1)
        self.n_codes = check_int("n_codes", n_codes, 1)
        self.stages = nn.ModuleList([VectorQuantizerEMA(n_codes, dim, seed=int(seed) + 7919 * s, **vq_kwargs)
                                     for s in range(self.n_stages)])

    @property
    def n_codebooks(self) -> int:
        return self.n_stages

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.n_codes] * self.n_stages

    def quantize_many(self, zs, ema_targets=None, update: bool = True, names=None) -> list[Quantized]:
        names = list(names) if names is not None else [f"zs[{i}]" for i in range(len(zs))]
        zs = [_check_input(n, z, self.dim) for n, z in zip(names, zs)]
        res = [z.detach() for z in zs]
        tgs = None if ema_targets is None else [t.detach() for t in ema_targets]
        total = [torch.zeros_like(z) for z in zs]
        codes = [[] for _ in zs]
        commit = [z.new_zeros(()) for z in zs]
        for stage in self.stages:
            outs = stage.quantize_many(res, tgs, update=update, names=names)
            for j, o in enumerate(outs):
                commit[j] = commit[j] + F.mse_loss(zs[j] - total[j].detach(), o.hard.detach())
                total[j] = total[j] + o.hard
                codes[j].append(o.codes)
                res[j] = res[j] - o.hard
                if tgs is not None:
                    tgs[j] = tgs[j] - o.hard
        return [Quantized(quantized=z + (t - z).detach(), codes=torch.cat(c, -1), commitment=cm, hard=t)
                for z, t, c, cm in zip(zs, total, codes, commit)]

    def forward(self, z: Tensor, ema_target: Tensor | None = None, update: bool = True) -> Quantized:
        return self.quantize_many([z], None if ema_target is None else [ema_target], update, names=["z"])[0]

    def active_fraction(self) -> list[float]:
        return [s.active_fraction()[0] for s in self.stages]


class FSQ(nn.Module):
    """Finite scalar quantization (see the module docstring): project D -> len(levels), bound,
    round (straight-through), project back. No codebook to learn, so no EMA, no dead codes;
    the implicit codebook has prod(levels) entries (SRCID's comparison: [5, 5, 4, 4] = 400).
    ``codes`` is the index of the level combination (vector-quantize-pytorch's convention)."""

    n_codebooks = 1

    def __init__(self, levels: Sequence[int] = (5, 5, 4, 4), dim: int = 256, seed: int = 0):
        super().__init__()
        try:
            lv = [check_int(f"levels[{i}]", v, 3) for i, v in enumerate(levels)]
        except TypeError:
            raise TypeError(f"levels must be a list of integers >= 3, got {levels!r}") from None
        if not lv:
            raise ValueError("levels must hold at least one level count, got []")
        self.levels = tuple(lv)
        self.dim = check_int("dim", dim, 1)
        self.n_codes = int(math.prod(lv))
        self.register_buffer("_levels", torch.tensor(lv, dtype=torch.float32), persistent=False)
        self.register_buffer("_basis", torch.cumprod(torch.tensor([1] + lv[:-1]), 0).to(torch.long), persistent=False)
        L = torch.tensor(lv, dtype=torch.float32)                       # constants of `bound`, computed once
        half_l = (L - 1) * (1 + 1e-3) / 2
        offset = torch.where(torch.remainder(L, 2) == 0, 0.5, 0.0)
        self.register_buffer("_half_l", half_l, persistent=False)
        self.register_buffer("_offset", offset, persistent=False)
        self.register_buffer("_shift", torch.atanh(offset / half_l), persistent=False)
        self.register_buffer("_half_w", torch.floor(L / 2), persistent=False)
        self.register_buffer("_basis_f", self._basis.float(), persistent=False)
        g = torch.Generator().manual_seed(check_int("seed", seed))
        k = len(lv)
        if self.dim != k:
            self.project_in = nn.Linear(self.dim, k)
            self.project_out = nn.Linear(k, self.dim)
            with torch.no_grad():
                for lin in (self.project_in, self.project_out):
                    bound = 1 / math.sqrt(lin.in_features)
                    lin.weight.copy_((torch.rand(lin.weight.shape, generator=g) * 2 - 1) * bound)
                    lin.bias.copy_((torch.rand(lin.bias.shape, generator=g) * 2 - 1) * bound)
        else:
            self.project_in = nn.Identity()
            self.project_out = nn.Identity()

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.n_codes]

    def bound(self, h: Tensor) -> Tensor:
        """The level-grid values before rounding: tanh(h + shift) * half_l - offset, with
        half_l = (L - 1)(1 + 1e-3) / 2, offset = 0.5 for even L, shift = atanh(offset / half_l)."""
        return torch.tanh(h + self._shift) * self._half_l - self._offset

    def quantize_latent(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(normalised codes in [-1, 1] with a straight-through round, code indices) of the
        projected latent h [..., len(levels)]."""
        b = self.bound(h.float())
        rd = b.detach().round()
        r = b + (rd - b.detach())
        normed = r / self._half_w
        idx = ((rd + self._half_w) @ self._basis_f).round().long()
        return normed.to(h.dtype), idx

    def quantize_many(self, zs, ema_targets=None, update: bool = True, names=None) -> list[Quantized]:
        names = list(names) if names is not None else [f"zs[{i}]" for i in range(len(zs))]
        return [self._one(_check_input(n, z, self.dim)) for n, z in zip(names, zs)]

    def _one(self, z: Tensor) -> Quantized:
        h = self.project_in(z)
        normed, idx = self.quantize_latent(h)
        q = self.project_out(normed)
        # the projection out is learned: the decoder's gradient reaches it and, through the
        # straight-through round, the projection in and the encoder.
        return Quantized(quantized=q, codes=idx[..., None], commitment=z.new_zeros(()), hard=q.detach())

    def forward(self, z: Tensor, ema_target: Tensor | None = None, update: bool = True) -> Quantized:
        return self.quantize_many([z], names=["z"])[0]

    def active_fraction(self) -> list[float]:
        return [float("nan")]


QUANTIZERS = ("vq", "rvq", "fsq")


def make_quantizer(kind: str, n_codes: int, dim: int, *, n_stages: int = 4, levels: Sequence[int] = (5, 5, 4, 4),
                   seed: int = 0, **vq_kwargs) -> nn.Module:
    """A quantizer by name: "vq" (`VectorQuantizerEMA`), "rvq" (`ResidualVQ`, ``n_stages``
    codebooks of ``n_codes``) or "fsq" (`FSQ` with ``levels``; ``n_codes`` unused)."""
    if kind not in QUANTIZERS:
        raise ValueError(f"kind must be one of {list(QUANTIZERS)}, got {kind!r}")
    if kind == "vq":
        return VectorQuantizerEMA(n_codes, dim, seed=seed, **vq_kwargs)
    if kind == "rvq":
        return ResidualVQ(n_codes, dim, n_stages=n_stages, seed=seed, **vq_kwargs)
    return FSQ(levels, dim, seed=seed)
