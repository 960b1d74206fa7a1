"""MD (modality decoupling, RSC-MD arXiv 2511.15433) as a regulator, the suppression ratio
rho_m, and a monitor that logs rho_m during training (docs/methods/rscmd.md). Our rebuild:
the paper's code was never published and its equations were not retrievable.

Both MD variants act on how each encoder's gradient is formed, for any model that names
its encoders and handles a missing modality through ``batch.present`` (every nbkit model):

- variant "A" (stop-gradient into fusion): encoder m gets the gradient of every loss term
  EXCEPT the fused ones (``fused_terms``, default the task loss); the fusion part and the
  heads get the gradient of the whole loss. Equal to detaching f_m where it enters fusion,
  so each encoder learns only from its own auxiliary loss (RSC), and not at all without one.
- variant "B" (gradient mapping): encoder m's share of the fused loss gradient is replaced
  by the gradient the same model gives encoder m when every other modality is absent
  (`partner_absent`: inputs zeroed, ``present`` False, so their features are zero), with
  the other parameters untouched: dL_fuse/dtheta_m is taken at (f_m, 0).

`RSCMD` is both at once (RSC's auxiliary heads + MD). `nbkit.models.RSCMDDetector` has the
same two variants as config options (``md="A" | "B"``), cheaper (no extra forward pass);
tests/test_rscmd.py checks that the regulator and the option give the same gradients.

The suppression ratio (our measurement of the paper's statement that unimodal gradients are
suppressed under fusion): on the same batch and weights,

    rho_m = || dL_fuse(batch) / dtheta_m || / || dL_fuse(batch with only m present) / dtheta_m ||

the denominator being the gradient unimodal training of encoder m would see with the same
head. For the logistic toy it is exactly (1 - sigma(z)) / (1 - sigma(z_m)).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .._checks import check_choice, check_int
from ..data.batch import Batch
from .base import Regulator, _floats
from .rsc import RSC

__all__ = ["MD", "RSCMD", "SuppressionMonitor", "partner_absent", "suppression_ratios"]


def partner_absent(batch: Batch, m: str) -> Batch:
    """The same samples with only modality ``m``: every other modality's input zeroed and
    marked absent in ``present`` (so a model zeroes its features)."""
    batch.index(m)
    x = {k: (v if k == m else torch.zeros_like(v)) for k, v in batch.x.items()}
    present = torch.zeros_like(batch.present)
    present[:, batch.index(m)] = batch.present[:, batch.index(m)]
    return batch.with_x(x, present)


def _fused_loss(model, batch: Batch, fused_terms: Sequence[str], out=None) -> Tensor:
    out = model(batch) if out is None else out
    terms = model.loss_terms(batch, out)
    missing = [k for k in fused_terms if k not in terms]
    if missing:
        raise KeyError(f"fused_terms {missing} are not among {type(model).__name__}'s loss terms {sorted(terms)}")
    w = model.loss_weights()
    return sum(w.get(k, 1.0) * terms[k] for k in fused_terms)


def _grads(loss: Tensor, params: list, retain: bool = False) -> list[Tensor]:
    if not loss.requires_grad:
        return [torch.zeros_like(p) for p in params]
    gs = torch.autograd.grad(loss, params, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)]


def _norm(gs: list[Tensor]) -> Tensor:
    return torch.sqrt(sum(g.detach().float().pow(2).sum() for g in gs)) if gs else torch.zeros(())


class _keep_buffers:
    """Run extra forward passes without side effects on the model's buffers (running means)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.saved = {k: v.detach().clone() for k, v in self.model.named_buffers()}

    def __exit__(self, *exc):
        with torch.no_grad():
            for k, v in self.model.named_buffers():
                v.copy_(self.saved[k])


def suppression_ratios(model, batch: Batch, fused_terms: Sequence[str] = ("task",),
                       modalities: Sequence[str] | None = None) -> dict[str, float]:
    """rho_m, ||g_fused|| and ||g_alone|| per encoder on one batch (module docstring): the
    fused loss's gradient on encoder m's parameters over the gradient of the same loss with
    every other modality absent. Same weights, same batch; the model's mode is kept and its
    buffers are restored. Returns {"rho/<m>", "gnorm_fused/<m>", "gnorm_alone/<m>"}."""
    if not hasattr(model, "encoders"):
        raise TypeError(f"suppression_ratios needs a model with named encoders, got {type(model).__name__}")
    mods = tuple(model.encoders.keys()) if modalities is None else tuple(modalities)
    for m in mods:
        check_choice("modalities[i]", m, tuple(model.encoders.keys()))
    res: dict[str, Tensor] = {}
    with _keep_buffers(model), torch.enable_grad():
        fused = _fused_loss(model, batch, fused_terms)
        params = {m: [p for p in model.encoders[m].parameters() if p.requires_grad] for m in mods}
        allp = [p for m in mods for p in params[m]]
        g_all = _grads(fused, allp)
        i = 0
        for m in mods:
            n = len(params[m])
            gf = g_all[i:i + n]
            i += n
            ga = _grads(_fused_loss(model, partner_absent(batch, m), fused_terms), params[m])
            nf, na = _norm(gf), _norm(ga)
            res[f"gnorm_fused/{m}"], res[f"gnorm_alone/{m}"] = nf, na
            res[f"rho/{m}"] = nf / na if bool(na > 0) else torch.tensor(float("nan"))
    return _floats(res)


