"""Gradient regulation: a `Regulator` acts between ``backward()`` and ``step()``.

The Trainer calls, in order, for every step::

    batch = reg.prepare_batch(batch, epoch)        # e.g. modality dropout
    out = model(batch); terms = model.loss_terms(batch, out)
    terms.update(reg.extra_terms(batch, out))       # e.g. PMR's prototype loss (weighted by reg.weights)
    handled = reg.backward(loss, terms, batch, out) # True if it ran backward itself (MMPareto)
    diag = reg.after_backward(batch, out, terms)    # edit .grad in place; return diagnostics
    optimizer.step(); reg.after_step()

plus ``attach(model, trainer)`` once, ``on_epoch_start(epoch, n_epochs)`` and
``on_epoch_end(epoch)``. Diagnostics (floats) are logged per step as ``reg/<name>``.
Regulators find each modality's parameters through ``model.encoders[m]``.
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from .data.batch import Batch

__all__ = ["Regulator"]


class Regulator:
    """The do-nothing regulator: subclasses override the hooks they need."""

    name = "none"

    def __init__(self):
        self.weights: dict[str, float] = {}
        self.model = None
        self.trainer = None

    def attach(self, model, trainer) -> None:
        if not hasattr(model, "encoders"):
            raise TypeError(f"{type(self).__name__} needs a model with named encoders (model.encoders)")
        self.model, self.trainer = model, trainer

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        pass

    def prepare_batch(self, batch: Batch, epoch: int) -> Batch:
        return batch

    def extra_terms(self, batch: Batch, out) -> dict[str, Tensor]:
        return {}

    def backward(self, loss: Tensor, terms: dict[str, Tensor], batch: Batch, out) -> bool:
        return False

    def after_backward(self, batch: Batch, out, terms: dict[str, Tensor]) -> dict[str, float]:
        return {}

    def after_step(self) -> None:
        pass

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        return {}


# =====================================================================================
# Shared machinery for the balance methods (everything below the base class is ours to
# organise; each method follows its public code, differences are marked "ours").
# =====================================================================================
import math  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

__all__ += ["OGMGE", "AGM", "PMR", "MMPareto", "InfoReg", "RedReg", "GradMonitor",
            "ogm_coefficients", "min_norm_weights", "project_out", "agm_coefficients",
            "REGULATORS", "make_regulator"]

_EPS = 1e-12


def _num(name: str, v, lo: float | None = 0.0, hi: float | None = None, strict: bool = False) -> float:
    """A finite number in [lo, hi] (``strict``: > lo); the error names the argument."""
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {v!r}") from None
    if math.isnan(v) or (lo is not None and (v <= lo if strict else v < lo)) or (hi is not None and v > hi):
        rng = f"{'>' if strict else '>='} {lo}" if lo is not None else "a number"
        rng += f" and <= {hi}" if hi is not None else ""
        raise ValueError(f"{name} must be {rng}, got {v}")
    return v


def _floats(d: dict) -> dict[str, float]:
    """Turn a dict of scalar tensors / numbers into floats with one device sync."""
    keys = [k for k, v in d.items() if isinstance(v, torch.Tensor)]
    vals = torch.stack([d[k].detach().float().reshape(()) for k in keys]).tolist() if keys else []
    out = {k: float(v) for k, v in d.items() if not isinstance(v, torch.Tensor) and v is not None}
    out.update(zip(keys, vals))
    return out


def project_out(delta: Tensor, g: Tensor | None, eps: float = _EPS) -> Tensor:
    """``delta`` minus its component along ``g``: Delta_perp = Delta - <Delta, g>/(||g||^2 + eps) g.

    The result is orthogonal to ``g`` (up to round-off). When ``g`` is None or all zeros there
    is nothing to project out and ``delta`` comes back unchanged (public RedReg code).
    """
    if g is None:
        return delta
    g2 = (g * g).sum()
    if not bool(g2 > 0):
        return delta
    return delta - ((delta * g).sum() / (g2 + eps)) * g


def ogm_coefficients(scores: dict[str, float], alpha: float) -> dict[str, float]:
    """OGM-GE's per-modality gradient coefficient from summed true-class softmax scores.

    ratio_m = s_m / mean_{k != m} s_k (with two modalities exactly the public code's
    score_v / score_a); a modality with ratio_m > 1 gets 1 - tanh(alpha * relu(ratio_m)),
    every other modality 1.
    """
    alpha = _num("alpha", alpha)
    if len(scores) < 2:
        raise ValueError(f"OGM-GE needs scores for >= 2 modalities, got {list(scores)}")
    out = {}
    for m, s in scores.items():
        others = [float(v) for k, v in scores.items() if k != m]
        ratio = float(s) / max(sum(others) / len(others), _EPS)
        out[m] = 1.0 - math.tanh(alpha * max(ratio, 0.0)) if ratio > 1 else 1.0
    return out


def min_norm_weights(g1: Tensor, g2: Tensor) -> tuple[float, float]:
    """MGDA min-norm point of two vectors: argmin_{c in [0,1]} ||c g1 + (1-c) g2||^2.

    Closed form: c = clip(<g2 - g1, g2> / ||g1 - g2||^2, 0, 1); equal vectors give 0.5/0.5.
    """
    g1, g2 = g1.detach().double().flatten(), g2.detach().double().flatten()
    if g1.shape != g2.shape:
        raise ValueError(f"g1 and g2 must have the same size, got {g1.numel()} and {g2.numel()}")
    diff = ((g1 - g2) ** 2).sum()
    if not bool(diff > 0):
        return 0.5, 0.5
    c = float(((g2 - g1) * g2).sum() / diff)
    c = min(max(c, 0.0), 1.0)
    return c, 1.0 - c


def agm_coefficients(scores: dict[str, float], running: dict[str, float], alpha: float, cap: float = 7.0) -> dict[str, float]:
    """AGM's coefficient per modality from its current score s_m (mean -log p_y of its
    Shapley response, lower = stronger) and the running average of scores:
    ratio_m = exp(M/(M-1) (mean s - s_m))  (two modalities: exp(s_other - s_m), the original
    AGM code), target_m = the same of the running scores,
    coeff_m = exp(alpha * min(target_m - ratio_m, cap)): a modality further ahead than it
    usually is gets < 1, one further behind gets > 1. (BalanceBenchmark's M-modality
    rewrite uses exp(M/(M-1)(s_m - mean s)), the opposite sign; we follow the original.)"""
    alpha = _num("alpha", alpha)
    M = len(scores)
    if M < 2 or set(scores) != set(running):
        raise ValueError(f"scores and running must name the same >= 2 modalities, got {list(scores)} and {list(running)}")
    mean_s = sum(scores.values()) / M
    mean_r = sum(running.values()) / M
    out = {}
    for m in scores:
        ratio = math.exp(M / (M - 1) * (mean_s - scores[m]))
        target = math.exp(M / (M - 1) * (mean_r - running[m]))
        out[m] = math.exp(alpha * min(target - ratio, cap))
    return out


class _temp_eval:
    def __init__(self, modules):
        self.modules = list(modules)

    def __enter__(self):
        self.prev = [m.training for m in self.modules]
        for m in self.modules:
            m.eval()

    def __exit__(self, *exc):
        for m, p in zip(self.modules, self.prev):
            m.train(p)


class _EncoderRegulator(Regulator):
    """Helpers every balance method shares: the encoders' parameters, per-modality logits
    (auxiliary heads, or the fused linear head split into per-modality blocks), gradient
    norms and the parameter snapshot theta_0 at the start of each epoch."""

    name = "encoder"

    def __init__(self, modalities: Sequence[str] | None = None, source: str = "auto", seed: int = 0):
        super().__init__()
        if source not in ("auto", "heads", "split"):
            raise ValueError(f"source must be 'auto', 'heads' or 'split', got {source!r}")
        self.source = source
        self._modalities = None if modalities is None else tuple(modalities)
        self.seed = int(seed)
        self.epoch, self.n_epochs = 0, 1
        self.theta0: dict[str, list[Tensor]] = {}

    # -- wiring --------------------------------------------------------------------
    def attach(self, model, trainer) -> None:
        super().attach(model, trainer)
        names = tuple(model.encoders.keys())
        mods = names if self._modalities is None else self._modalities
        unknown = [m for m in mods if m not in names]
        if unknown:
            raise KeyError(f"unknown modality {unknown[0]!r} for {type(self).__name__}; "
                           f"the model's encoders are {list(names)}")
        if len(mods) < 2:
            raise ValueError(f"{type(self).__name__} balances >= 2 modalities, got {list(mods)}")
        self.modalities = tuple(mods)
        self.params = {m: [p for p in model.encoders[m].parameters() if p.requires_grad] for m in self.modalities}
        dev = next(model.parameters()).device
        self.gen = torch.Generator(device=dev).manual_seed(self.seed + 1009 * getattr(getattr(trainer, "config", None), "seed", 0))

    def on_epoch_start(self, epoch: int, n_epochs: int) -> None:
        self.epoch, self.n_epochs = int(epoch), int(n_epochs)

    def snapshot(self) -> None:
        self.theta0 = {m: [p.detach().clone() for p in ps] for m, ps in self.params.items()}

    # -- reading the model -----------------------------------------------------------
    def unimodal_logits(self, out, batch) -> dict[str, Tensor]:
        src = self.source
        if src == "auto":
            src = "heads" if all(m in out.unimodal_logits for m in self.modalities) else "split"
        if src == "heads":
            missing = [m for m in self.modalities if m not in out.unimodal_logits]
            if missing:
                raise ValueError(f"{type(self).__name__}: the model's Output has no unimodal_logits for {missing}; "
                                 f"use a model with per-modality heads (e.g. EarlyFusion(aux_heads=True)) or source='split'")
            return {m: out.unimodal_logits[m] for m in self.modalities}
        head = getattr(self.model, "head", None)
        feats = out.features
        order = list(getattr(self.model, "modalities", feats.keys()))
        if not isinstance(head, torch.nn.Linear) or any(m not in feats for m in order) \
                or head.in_features != sum(feats[m].shape[1] for m in order):
            raise ValueError(f"{type(self).__name__}: source='split' needs a fused linear head model.head on the "
                             f"concatenated encoder features [h_1; ...; h_M] (EarlyFusion)")
        res, start = {}, 0
        for m in order:
            d = feats[m].shape[1]
            if m in self.modalities:
                w = head.weight[:, start:start + d]
                b = head.bias / len(order) if head.bias is not None else 0.0
                res[m] = feats[m] @ w.t() + b
            start += d
        return res

    def true_class_probs(self, out, batch) -> dict[str, Tensor]:
        """[B] softmax probability of the true class per modality (no grad)."""
        with torch.no_grad():
            lg = self.unimodal_logits(out, batch)
            idx = torch.arange(len(batch.y), device=batch.y.device)
            return {m: F.softmax(lg[m].detach().float(), 1)[idx, batch.y] for m in self.modalities}

    def grad_norms(self, prefix: str = "gnorm") -> dict[str, Tensor]:
        res = {}
        for m, ps in self.params.items():
            gs = [p.grad.detach().float().pow(2).sum() for p in ps if p.grad is not None]
            res[f"{prefix}/{m}"] = torch.stack(gs).sum().sqrt() if gs else torch.zeros(())
        return res

    def drift(self) -> dict[str, Tensor]:
        """||theta - theta_0|| per encoder (theta_0: start of the epoch)."""
        res = {}
        for m, ps in self.params.items():
            if m in self.theta0:
                res[f"drift/{m}"] = torch.stack([(p.detach() - p0).float().pow(2).sum()
                                                 for p, p0 in zip(ps, self.theta0[m])]).sum().sqrt()
        return res


class GradMonitor(_EncoderRegulator):
    """Joint training plus eyes: leaves the gradients alone, logs each modality's confidence
    and each encoder's gradient norm per step (the imbalance picture)."""

    name = "joint"

    def after_backward(self, batch, out, terms):
        conf = self.true_class_probs(out, batch)
        d = {f"conf/{m}": c.mean() for m, c in conf.items()}
        d.update(self.grad_norms())
        return _floats(d)


