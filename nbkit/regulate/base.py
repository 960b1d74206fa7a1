"""The `Regulator` protocol and the pieces every balance method shares (encoder
parameters, per-modality logits, gradient norms, theta_0 snapshots), plus the two
probes that change nothing or one constant: `GradMonitor` (joint training that logs)
and `GradScale`."""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_int, check_number
from ..data.batch import Batch


class Regulator:
    """The do-nothing regulator: subclasses override the hooks they need."""

    name = "none"

    def __init__(self):
        self.weights: dict[str, float] = {}
        self.model = None
        self.trainer = None

    def attach(self, model, trainer) -> None:
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


_EPS = 1e-12


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


def encoder_params(reg, model, wanted=None, minimum: int = 1) -> tuple[tuple, dict]:
    """The modalities a regulator acts on (``wanted``, default all of ``model.encoders``) and
    each one's trainable encoder parameters; errors name the regulator and the model's encoders."""
    name = type(reg).__name__
    if not hasattr(model, "encoders"):
        raise TypeError(f"{name} needs a model with named encoders (model.encoders)")
    names = tuple(model.encoders.keys())
    mods = names if wanted is None else tuple(wanted)
    unknown = [m for m in mods if m not in names]
    if unknown:
        raise KeyError(f"unknown modality {unknown[0]!r} for {name}; the model's encoders are {list(names)}")
    if len(mods) < minimum:
        raise ValueError(f"{name} balances >= {minimum} modalities, got {list(mods)}")
    return mods, {m: [p for p in model.encoders[m].parameters() if p.requires_grad] for m in mods}


class _EncoderRegulator(Regulator):
    """Helpers every balance method shares: the encoders' parameters, per-modality logits
    (auxiliary heads, or the fused linear head split into per-modality blocks), gradient
    norms and the parameter snapshot theta_0 at the start of each epoch."""

    name = "encoder"

    def __init__(self, modalities: Sequence[str] | None = None, source: str = "auto", seed: int = 0):
        super().__init__()
        self.source = check_choice("source", source, ("auto", "heads", "split"))
        if modalities is not None and (isinstance(modalities, (str, bytes)) or not hasattr(modalities, "__iter__")):
            raise TypeError(f"modalities must be a list of modality names (or None for all), got {modalities!r}")
        self._modalities = None if modalities is None else tuple(modalities)
        self.seed = check_int("seed", seed)
        self.epoch, self.n_epochs = 0, 1
        self.theta0: dict[str, list[Tensor]] = {}

    # -- wiring --------------------------------------------------------------------
    def attach(self, model, trainer) -> None:
        super().attach(model, trainer)
        self.modalities, self.params = encoder_params(self, model, self._modalities, minimum=2)
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


class GradScale(_EncoderRegulator):
    """Multiply each named encoder's gradient by a constant (OGM-GE's scaling without its
    schedule): the probe that shows why Adam blunts gradient scaling and SGD does not."""

    name = "grad_scale"

    def __init__(self, scales: dict[str, float]):
        if not isinstance(scales, dict) or not scales:
            raise ValueError("scales must be a non-empty dict {modality: factor}")
        self.scales = {str(m): check_number(f"scales[{m!r}]", v, 0.0) for m, v in scales.items()}
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