class MD(RSC):
    """Modality decoupling (module docstring) as a regulator, optionally with RSC's heads.

    variant:     "A" (stop-gradient into fusion, default) or "B" (gradient mapping).
    rsc:         also add RSC's auxiliary unimodal heads and losses (`RSC`).
    fused_terms: the model's loss terms that form the fused loss L_fuse (default "task").
    """

    name = "md"

    def __init__(self, variant: str = "A", rsc: bool = False, lambda_aux: float = 1.0,
                 fused_terms: Sequence[str] = ("task",), modalities: Sequence[str] | None = None):
        super().__init__(lambda_aux=lambda_aux, modalities=modalities, rsc=rsc)
        self.variant = check_choice("variant", variant, ("A", "B"))
        if isinstance(fused_terms, str) or not fused_terms:
            raise ValueError(f"fused_terms must be a non-empty list of loss-term names, got {fused_terms!r}")
        self.fused_terms = tuple(str(t) for t in fused_terms)

    def attach(self, model, trainer) -> None:
        super().attach(model, trainer)
        own = getattr(getattr(model, "config", None), "md", "none")
        if own not in (None, "none"):
            raise ValueError(f"{type(model).__name__} already decouples (config md={own!r}); use the model option "
                             f"or the {type(self).__name__} regulator, not both")
        if len(self.modalities) < 2:
            raise ValueError(f"{type(self).__name__} decouples >= 2 modalities, got {list(self.modalities)}")

    def _weights(self) -> dict[str, float]:
        tr = self.trainer
        return tr.loss_weights() if tr is not None and hasattr(tr, "loss_weights") else \
            {**self.model.loss_weights(), **self.weights}

    def backward(self, loss, terms, batch, out) -> bool:
        model = self.model
        w = self._weights()
        missing = [k for k in self.fused_terms if k not in terms]
        if missing:
            raise KeyError(f"fused_terms {missing} are not among the loss terms {sorted(terms)}")
        rest = [w.get(k, 1.0) * v for k, v in terms.items() if k not in self.fused_terms and w.get(k, 1.0) != 0]
        enc = [p for m in self.modalities for p in self.params[m]]
        enc_ids = {id(p) for p in enc}
        other = [p for p in model.parameters() if p.requires_grad and id(p) not in enc_ids]
        if self.heads is not None:
            other += [p for p in self.heads.parameters() if p.requires_grad]
        g_other = _grads(loss, other, retain=True)
        rest_loss = sum(rest) if rest else loss.detach() * 0
        g_enc = _grads(rest_loss, enc, retain=False)
        if self.variant == "B":
            i = 0
            for m in self.modalities:
                n = len(self.params[m])
                with _keep_buffers(model):
                    gm = _grads(_fused_loss(model, partner_absent(batch, m), self.fused_terms), self.params[m])
                g_enc[i:i + n] = [a + b for a, b in zip(g_enc[i:i + n], gm)]
                i += n
        for p, g in zip(other + enc, g_other + g_enc):
            p.grad = g.detach() if p.grad is None else p.grad + g.detach()
        return True


class RSCMD(MD):
    """RSC + MD together (the paper's full method, our rebuild): auxiliary unimodal heads and
    losses, and each encoder decoupled from the fused loss (variant "A" by default)."""

    name = "rscmd"

    def __init__(self, variant: str = "A", rsc: bool = True, **kwargs):
        super().__init__(variant=variant, rsc=rsc, **kwargs)


class SuppressionMonitor(Regulator):
    """Plain training that logs rho_m (`suppression_ratios`) every ``every`` steps as
    ``reg/rho/<m>``, ``reg/gnorm_fused/<m>`` and ``reg/gnorm_alone/<m>``: on the training
    batch, or on fixed ``probes`` ({name: Batch}, e.g. held-out day and night scenes) as
    ``reg/rho/<name>/<m>`` etc. It changes nothing in training: the extra passes use
    autograd.grad (the .grad fields are left alone) and the model's buffers are restored."""

    name = "suppression"

    def __init__(self, every: int = 1, fused_terms: Sequence[str] = ("task",),
                 modalities: Sequence[str] | None = None, probes: dict | None = None):
        super().__init__()
        self.every = check_int("every", every, 1)
        self.fused_terms = tuple(fused_terms)
        self._modalities = None if modalities is None else tuple(modalities)
        if probes is not None and (not isinstance(probes, dict) or not all(isinstance(b, Batch) for b in probes.values())):
            raise TypeError("probes must be a dict {name: Batch} (e.g. {'night': test[:64]})")
        self.probes = dict(probes or {})
        self._n = 0

    def attach(self, model, trainer) -> None:
        if not hasattr(model, "encoders"):
            raise TypeError("SuppressionMonitor needs a model with named encoders (model.encoders)")
        super().attach(model, trainer)
        dev = next(model.parameters()).device
        self._probes = {k: b.to(dev) for k, b in self.probes.items()}
        self._n = 0

    def after_backward(self, batch, out, terms):
        self._n += 1
        if (self._n - 1) % self.every:
            return {}
        if not self._probes:
            return suppression_ratios(self.model, batch, self.fused_terms, self._modalities)
        res = {}
        for name, b in self._probes.items():
            for k, v in suppression_ratios(self.model, b, self.fused_terms, self._modalities).items():
                kind, m = k.split("/", 1)
                res[f"{kind}/{name}/{m}"] = v
        return res