# ------------------------------------------------------------------------------ OGM-GE
class OGMGE(_EncoderRegulator):
    """OGM-GE (Peng et al., CVPR 2022): on-the-fly gradient modulation + generalisation
    enhancement, as in the public code (GeWu-Lab/OGM-GE_CVPR2022):

        s_m = sum_i softmax(logits_m)_i[y_i]           (unimodal logits: split fused head by default)
        coeff_d = 1 - tanh(alpha * relu(s_d / s_w))     for the dominant modality (ratio > 1)
        g_m <- coeff_m * g_m + N(0, std(g_m))           (GE noise, on weight tensors, every encoder)

    ``start_epoch``/``end_epoch``: the modulation window (paper ~10..; ours 0 for short runs).
    """

    name = "ogm_ge"

    def __init__(self, alpha: float = 0.5, ge: bool = True, start_epoch: int = 0, end_epoch: int | None = None,
                 modalities=None, source: str = "split", seed: int = 0):
        super().__init__(modalities, source, seed)
        self.alpha = _num("alpha", alpha)
        self.ge = bool(ge)
        self.start_epoch = int(_num("start_epoch", start_epoch))
        self.end_epoch = None if end_epoch is None else int(_num("end_epoch", end_epoch))

    def active(self) -> bool:
        return self.start_epoch <= self.epoch and (self.end_epoch is None or self.epoch <= self.end_epoch)

    def after_backward(self, batch, out, terms):
        probs = self.true_class_probs(out, batch)
        sums = torch.stack([probs[m].sum() for m in self.modalities]).tolist()
        scores = dict(zip(self.modalities, sums))
        coeff = ogm_coefficients(scores, self.alpha)
        d = {f"score/{m}": s for m, s in scores.items()}
        d.update({f"coeff/{m}": c for m, c in coeff.items()})
        d.update(self.grad_norms("gnorm_raw"))
        on = self.active()
        d["active"] = float(on)
        if on:
            for m in self.modalities:
                for p in self.params[m]:
                    if p.grad is None:
                        continue
                    if coeff[m] != 1.0:
                        p.grad.mul_(coeff[m])
                    if self.ge and p.grad.ndim >= 2:
                        std = float(p.grad.std()) + 1e-8
                        p.grad.add_(torch.randn(p.grad.shape, generator=self.gen, device=p.grad.device,
                                                dtype=p.grad.dtype) * std)
        d.update(self.grad_norms())
        return _floats(d)


