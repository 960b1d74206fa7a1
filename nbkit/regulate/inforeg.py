"""InfoReg (CVPR 2025): regulating the dominant encoder inside its prime learning window."""
from __future__ import annotations

import math

import torch

from .._checks import check_int, check_number
from .base import _EncoderRegulator, _floats


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
        self.beta_scale = check_number("beta_scale", beta_scale, 0.0)
        self.threshold = check_number("threshold", threshold)
        self.window = check_int("window", window, 1)

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
