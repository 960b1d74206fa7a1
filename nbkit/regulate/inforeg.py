"""InfoReg (Huang et al., CVPR 2025): regulating the dominant encoder inside its prime learning window.

Method notes: docs/methods/balance_baselines.md (section InfoReg).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._checks import check_int, check_number
from .base import _EncoderRegulator, _floats


class InfoReg(_EncoderRegulator):
    """InfoReg (Huang et al., CVPR 2025) as in GeWu-Lab/InfoReg_CVPR2025 main.py (two
    modalities; the reference's audio is the model's FIRST encoder, its visual the second,
    since its fused head reads [audio; visual]):

    - scores s_m = sum_i softmax(logits_m)_i[y_i], logits_m from the fused linear head split
      into per-modality blocks (bias / 2) (``source="split"``, reference code);
    - loss (reference code): CE(fused) + CE(split_1) + CE(split_2); the split-head terms are
      added by this regulator as the loss term ``"split_uni"`` (weight 1; ``split_losses``);
    - prime learning window: at each epoch start k = (mean of the last ``window`` Fisher
      traces - mean of the ``window`` before, shifted by one) / the first, over the trace list
      of ONE encoder, padded with ``window`` zeros; k = 1 in epoch 0; open while
      k > ``threshold`` = 0.05. The trace of an epoch: sum over the encoder's weight tensors
      of the mean of g^2 accumulated over the epoch's steps, after the pull-back (reference
      code). ``trace_of=0``: the reference's audio encoder (the first one);
    - inside the window the dominant modality d (strictly larger score) gets
      beta_d = beta_scale_d * exp(tanh(s_d - s_w)) with ``beta_scale`` = (0.95, 0.1): 0.95 when
      the first modality dominates, 0.1 when the second does (reference code), and
      g <- g + beta_d (theta - theta_0) on every parameter of its encoder (theta_0: start of
      the epoch). The scores are sums over the batch, so tanh saturates (reference code).

    Named generalisations (ours): ``beta_scale`` a single number (the same for every modality)
    or a {modality: scale} dict; ``trace_of="dominant"`` (the window of the modality that
    dominates this step); any number of modalities with those two. ``source="heads"`` with
    ``split_losses=False`` is nbkit's earlier auxiliary-head variant. The reference selects
    Conv2d/Linear weights for the trace; ours: every encoder tensor with ndim >= 2. During the
    first ``window`` epochs the zero padding makes k the newest trace's share of all traces so
    far, so the window closes early only once that encoder's gradient has collapsed.
    """

    name = "inforeg"

    def __init__(self, beta_scale=(0.95, 0.1), threshold: float = 0.05, window: int = 10, trace_of=0,
                 split_losses: bool = True, modalities=None, source: str = "split", seed: int = 0):
        super().__init__(modalities, source, seed)
        if isinstance(beta_scale, dict):
            if not beta_scale:
                raise ValueError("beta_scale must be a number, a pair or a non-empty {modality: scale} dict, got {}")
            self._beta = {str(m): check_number(f"beta_scale[{m!r}]", v, 0.0) for m, v in beta_scale.items()}
        elif isinstance(beta_scale, (tuple, list)):
            self._beta = tuple(check_number(f"beta_scale[{i}]", v, 0.0) for i, v in enumerate(beta_scale))
            if not self._beta:
                raise ValueError("beta_scale must be a number, a pair or a non-empty {modality: scale} dict, got ()")
        else:
            self._beta = check_number("beta_scale", beta_scale, 0.0)
        self.threshold = check_number("threshold", threshold)
        self.window = check_int("window", window, 1)
        if isinstance(trace_of, str) and trace_of == "dominant":
            self.trace_of = "dominant"
        elif isinstance(trace_of, str):
            self.trace_of = trace_of                       # a modality name, checked at attach
        else:
            self.trace_of = check_int("trace_of", trace_of, 0)
        self.split_losses = bool(split_losses)
        self.weights = {"split_uni": 1.0} if self.split_losses else {}

    def attach(self, model, trainer):
        super().attach(model, trainer)
        mods = self.modalities
        if isinstance(self._beta, tuple):
            if len(self._beta) != len(mods):
                raise ValueError(f"beta_scale must give one scale per modality {list(mods)} (the reference's pair "
                                 f"(0.95, 0.1) is for two), got {self._beta}; or pass one number")
            self.beta_scale = dict(zip(mods, self._beta))
        elif isinstance(self._beta, dict):
            unknown = [m for m in self._beta if m not in mods]
            missing = [m for m in mods if m not in self._beta]
            if unknown or missing:
                raise KeyError(f"beta_scale must name exactly the modalities {list(mods)}, got {list(self._beta)}")
            self.beta_scale = dict(self._beta)
        else:
            self.beta_scale = {m: self._beta for m in mods}
        if self.trace_of != "dominant":
            if isinstance(self.trace_of, int):
                if self.trace_of >= len(mods):
                    raise ValueError(f"trace_of must be 'dominant', a modality or an index < {len(mods)}, "
                                     f"got {self.trace_of}")
                self.trace_modality = mods[self.trace_of]
            elif self.trace_of in mods:
                self.trace_modality = self.trace_of
            else:
                raise KeyError(f"unknown modality {self.trace_of!r} for trace_of; the modalities are {list(mods)}")
        self.traces = {m: [0.0] * self.window for m in mods}
        self._fim = {m: torch.zeros(()) for m in mods}
        self.k = {m: 1.0 for m in mods}

    def growth(self, m: str) -> float:
        """k of modality m from its trace list (padded with ``window`` zeros): 1 before any
        epoch is recorded (the reference's epoch 0); inf when the recent traces are all 0."""
        L, W = self.traces[m], self.window
        if len(L) <= W:
            return 1.0
        tr1, tr2 = sum(L[-W:]) / W, sum(L[-W - 1:-1]) / W
        return (tr1 - tr2) / tr1 if tr1 > 0 else math.inf

    def on_epoch_start(self, epoch, n_epochs):
        super().on_epoch_start(epoch, n_epochs)
        self.snapshot()
        self.k = {m: self.growth(m) for m in self.modalities}
        self._fim = {m: torch.zeros(()) for m in self.modalities}

    def extra_terms(self, batch, out):
        if not self.split_losses:
            return {}
        lg = self.unimodal_logits(out, batch)
        return {"split_uni": sum(F.cross_entropy(lg[m].float(), batch.y) for m in self.modalities)}

    def after_backward(self, batch, out, terms):
        probs = self.true_class_probs(out, batch)
        s = dict(zip(self.modalities, torch.stack([probs[m].sum() for m in self.modalities]).tolist()))
        dom = max(self.modalities, key=lambda m: s[m])
        weak = min(self.modalities, key=lambda m: s[m])
        k = self.k[dom] if self.trace_of == "dominant" else self.k[self.trace_modality]
        open_ = k > self.threshold
        beta = self.beta_scale[dom] * math.exp(math.tanh(s[dom] - s[weak])) if open_ and s[dom] > s[weak] else 0.0
        d = {f"score/{m}": v for m, v in s.items()}
        d.update({"window": float(open_), "beta": beta, "dominant": float(self.modalities.index(dom)),
                  "k": min(k, 1e6)})
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