# --------------------------------------------------------------------------------- AGM
class AGM(_EncoderRegulator):
    """AGM (Li et al., ICCV 2023), following GeWu-Lab/BalanceBenchmark's AGM trainer.

    Shapley responses phi_m from zero-padded passes (absent modalities masked; no grad):
    phi_m = sum_{S not containing m} |S|!(M-|S|-1)!/M! (f(S + m) - f(S)), f(empty) = all masked.
    score_m = mean_i -log softmax(phi_m)_i[y_i]; coefficients by `agm_coefficients` against
    the running average of scores (sign of the original AGM code, see there); every
    encoder weight gradient is multiplied by its coefficient (biases untouched, as in
    BalanceBenchmark). Ours: the coefficient scales the whole encoder weight gradient (the
    original hooks scale only the part that flows through the fused output).
    """

    name = "agm"

    def __init__(self, alpha: float = 0.1, start_epoch: int = 0, modalities=None, seed: int = 0):
        super().__init__(modalities, "auto", seed)
        self.alpha = _num("alpha", alpha)
        self.start_epoch = int(_num("start_epoch", start_epoch))
        self.iteration = 0
        self.running: dict[str, float] = {}

    def attach(self, model, trainer):
        super().attach(model, trainer)
        if tuple(self.modalities) != tuple(model.encoders.keys()):
            raise ValueError("AGM computes Shapley values over all of the model's modalities; leave modalities=None")
        self.running = {m: 0.0 for m in self.modalities}
        self.iteration = 0

    @torch.no_grad()
    def shapley_logits(self, batch) -> dict[str, Tensor]:
        from itertools import combinations

        mods = self.modalities
        M = len(mods)
        cache: dict[frozenset, Tensor] = {}

        def f(S: frozenset) -> Tensor:
            if S not in cache:
                keep = torch.tensor([m in S for m in batch.modalities], device=batch.present.device)
                x = {m: (t if m in S else torch.zeros_like(t)) for m, t in batch.x.items()}
                cache[S] = self.model(batch.with_x(x, present=batch.present & keep[None, :])).logits.float()
            return cache[S]

        with _temp_eval([self.model]):
            phi = {}
            for m in mods:
                others = [k for k in mods if k != m]
                acc = 0.0
                for r in range(M):
                    w = math.factorial(r) * math.factorial(M - r - 1) / math.factorial(M)
                    for S in combinations(others, r):
                        S = frozenset(S)
                        acc = acc + w * (f(S | {m}) - f(S))
                phi[m] = acc
        return phi

    def after_backward(self, batch, out, terms):
        phi = self.shapley_logits(batch)
        idx = torch.arange(len(batch.y), device=batch.y.device)
        sc = torch.stack([-torch.log(F.softmax(phi[m], 1)[idx, batch.y].clamp_min(1e-8)).mean()
                          for m in self.modalities]).tolist()
        scores = dict(zip(self.modalities, sc))
        coeff = agm_coefficients(scores, self.running, self.alpha)
        self.iteration += 1
        it = self.iteration
        self.running = {m: self.running[m] * (it - 1) / it + scores[m] / it for m in self.modalities}
        d = {f"score/{m}": s for m, s in scores.items()}
        d.update({f"coeff/{m}": c for m, c in coeff.items()})
        d.update(self.grad_norms("gnorm_raw"))
        if self.epoch >= self.start_epoch:
            for m in self.modalities:
                if coeff[m] != 1.0:
                    for p in self.params[m]:
                        if p.grad is not None and p.grad.ndim >= 2:
                            p.grad.mul_(coeff[m])
        d.update(self.grad_norms())
        return _floats(d)


