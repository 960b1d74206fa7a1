"""MMPareto (Wei and Hu, ICML 2024): Pareto integration of multimodal and unimodal gradients.

Method notes: docs/methods/balance_baselines.md (section MMPareto).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_number
from .base import _EPS, _EncoderRegulator, _floats


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
        self.gamma = check_number("gamma", gamma, 0.0)
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
