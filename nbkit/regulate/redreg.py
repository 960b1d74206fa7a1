"""RedReg (arXiv 2511.13755): adaptive redundancy regulation (method notes: docs/methods/redreg.md)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_int, check_number, check_pair
from ..nn import eval_mode
from .base import _EPS, _EncoderRegulator, _floats, project_out


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
        self.R = check_number("R", R, finite=False)   # R = inf: a trigger that never fires
        self.gamma = check_number("gamma", gamma, 0.0)
        self.W = check_int("window", window, 1)
        self.sigma = check_number("sigma", sigma, 0.0, lo_open=True)
        self.ema = check_number("ema", ema, 0.0, 1.0)
        self.beta_scale = check_number("beta_scale", beta_scale, 0.0)
        self.tau = check_pair("tau", tau, -1.0, 1.0)
        self.p_drop = check_pair("p_drop", p_drop, 0.0, 1.0)
        self.drop_phase = check_number("drop_phase", drop_phase, 0.0, 1.0, lo_open=True)
        self.projection = check_choice("projection", projection, ("code", "paper", "none"))
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
        with eval_mode(*encs):
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