# --------------------------------------------------------------------------------- PMR
class PMR(_EncoderRegulator):
    """PMR (Fan et al., CVPR 2023): prototypical modal rebalance, after BalanceBenchmark.

    Prototype logits -||h_m - c_k|| (Euclidean distance as in the code; the spec writes the
    square), s_m = sum_i softmax(proto logits)_i[y_i]; the weaker modality gets the extra
    loss alpha * clip(s_max/s_m - 1, 0, 1) * CE(proto logits_m, y) (with two modalities the
    public rule). Ours: prototypes are the class means of the encoder features seen during
    the previous epoch (detached), mixed with momentum 0.5 into the older ones; in the first
    epoch, the running class means so far. (The code recomputes them with an extra pass over
    a tenth of the training data at each epoch start.)
    """

    name = "pmr"

    def __init__(self, alpha: float = 0.6, momentum: float = 0.5, start_epoch: int = 0, modalities=None,
                 squared: bool = False, seed: int = 0):
        super().__init__(modalities, "auto", seed)
        self.alpha = _num("alpha", alpha)
        self.momentum = _num("momentum", momentum, 0.0, 1.0)
        self.start_epoch = int(_num("start_epoch", start_epoch))
        self.squared = bool(squared)
        self.weights = {"pmr": self.alpha}
        self.proto: dict[str, Tensor] = {}
        self._sum: dict[str, Tensor] = {}
        self._count: Tensor | None = None
        self._diag: dict = {}

    def attach(self, model, trainer):
        super().attach(model, trainer)
        self.n_classes = int(model.n_classes)
        self.proto, self._sum, self._count = {}, {}, None

    def _accumulate(self, out, batch):
        y = batch.y
        C = self.n_classes
        onehot = F.one_hot(y, C).float()
        if self._count is None:
            self._count = torch.zeros(C, device=y.device)
        self._count += onehot.sum(0)
        for m in self.modalities:
            h = out.features[m].detach().float()
            self._sum[m] = self._sum.get(m, torch.zeros(C, h.shape[1], device=h.device)) + onehot.t() @ h

    def current_prototypes(self) -> dict[str, Tensor]:
        if self.proto:
            return self.proto
        cnt = self._count.clamp_min(1.0)[:, None]
        return {m: s / cnt for m, s in self._sum.items()}

    def proto_logits(self, h: Tensor, proto: Tensor) -> Tensor:
        d = torch.cdist(h.float(), proto.float(), p=2)
        return -(d ** 2) if self.squared else -d

    def extra_terms(self, batch, out):
        missing = [m for m in self.modalities if m not in out.features]
        if missing:
            raise ValueError(f"PMR needs encoder features in Output.features for {missing}")
        self._accumulate(out, batch)
        proto = self.current_prototypes()
        idx = torch.arange(len(batch.y), device=batch.y.device)
        logits = {m: self.proto_logits(out.features[m], proto[m]) for m in self.modalities}
        with torch.no_grad():
            s = torch.stack([F.softmax(logits[m].detach(), 1)[idx, batch.y].sum() for m in self.modalities]).tolist()
        scores = dict(zip(self.modalities, s))
        smax = max(scores.values())
        coef = {m: min(max(smax / max(scores[m], _EPS) - 1.0, 0.0), 1.0) for m in self.modalities}
        if self.epoch < self.start_epoch:
            coef = {m: 0.0 for m in self.modalities}
        self._diag = {**{f"score/{m}": v for m, v in scores.items()}, **{f"coef/{m}": v for m, v in coef.items()}}
        term = sum(coef[m] * F.cross_entropy(logits[m], batch.y) for m in self.modalities if coef[m] > 0)
        if not isinstance(term, Tensor):
            return {}          # nothing to add: leaves the loss (and gradients) untouched
        return {"pmr": term}

    def after_backward(self, batch, out, terms):
        d = dict(self._diag)
        d.update(self.grad_norms())
        return _floats(d)

    def on_epoch_end(self, epoch):
        if self._count is not None and self._count.sum() > 0:
            new = {m: s / self._count.clamp_min(1.0)[:, None] for m, s in self._sum.items()}
            seen = (self._count > 0)[:, None]
            if self.proto:
                new = {m: torch.where(seen, (1 - self.momentum) * new[m] + self.momentum * self.proto[m], self.proto[m])
                       for m in new}
            self.proto = new
        self._sum, self._count = {}, None
        return {}


# ---------------------------------------------------------------------------- MMPareto
class MMPareto(_EncoderRegulator):
    """MMPareto (Wei & Hu, ICML 2024), after the public code / BalanceBenchmark.

    Per encoder m: g_mm = grad of the fused CE, g_uni = grad of its unimodal CE.
    cos(g_mm, g_uni) > 0 -> weights 0.5/0.5, else MGDA min-norm weights (`min_norm_weights`).
    Per parameter tensor: new = 2 (w_mm g_mm + w_uni g_uni), rescaled to at least the norm of
    the summed gradient, times gamma = 1.5 (the code's alpha).
    Needs per-modality heads (Output.unimodal_logits); runs the backward passes itself.
    """

    name = "mmpareto"

    def __init__(self, gamma: float = 1.5, modalities=None, seed: int = 0):
        super().__init__(modalities, "heads", seed)
        self.gamma = _num("gamma", gamma)
        self._diag: dict = {}

    def backward(self, loss, terms, batch, out):
        if "task" not in terms:
            raise KeyError("MMPareto needs the fused loss term 'task' from model.loss_terms")
        logits = self.unimodal_logits(out, batch)
        w = self.model.loss_weights()
        uni = sum(F.cross_entropy(logits[m].float(), batch.y) for m in self.modalities) * w.get("uni", 1.0)
        params = [p for m in self.modalities for p in self.params[m]]
        g_mm = torch.autograd.grad(terms["task"] * w.get("task", 1.0), params, retain_graph=True, allow_unused=True)
        g_uni = torch.autograd.grad(uni, params, retain_graph=True, allow_unused=True)
        loss.backward()
        d, k = {}, 0
        for m in self.modalities:
            ps = self.params[m]
            gm = [g if g is not None else torch.zeros_like(p) for g, p in zip(g_mm[k:k + len(ps)], ps)]
            gu = [g if g is not None else torch.zeros_like(p) for g, p in zip(g_uni[k:k + len(ps)], ps)]
            k += len(ps)
            vm, vu = torch.cat([g.flatten() for g in gm]), torch.cat([g.flatten() for g in gu])
            cos = float(F.cosine_similarity(vm, vu, dim=0, eps=1e-12))
            wm, wu = (0.5, 0.5) if cos > 0 else min_norm_weights(vm, vu)
            d[f"cos/{m}"], d[f"w_mm/{m}"] = cos, wm
            for p, a, b in zip(ps, gm, gu):
                if p.grad is None:
                    continue
                new = 2 * wm * a + 2 * wu * b
                nn_, tn = new.norm(), p.grad.norm()
                scale = torch.where(nn_ > 0, (tn / nn_.clamp_min(_EPS)).clamp_min(1.0), torch.ones_like(tn))
                p.grad.copy_(new * scale * self.gamma)
        self._diag = d
        return True

    def after_backward(self, batch, out, terms):
        d = dict(self._diag)
        d.update(self.grad_norms())
        return _floats(d)


# ----------------------------------------------------------------------------- InfoReg
class InfoReg(_EncoderRegulator):
    """InfoReg (Huang et al., CVPR 2025), as in GeWu-Lab/InfoReg_CVPR2025 main.py.

    Prime learning window: per epoch the Fisher trace of each encoder (sum over its weight
    tensors of the mean accumulated squared gradient); with the list padded by ``window``
    zeros, k = (mean of the last ``window`` traces - mean of the ``window`` before, shifted by
    one) / the first; the window is open while k_d > ``threshold`` (0.04) for the dominant
    modality d (larger summed true-class score s_m). Inside it:
        beta = beta_scale * exp(tanh(s_d - s_w))     (summed scores, as in the code: it saturates)
        g_d <- g_d + beta * (theta_d - theta_d,0)     (theta_0: start of the epoch; no projection)
    With the code's window of 10 epochs and zero padding, a run of <= 10 epochs stays inside
    the window: say so when you use short runs.
    """

    name = "inforeg"

    def __init__(self, beta_scale: float = 0.95, threshold: float = 0.04, window: int = 10, modalities=None,
                 source: str = "heads", seed: int = 0):
        super().__init__(modalities, source, seed)
        self.beta_scale = _num("beta_scale", beta_scale)
        self.threshold = _num("threshold", threshold, None)
        self.window = int(_num("window", window, 1))

    def attach(self, model, trainer):
        super().attach(model, trainer)
        self.traces = {m: [0.0] * self.window for m in self.modalities}
        self._fim = {m: 0.0 for m in self.modalities}

    def growth(self, m: str) -> float:
        L, W = self.traces[m], self.window
        tr1, tr2 = sum(L[-W:]) / W, sum(L[-W - 1:-1]) / W
        return (tr1 - tr2) / tr1 if tr1 > 0 else math.inf

    def on_epoch_start(self, epoch, n_epochs):
        super().on_epoch_start(epoch, n_epochs)
        self.snapshot()
        self.k = {m: self.growth(m) for m in self.modalities}
        self._fim = {m: torch.zeros(()) for m in self.modalities}

    def after_backward(self, batch, out, terms):
        probs = self.true_class_probs(out, batch)
        s = dict(zip(self.modalities, torch.stack([probs[m].sum() for m in self.modalities]).tolist()))
        dom = max(self.modalities, key=lambda m: s[m])
        weak = min(self.modalities, key=lambda m: s[m])
        open_ = self.k[dom] > self.threshold
        beta = self.beta_scale * math.exp(math.tanh(s[dom] - s[weak])) if open_ and dom != weak else 0.0
        d = {f"score/{m}": v for m, v in s.items()}
        d.update({"window": float(open_), "beta": beta, "dominant": float(self.modalities.index(dom))})
        d.update({f"k/{m}": min(self.k[m], 1e6) for m in self.modalities})
        d.update(self.grad_norms("gnorm_raw"))
        if beta > 0:
            for p, p0 in zip(self.params[dom], self.theta0[dom]):
                if p.grad is not None:
                    p.grad.add_(p.detach() - p0, alpha=beta)
        for m in self.modalities:  # Fisher trace, after the modification (as in the code)
            fs = [p.grad.detach().float().pow(2).mean() for p in self.params[m] if p.grad is not None and p.ndim >= 2]
            if fs:
                self._fim[m] = self._fim[m].to(fs[0].device) + torch.stack(fs).sum()
        d.update(self.grad_norms())
        d.update(self.drift())
        return _floats(d)

    def on_epoch_end(self, epoch):
        tr = {m: float(v) for m, v in self._fim.items()}
        for m in self.modalities:
            self.traces[m].append(tr[m])
        return {f"fim/{m}": v for m, v in tr.items()}


# ------------------------------------------------------------------------------ RedReg
class RedReg(_EncoderRegulator):
    """RedReg (arXiv 2511.13755), adaptive redundancy regulation, default = the public code
    (xia-zhe/RedReg main_RedReg.py). One step, in the code's order:

    0. modality dropout: p_e falls linearly p_drop[0] -> p_drop[1] over the first
       ``drop_phase`` of the epochs; with prob p_e/2 all of one modality of the batch is zeroed.
    1. c_m = batch mean of softmax(head_m(h_m))[y]                       (confidence)
    2. S_m = (mean c_m over the last W steps - mean over the W before, shifted by one)
             / |that previous mean|; 1 until W+1 steps are known         (effective gain growth)
    3. red_m = mean(phi(x+s e1) - phi(x+s e2))^2 / mean((x+s e1) - (x+s e2))^2, encoder in
       eval mode, no grad; red~_m = red_m / EMA_0.9(red_m)               (redundancy)
    4. r_m = red~_m - gamma max(S_m, 0); trigger when r_d > R for the dominant d (larger c)
    5. beta_d = exp(beta_scale tanh(c_d - c_w))
    6. gate = 1 if rho = mean_i cos(h_a,i, h_v,i) > tau(e) = tau0 + (tau1 - tau0) e/(E-1)
    7. per parameter tensor of the dominant encoder: Delta = theta - theta_0 (start of epoch),
       Delta_perp = Delta - <Delta, g>/(||g||^2 + 1e-12) g,  g <- g + beta_d gate Delta_perp.
    Histories and the EMA restart every epoch (they live inside train_epoch in the code).

    Options (each flips one thing): ``projection`` "code" (7.), "none" (InfoReg's plain
    pull-back g += beta gate Delta), "paper" (our reading of the paper's text: the dominant
    encoder's gradient keeps its component along the fused-loss gradient g_mm and its
    orthogonal component is divided by beta: g <- g - gate (1 - 1/beta) P_perp(g_mm) g);
    ``normalize_red=False`` (trigger on raw red_m with a tunable ``R``); ``monitor=False``
    (trigger always on); ``gate=False``; ``dropout=False``; ``gamma``.
    """

    name = "redreg"

    def __init__(self, R: float = 0.15, gamma: float = 0.6, window: int = 10, sigma: float = 0.03,
                 ema: float = 0.9, beta_scale: float = 0.9, tau: tuple[float, float] = (0.2, 0.5),
                 p_drop: tuple[float, float] = (0.6, 0.1), drop_phase: float = 0.3,
                 projection: str = "code", normalize_red: bool = True, monitor: bool = True,
                 gate: bool = True, dropout: bool = True, modalities=None, source: str = "heads", seed: int = 0):
        super().__init__(modalities, source, seed)
        try:
            self.R = float(R)
        except (TypeError, ValueError):
            raise TypeError(f"R must be a number, got {R!r}") from None
        if math.isnan(self.R):
            raise ValueError("R must be a number, got nan")
        self.gamma = _num("gamma", gamma)
        self.W = int(_num("window", window, 1))
        self.sigma = _num("sigma", sigma, 0.0, strict=True)
        self.ema = _num("ema", ema, 0.0, 1.0)
        self.beta_scale = _num("beta_scale", beta_scale)
        if len(tuple(tau)) != 2:
            raise ValueError(f"tau must be (start, end), got {tau!r}")
        self.tau = (_num("tau[0]", tau[0], -1.0, 1.0), _num("tau[1]", tau[1], -1.0, 1.0))
        if len(tuple(p_drop)) != 2:
            raise ValueError(f"p_drop must be (start, end), got {p_drop!r}")
        self.p_drop = (_num("p_drop[0]", p_drop[0], 0.0, 1.0), _num("p_drop[1]", p_drop[1], 0.0, 1.0))
        self.drop_phase = _num("drop_phase", drop_phase, 0.0, 1.0, strict=True)
        if projection not in ("code", "paper", "none"):
            raise ValueError(f"projection must be 'code', 'paper' or 'none', got {projection!r}")
        self.projection = projection
        self.normalize_red, self.use_monitor, self.use_gate, self.use_dropout = \
            bool(normalize_red), bool(monitor), bool(gate), bool(dropout)
        self._state: dict = {}

    # -- epoch bookkeeping -------------------------------------------------------------
    def on_epoch_start(self, epoch, n_epochs):
        super().on_epoch_start(epoch, n_epochs)
        self.snapshot()
        self.hist = {m: [] for m in self.modalities}
        self.ema_red = {m: 0.0 for m in self.modalities}
        E = max(int(n_epochs), 1)
        self.tau_e = self.tau[0] + (self.tau[1] - self.tau[0]) * epoch / max(1, E - 1)
        phase = max(1, int(E * self.drop_phase))
        self.p_e = self.p_drop[0] + (self.p_drop[1] - self.p_drop[0]) * min(1.0, epoch / phase)

    def growth(self, m: str) -> float:
        h, W = self.hist[m], self.W
        if len(h) <= W:
            return 1.0
        s1, s2 = sum(h[-W:]) / W, sum(h[-W - 1:-1]) / W
        return (s1 - s2) / (abs(s2) + _EPS)

    # -- 0. modality dropout ---------------------------------------------------------
    def prepare_batch(self, batch, epoch):
        self._clean = batch
        self._dropped = None
        if not self.use_dropout or self.p_e <= 0:
            return batch
        u = float(torch.rand((), generator=self.gen, device=self.gen.device))
        M = len(self.modalities)
        k = int(u // (self.p_e / M)) if u < self.p_e else None   # with M = 2: u < p/2 -> first, < p -> second
        if k is None:
            return batch
        m = self.modalities[min(k, M - 1)]
        self._dropped = m
        return batch.with_x({**batch.x, m: torch.zeros_like(batch.x[m])})

    # -- 1..6. the monitor ---------------------------------------------------------------
    @torch.no_grad()
    def redundancy(self, batch) -> dict[str, float]:
        res = {}
        encs = [self.model.encoders[m] for m in self.modalities]
        with _temp_eval(encs):
            for m in self.modalities:
                x = batch.x[m].float()
                e1 = torch.randn(x.shape, generator=self.gen, device=x.device) * self.sigma
                e2 = torch.randn(x.shape, generator=self.gen, device=x.device) * self.sigma
                x1, x2 = x + e1, x + e2
                z = self.model.encoders[m](torch.cat([x1, x2]).to(batch.x[m].dtype)).float()  # one pass, both copies
                z1, z2 = z[:len(x)], z[len(x):]
                num = (z1 - z2).pow(2).mean()
                den = (x1 - x2).pow(2).mean() + _EPS
                res[m] = num / den
        vals = torch.stack([res[m] for m in self.modalities]).tolist()
        return dict(zip(self.modalities, vals))

    def monitor(self, batch, out) -> dict:
        mods = self.modalities
        probs = self.true_class_probs(out, batch)
        c = dict(zip(mods, torch.stack([probs[m].mean() for m in mods]).tolist()))
        for m in mods:
            self.hist[m].append(c[m])
        S = {m: self.growth(m) for m in mods}
        red = self.redundancy(self._clean)
        red_t = {}
        for m in mods:
            self.ema_red[m] = self.ema * self.ema_red[m] + (1 - self.ema) * red[m]
            red_t[m] = red[m] / (self.ema_red[m] + _EPS) if self.normalize_red else red[m]
        r = {m: red_t[m] - self.gamma * max(S[m], 0.0) for m in mods}
        dom = max(mods, key=lambda m: c[m])
        weak = min(mods, key=lambda m: c[m])
        dominant = c[dom] > c[weak]                  # the code's strict comparison
        trigger = dominant and (r[dom] > self.R or not self.use_monitor)
        beta = math.exp(self.beta_scale * math.tanh(max(c[dom] - c[weak], 0.0))) if trigger else 0.0
        # 6. co-information gate: mean cosine between the dominant's features and the others'
        with torch.no_grad():
            h = {m: out.features[m].detach().float().flatten(1) for m in mods}
            dims = {m: v.shape[1] for m, v in h.items()}
            if len(set(dims.values())) == 1:
                others = [m for m in mods if m != dom]
                rho = torch.stack([F.cosine_similarity(h[dom], h[o], dim=1, eps=1e-8).mean() for o in others]).mean().item()
            elif self.use_gate:
                raise ValueError(f"RedReg's co-information gate compares features of equal size; got {dims} "
                                 f"(use gate=False or encoders with the same output size)")
            else:
                rho = float("nan")
        g = (1.0 if rho > self.tau_e else 0.0) if self.use_gate else 1.0
        st = dict(c=c, S=S, red=red, red_t=red_t, r=r, dom=dom, weak=weak, trigger=trigger, beta=beta,
                  rho=rho, gate=g, strength=beta * g)
        return st

    # -- 7. the pull-back ----------------------------------------------------------------
    def backward(self, loss, terms, batch, out):
        self._state = st = self.monitor(batch, out)
        self._g_mm = None
        if self.projection == "paper" and st["strength"] > 0:
            if "task" not in terms:
                raise KeyError("RedReg(projection='paper') needs the fused loss term 'task' from model.loss_terms")
            ps = self.params[st["dom"]]
            gm = torch.autograd.grad(terms["task"] * self.model.loss_weights().get("task", 1.0), ps,
                                     retain_graph=True, allow_unused=True)
            self._g_mm = [g if g is not None else torch.zeros_like(p) for g, p in zip(gm, ps)]
        return False

    @staticmethod
    def _cos(a: list[Tensor], b: list[Tensor]) -> Tensor:
        dot = sum((x.float() * y.float()).sum() for x, y in zip(a, b))
        na = torch.sqrt(sum(x.float().pow(2).sum() for x in a))
        nb = torch.sqrt(sum(y.float().pow(2).sum() for y in b))
        return dot / (na * nb).clamp_min(_EPS)

    def after_backward(self, batch, out, terms):
        st = self._state
        mods, dom = self.modalities, st["dom"]
        d: dict = {}
        for m in mods:
            d[f"conf/{m}"], d[f"S/{m}"], d[f"red/{m}"] = st["c"][m], st["S"][m], st["red"][m]
            d[f"red_norm/{m}"], d[f"r/{m}"] = st["red_t"][m], st["r"][m]
        d.update(dict(trigger=float(st["trigger"]), beta=st["beta"], gate=st["gate"], rho=st["rho"],
                      tau=self.tau_e, fired=float(st["strength"] > 0), dominant=float(mods.index(dom)),
                      p_drop=self.p_e if self.use_dropout else 0.0))
        for m in mods:
            d[f"drop/{m}"] = float(self._dropped == m)
        d.update(self.grad_norms("gnorm_raw"))
        ps = self.params[dom]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in ps]
        deltas = [p.detach() - p0 for p, p0 in zip(ps, self.theta0[dom])]
        perps = [project_out(dl, g) for dl, g in zip(deltas, grads)]
        d["cos_before"] = self._cos(deltas, grads)
        d["cos_after"] = self._cos(perps, grads) if self.projection == "code" else d["cos_before"]
        s = st["strength"]
        if s > 0:
            if self.projection == "paper":
                shrink = 1.0 - 1.0 / st["beta"]
                for p, gm in zip(ps, self._g_mm):
                    if p.grad is not None:
                        p.grad.sub_(project_out(p.grad.detach().clone(), gm), alpha=st["gate"] * shrink)
            else:
                add = perps if self.projection == "code" else deltas
                for p, a in zip(ps, add):
                    if p.grad is not None:
                        p.grad.add_(a, alpha=s)
        d.update(self.grad_norms())
        d.update(self.drift())
        return _floats(d)


REGULATORS = {"joint": GradMonitor, "ogm_ge": OGMGE, "agm": AGM, "pmr": PMR, "mmpareto": MMPareto,
              "inforeg": InfoReg, "redreg": RedReg}


def make_regulator(name: str, **kwargs) -> Regulator:
    """A regulator by name: one of ``REGULATORS`` ("none" gives the base do-nothing one)."""
    if name in ("none", None):
        return Regulator()
    if name not in REGULATORS:
        raise KeyError(f"unknown regulator {name!r}; choose one of {['none', *REGULATORS]}")
    return REGULATORS[name](**kwargs)


class GradScale(_EncoderRegulator):
    """Multiply each named encoder's gradient by a constant (OGM-GE's scaling without its
    schedule): the probe that shows why Adam blunts gradient scaling and SGD does not."""

    name = "grad_scale"

    def __init__(self, scales: dict[str, float]):
        if not isinstance(scales, dict) or not scales:
            raise ValueError("scales must be a non-empty dict {modality: factor}")
        self.scales = {str(m): _num(f"scales[{m!r}]", v) for m, v in scales.items()}
        super().__init__(None, "auto", 0)

    def attach(self, model, trainer):
        super().attach(model, trainer)
        unknown = [m for m in self.scales if m not in self.modalities]
        if unknown:
            raise KeyError(f"unknown modality {unknown[0]!r} in scales; the model's encoders are {list(self.modalities)}")

    def after_backward(self, batch, out, terms):
        for m, k in self.scales.items():
            if k != 1.0:
                for p in self.params[m]:
                    if p.grad is not None:
                        p.grad.mul_(k)
        return _floats(self.grad_norms())


REGULATORS["grad_scale"] = GradScale
__all__ += ["GradScale"]
