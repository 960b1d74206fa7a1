"""SRCID: Semantic Residual Cross-modal Information Disentanglement (Huang, Wang, Xia,
ICASSP 2025, arXiv 2412.19128), with its first layer DCID (Xia et al., NeurIPS 2023) as
the one-layer case. No SRCID code is public; the same first author's code for DCID
(haihuangcode/CMG) and H-DCID (haihuangcode/TOC_H-DCID, ``model/main_model_2.py``,
``pretrain_ml.py``) shows the mechanism. docs/methods/srcid.md has the equations; every
number is marked "(paper)", "(reference code)" or "(ours)".

For each modality m with a sequence x_m [B, T_m, D_m] (all modalities paired):

  Layer 1 (DCID)
  (1) general   z_m  = Phi_m(x_m)   [B, S, d]   frame MLP + temporal conv, pooled to S steps (ours;
                                                 the reference uses a 2-layer transformer)
  (2) specific  zb_m = Psi_m(x_m)   [B, S, d_s] frame MLP, pooled to S steps (reference: linear + ReLU)
  (3) quantise  zh_m = VQ(z_m), ONE codebook shared by all modalities, EMA updates whose target
                mixes the modality's own features (1/2) with its paired modalities' (1/2 shared
                equally), straight-through gradients (reference code, "MM-EMA")
  (4) commit    L_commit = sum_m [2 mse(z_m, sg zh_m) + mean_{o!=m} mse(z_m, sg zh_o)], weight
                beta = 0.25 (reference code: 2 beta own + beta/(M-1) per paired modality)
  (5) recon     L_recon = sum_m mse(D_m(zh_m, zb_m), pool_S(x_m))   (reference: MSE; the pooled
                target is ours, because our encoders pool time to S steps)
  (6) CLUB      L_club = sum_m I_CLUB(zh_m; zb_m), estimator q(zb|zh) fitted in alternating steps
                (5 Adam steps, lr 1e-3, its own optimiser) on detached features (reference code)
  (7) cross-CPC L_cpc on the pre-quantisation z: LSTM contexts predict the other modalities'
                next step (weight 1) and their own (0.1), InfoNCE over the batch (reference code)
  Layer 2 (the semantic residual, SRCID)
  (8) on the layer-1 specific features: z2_m = Phi2_m(zb_m), zb2_m = Psi2_m(zb_m), a SECOND
      shared codebook, its own commitment, CLUB, cross-CPC, and a decoder D2_m(zh2_m, zb2_m)
      reconstructing zb_m (reference code, H-DCID).
  (9) total     L = sum of layer-1 terms + lambda_layer2 * w(t) * sum of layer-2 terms,
      lambda_layer2 = 0.3 (reference code); w(t) = 0 until the warm start fires, then 1.
  Warm start    "mi" (paper's rule): fire once an EMA of the layer-1 CLUB estimate (mean over
                modalities) has stayed below ``warm_eps`` for ``warm_patience`` consecutive steps
                (eps, K and the EMA decay are ours: the paper says "approaches 0");
                "epoch" (reference code: layer 2 from epoch 3 of 5); "off": layer 2 from the start.
  Representation for downstream use: concat(zh1_m, zh2_m) per step (paper), in Output.shared.

The pretraining is self-supervised (no labels). The Trainer needs logits, so a small monitor
head (ours) classifies each modality's DETACHED representation: its "task" term trains the
head only and never reaches the encoders (tests check it). Downstream protocols
(`nbkit.evaluate.cross_modal_generalization`) train their own classifiers on frozen codes.

Ablation switches: ``layers=1`` (DCID), ``lambda_club=0``, ``lambda_cpc=0`` (the CPC term is
then not computed and reads 0), ``cross_modal=False`` (plain per-modality EMA and commitment),
``quantizer="rvq"|"fsq"`` (the precise quantizers of the paper's comparison).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_int, check_number, check_weight
from ..data.batch import Batch
from ..losses import CLUB, CrossCPC, fit_clubs
from ..nn.quantize import QUANTIZERS, codebook_usage, make_quantizer
from .base import ModelConfig, MultimodalModel, Output

__all__ = ["SRCID", "SRCIDConfig", "WarmStartRule", "WARM_STARTS", "LAYER1_TERMS", "LAYER2_TERMS"]

WARM_STARTS = ("mi", "epoch", "off")
LAYER1_TERMS = ("recon", "commit", "club", "cpc")
LAYER2_TERMS = ("recon2", "commit2", "club2", "cpc2")


@dataclass
class SRCIDConfig(ModelConfig):
    d: int = 32                      # code dimension (paper 256; ours, CPU-sized)
    hidden: int = 64                 # encoder/decoder width (ours)
    d_specific: int = 32             # width of the specific features (ours)
    steps: int = 8                   # time steps after the encoders (ours; reference segments: 10 s)
    n_codes: int = 64                # codebook size (paper 400; ours, CPU-sized)
    quantizer: str = "vq"            # "vq" (paper), "rvq", "fsq" (the paper's comparison)
    rvq_stages: int = 4              # (spec: 4 x 400)
    fsq_levels: tuple = (5, 5, 4, 4)  # (spec: 400 implicit codes)
    layers: int = 2                  # 1 = DCID, 2 = SRCID
    cross_modal: bool = True         # MM-EMA and cross-modal commitment (reference code)
    ema_own: float = 0.5             # share of a code's EMA target from its own modality (reference code)
    decay: float = 0.99              # EMA decay (reference code)
    eps: float = 1e-5                # Laplace smoothing (reference code)
    dead_after: int = 60             # steps unused before a code is reset (reference 300; ours: short runs)
    active_window: int = 20          # "recently used" window for resets/usage (reference 100; ours)
    reset_ema: bool = False          # a dead-code reset sets the vector only (reference code); True: ours
    lambda_recon: float = 1.0        # (reference code: every term weight 1)
    lambda_commit: float = 0.25      # beta (reference code)
    lambda_club: float = 1.0         # (reference code)
    lambda_cpc: float = 1.0          # (reference code)
    lambda_layer2: float = 0.3       # layer-2 terms (reference code, pretrain_ml.py)
    club_steps: int = 5              # estimator steps per model step (reference code)
    club_lr: float = 1e-3            # (reference code, mi_lr)
    club_hidden: int = 64            # (reference 256; ours)
    cpc_context: int = 32            # LSTM context size (reference 256; ours)
    cpc_self_weight: float = 0.1     # within-modality CPC weight (reference code)
    warm_start: str = "mi"           # "mi" (paper), "epoch" (reference code), "off"
    warm_eps: float = 0.05           # nats (ours; the paper: "approaches 0")
    warm_patience: int = 20          # K consecutive steps (ours)
    warm_decay: float = 0.9          # EMA of the layer-1 CLUB estimate (ours)
    warm_min_steps: int = 20         # the MI rule cannot fire before this step (ours: an untrained
                                     # estimator reads ~0 at the start, which is not disentanglement)
    warm_epoch: int = 3              # first epoch with layer 2 under "epoch" (reference code)
    seed: int = 0                    # codebook initialisation and dead-code resets

    def __post_init__(self):
        super().__post_init__()
        for name in ("d", "hidden", "d_specific", "n_codes", "rvq_stages", "club_hidden", "cpc_context"):
            setattr(self, name, check_int(name, getattr(self, name), 1))
        self.steps = check_int("steps", self.steps, 3)
        self.layers = check_int("layers", self.layers, 1, 2)
        self.quantizer = check_choice("quantizer", self.quantizer, QUANTIZERS)
        try:
            self.fsq_levels = tuple(check_int(f"fsq_levels[{i}]", v, 3) for i, v in enumerate(self.fsq_levels))
        except TypeError:
            raise TypeError(f"fsq_levels must be a list of integers >= 3, got {self.fsq_levels!r}") from None
        self.cross_modal = check_bool("cross_modal", self.cross_modal)
        self.reset_ema = check_bool("reset_ema", self.reset_ema)
        if self.cross_modal and self.quantizer == "fsq":
            raise ValueError("cross_modal=True needs a codebook (quantizer 'vq' or 'rvq'); FSQ has no codebook "
                             "to update with the paired modality: set cross_modal=False for quantizer='fsq'")
        self.ema_own = check_number("ema_own", self.ema_own, 0.0, 1.0)
        self.decay = check_number("decay", self.decay, 0.0, 1.0, hi_open=True)
        self.eps = check_number("eps", self.eps, 0.0, lo_open=True)
        self.dead_after = check_int("dead_after", self.dead_after, 1)
        self.active_window = check_int("active_window", self.active_window, 1)
        for f in fields(self):
            if f.name.startswith("lambda_"):
                setattr(self, f.name, check_weight(f.name, getattr(self, f.name)))
        self.club_steps = check_int("club_steps", self.club_steps, 0)
        self.club_lr = check_number("club_lr", self.club_lr, 0.0, lo_open=True)
        self.cpc_self_weight = check_weight("cpc_self_weight", self.cpc_self_weight)
        self.warm_start = check_choice("warm_start", self.warm_start, WARM_STARTS)
        self.warm_eps = check_number("warm_eps", self.warm_eps)
        self.warm_patience = check_int("warm_patience", self.warm_patience, 1)
        self.warm_decay = check_number("warm_decay", self.warm_decay, 0.0, 1.0, hi_open=True)
        self.warm_epoch = check_int("warm_epoch", self.warm_epoch, 0)
        self.warm_min_steps = check_int("warm_min_steps", self.warm_min_steps, 0)
        self.seed = check_int("seed", self.seed)

    def loss_weights(self) -> dict[str, float]:
        """Layer-1 terms weighted by their lambdas; layer-2 terms by lambda_layer2 times the
        same lambdas (the model multiplies them by the warm-start gate)."""
        w = {"task": 1.0}
        for t in LAYER1_TERMS:
            w[t] = float(getattr(self, f"lambda_{t}"))
            w[t + "2"] = float(self.lambda_layer2 * getattr(self, f"lambda_{t}"))
        return w


class WarmStartRule:
    """When layer 2's losses switch on (see the module docstring). Feed it one layer-1 MI
    estimate per training step (`step`) and the epoch when one starts (`epoch`); ``on`` says
    whether layer 2 is active, ``fired_step`` the step at which it switched on (None before;
    0 for ``rule="off"``). The MI rule: ema <- decay * ema + (1 - decay) * mi (ema = mi at
    the first step); from step ``min_steps`` on, ``below`` counts consecutive steps with
    ema < eps; it fires at the step where below reaches ``patience``. The epoch rule fires
    at the first step of the first epoch >= ``epoch_from``."""

    def __init__(self, rule: str = "mi", eps: float = 0.05, patience: int = 20, decay: float = 0.9,
                 epoch_from: int = 3, min_steps: int = 0):
        self.rule = check_choice("rule", rule, WARM_STARTS)
        self.eps = check_number("eps", eps)
        self.patience = check_int("patience", patience, 1)
        self.decay = check_number("decay", decay, 0.0, 1.0, hi_open=True)
        self.epoch_from = check_int("epoch_from", epoch_from, 0)
        self.min_steps = check_int("min_steps", min_steps, 0)
        self.reset()

    def reset(self) -> None:
        self.steps = 0
        self.ema: float | None = None
        self.below = 0
        self.current_epoch: int | None = None
        self.on = self.rule == "off"
        self.fired_step: int | None = 0 if self.on else None
        self.fired_epoch: int | None = 0 if self.on else None

    def step(self, mi: float) -> bool:
        """One training step with layer-1 MI estimate ``mi``; returns ``on``."""
        mi = check_number("mi", mi, finite=False)
        self.steps += 1
        self.ema = mi if self.ema is None else self.decay * self.ema + (1 - self.decay) * mi
        self.below = self.below + 1 if (self.ema < self.eps and self.steps > self.min_steps) else 0
        if not self.on:
            if self.rule == "mi" and self.below >= self.patience:
                self._fire()
            elif self.rule == "epoch":
                if self.current_epoch is None:
                    raise RuntimeError("warm_start='epoch' needs the epoch number: train with "
                                       "regulator=nbkit.regulate.ModelMonitor() (it passes epochs to the model), "
                                       "or call model.on_epoch_start(epoch) yourself")
                if self.current_epoch >= self.epoch_from:
                    self._fire()
        return self.on

    def epoch(self, epoch: int) -> None:
        self.current_epoch = check_int("epoch", epoch, 0)

    def _fire(self) -> None:
        self.on = True
        self.fired_step = self.steps
        self.fired_epoch = self.current_epoch

    def state(self) -> dict[str, float]:
        return {"mi1_ema": float("nan") if self.ema is None else float(self.ema), "below": float(self.below),
                "on": float(self.on)}


# ------------------------------------------------------------------------------ blocks
class _FrameEncoder(nn.Module):
    """[B, T, D] -> [B, S, d]: a per-frame MLP, optionally a temporal conv, pooled to S steps."""

    def __init__(self, d_in: int, d_out: int, hidden: int, steps: int, temporal: bool):
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU())
        self.temporal = nn.Conv1d(hidden, d_out, 3, padding=1) if temporal else None
        self.out = None if temporal else nn.Linear(hidden, d_out)
        self.steps = steps

    def forward(self, x: Tensor) -> Tensor:
        h = self.frame(x)                                                   # [B, T, h]
        if self.temporal is not None:
            h = self.temporal(h.transpose(1, 2))                            # [B, d, T]
        else:
            h = self.out(h).transpose(1, 2)
        return F.adaptive_avg_pool1d(h, self.steps).transpose(1, 2)         # [B, S, d]


class _Decoder(nn.Module):
    """D(zh, zb) per step: project the code (reference: a linear map), concatenate with the
    specific features, an MLP to the target width."""

    def __init__(self, d_code: int, d_spec: int, d_out: int, hidden: int):
        super().__init__()
        self.code = nn.Linear(d_code, d_spec)
        self.net = nn.Sequential(nn.Linear(2 * d_spec, hidden), nn.GELU(), nn.Linear(hidden, d_out))

    def forward(self, zh: Tensor, zb: Tensor) -> Tensor:
        return self.net(torch.cat([self.code(zh), zb], -1))


class _Head(nn.Module):
    """Linear, max over time, linear (the reference's semantic decoder shape)."""

    def __init__(self, d_in: int, n_classes: int):
        super().__init__()
        self.lin = nn.Linear(d_in, d_in)
        self.out = nn.Linear(d_in, n_classes)

    def forward(self, z: Tensor) -> Tensor:
        return self.out(self.lin(z).max(1).values)


class _Layer(nn.Module):
    """One disentangling layer: per-modality general/specific encoders, one shared quantizer,
    per-modality decoders and CLUB estimators, one cross-modal CPC."""

    def __init__(self, mods, d_in: dict, c: SRCIDConfig, seed: int, temporal_specific: bool = False):
        super().__init__()
        self.mods = tuple(mods)
        self.general = nn.ModuleDict({m: _FrameEncoder(d_in[m], c.d, c.hidden, c.steps, True) for m in mods})
        self.specific = nn.ModuleDict({m: _FrameEncoder(d_in[m], c.d_specific, c.hidden, c.steps, temporal_specific)
                                       for m in mods})
        vq_kw = dict(decay=c.decay, eps=c.eps, dead_after=c.dead_after, active_window=c.active_window,
                     reset_ema=c.reset_ema)
        self.quantizer = make_quantizer(c.quantizer, c.n_codes, c.d, n_stages=c.rvq_stages, levels=c.fsq_levels,
                                        seed=seed, **({} if c.quantizer == "fsq" else vq_kw))
        self.decoder = nn.ModuleDict({m: _Decoder(c.d, c.d_specific, d_in[m], c.hidden) for m in mods})
        # one estimator per modality (reference code), computed as one batched bank (n = M)
        self.club = CLUB(c.d, c.d_specific, c.club_hidden, c.club_lr, c.club_steps, n=len(mods), seed=seed + 17)
        self.cpc = CrossCPC(mods, c.d, c.cpc_context, self_weight=c.cpc_self_weight)


class SRCID(MultimodalModel):
    """SRCID (``layers=2``) or DCID (``layers=1``) for >= 2 paired sequence modalities; see
    the module docstring. Train it with `nbkit.regulate.ModelMonitor` to log the warm start
    and codebook usage per step (and to give the "epoch" warm-start rule its epochs)."""

    Config = SRCIDConfig

    def __init__(self, dims, n_classes, config: SRCIDConfig | None = None, **overrides):
        if len(dims) < 2:
            raise ValueError(f"SRCID needs at least 2 modalities (a shared codebook is cross-modal), got {list(dims)}")
        bad = {m: tuple(s) for m, s in dims.items() if len(tuple(s)) != 2}
        if bad:
            raise ValueError(f"SRCID needs sequence modalities with per-sample shape (T, D); got {bad}. Make "
                             f"vectors into sequences first (nbkit.data.sequences, e.g. image_rows)")
        short = {m: tuple(s) for m, s in dims.items() if tuple(s)[0] < 3}
        if short:
            raise ValueError(f"SRCID's cross-modal CPC needs sequences of >= 3 time steps, got {short}")
        super().__init__(dims, n_classes, config, **overrides)
        del self.encoders                                  # replaced by the layers' encoders below
        c = self.config
        mods = self.modalities
        self.layer1 = _Layer(mods, {m: self.dims[m][1] for m in mods}, c, seed=c.seed)
        self.encoders = nn.ModuleDict({m: nn.ModuleList([self.layer1.general[m], self.layer1.specific[m]])
                                       for m in mods})     # what regulators treat as modality m's encoder
        if c.layers == 2:
            self.layer2 = _Layer(mods, {m: c.d_specific for m in mods}, c, seed=c.seed + 1000)
        self.head = _Head(c.d * c.layers, n_classes)
        self.warm = WarmStartRule(c.warm_start, c.warm_eps, c.warm_patience, c.warm_decay, c.warm_epoch,
                                  c.warm_min_steps)
        self._last_codes: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ helpers
    def on_epoch_start(self, epoch: int) -> None:
        """The epoch number, for the "epoch" warm-start rule (`ModelMonitor` calls it)."""
        self.warm.epoch(epoch)

    def layer2_gate(self) -> float:
        return 1.0 if self.warm.on else 0.0

    def loss_weights(self) -> dict[str, float]:
        w = self.config.loss_weights()
        if self.config.layers == 1:
            return {k: v for k, v in w.items() if k not in LAYER2_TERMS}
        g = self.layer2_gate()
        return {k: (v * g if k in LAYER2_TERMS else v) for k, v in w.items()}

    def _check(self, batch: Batch) -> None:
        self.check_batch(batch)
        if not bool(batch.present.all()):
            raise ValueError("SRCID learns from paired samples: every sample needs every modality "
                             f"({list(self.modalities)}); this batch has missing ones")
        for m in self.modalities:
            if not torch.isfinite(batch.x[m]).all():
                raise ValueError(f"batch.x[{m!r}] must be finite, got NaN or inf values")

    def _mix(self, z: dict[str, Tensor]) -> list[Tensor] | None:
        """MM-EMA targets: own share ``ema_own``, the rest split equally over paired modalities."""
        c = self.config
        if not c.cross_modal:
            return None
        mods = self.modalities
        k = (1 - c.ema_own) / (len(mods) - 1)
        return [c.ema_own * z[m].detach() + k * sum(z[o].detach() for o in mods if o != m) for m in mods]

    def _run_layer(self, layer: _Layer, x: dict[str, Tensor]) -> dict:
        mods = self.modalities
        z = {m: layer.general[m](x[m]) for m in mods}
        zb = {m: layer.specific[m](x[m]) for m in mods}
        qs = layer.quantizer.quantize_many([z[m] for m in mods], self._mix(z), names=[f"z[{m!r}]" for m in mods])
        q = dict(zip(mods, qs))
        zh = {m: q[m].quantized for m in mods}
        recon = {m: layer.decoder[m](zh[m], zb[m]) for m in mods}
        return {"z": z, "zb": zb, "q": q, "zh": zh, "recon": recon}

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Batch) -> Output:
        self._check(batch)
        c, mods = self.config, self.modalities
        x = {m: batch.x[m].float() for m in mods}
        target1 = {m: F.adaptive_avg_pool1d(x[m].transpose(1, 2), c.steps).transpose(1, 2) for m in mods}
        l1 = self._run_layer(self.layer1, x)
        layers = [l1]
        if c.layers == 2:
            layers.append(self._run_layer(self.layer2, l1["zb"]))
        if self.training and torch.is_grad_enabled():
            # the estimator steps of the alternating scheme (reference code: before the model's
            # own step, on detached features). Layer 2's estimators are fitted from the start,
            # before the warm start switches layer 2's terms on (ours: they are ready then).
            banks = [self.layer1.club] + ([self.layer2.club] if c.layers == 2 else [])
            fit_clubs([(bank, [L["zh"][m] for m in mods], [L["zb"][m] for m in mods])
                       for bank, L in zip(banks, layers)])
        rep = {m: torch.cat([L["zh"][m] for L in layers], -1) for m in mods}
        codes = {m: torch.cat([L["q"][m].codes for L in layers], -1) for m in mods}
        uni = {m: self.head(rep[m].detach()) for m in mods}                 # monitor head: detached input
        logits = torch.stack([uni[m] for m in mods]).mean(0)
        if self.training:
            self._last_codes = {m: v.detach() for m, v in codes.items()}
        extras = {"layers": layers, "target1": target1,
                  "recon_error": {m: ((l1["recon"][m] - target1[m]) ** 2).mean((1, 2)).detach() for m in mods}}
        return Output(logits=logits, features={m: l1["z"][m] for m in mods}, unimodal_logits=uni, shared=rep,
                      private={m: l1["zb"][m] for m in mods}, codes=codes, extras=extras)

    # ------------------------------------------------------------------ losses
    def _layer_terms(self, layer: _Layer, L: dict, target: dict[str, Tensor], use_cpc: bool) -> dict[str, Tensor]:
        c, mods = self.config, self.modalities
        recon = sum(F.mse_loss(L["recon"][m], target[m]) for m in mods)
        if c.cross_modal:
            commit = sum(2 * L["q"][m].commitment
                         + sum(F.mse_loss(L["z"][m], L["q"][o].hard.detach()) for o in mods if o != m) / (len(mods) - 1)
                         for m in mods)
        else:
            commit = sum(L["q"][m].commitment for m in mods)
        club = layer.club.mi_est([L["zh"][m] for m in mods], [L["zb"][m] for m in mods]).sum()
        cpc = layer.cpc(L["z"])["loss"] if use_cpc else recon * 0.0
        return {"recon": recon, "commit": commit, "club": club, "cpc": cpc}

    def loss_terms(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        """UNWEIGHTED terms: "task" (monitor head only), layer 1 "recon", "commit", "club",
        "cpc" and, with two layers, "recon2", "commit2", "club2", "cpc2". In training mode this
        also advances the warm-start rule with the layer-1 CLUB estimate (mean over modalities)."""
        c, mods = self.config, self.modalities
        layers = out.extras["layers"]
        task = sum(F.cross_entropy(out.unimodal_logits[m].float(), batch.y) for m in mods) / len(mods)
        terms = {"task": task}
        terms.update(self._layer_terms(self.layer1, layers[0], out.extras["target1"], c.lambda_cpc > 0))
        if c.layers == 2:
            t2 = self._layer_terms(self.layer2, layers[1], {m: layers[0]["zb"][m] for m in mods},
                                   c.lambda_cpc > 0 and c.lambda_layer2 > 0)
            terms.update({k + "2": v for k, v in t2.items()})
        if self.training and torch.is_grad_enabled():
            self.warm.step(float(terms["club"].detach()) / len(mods))
        return terms

    # ------------------------------------------------------------------ monitoring
    def codebooks(self) -> dict[str, nn.Module]:
        """{"L1": layer-1 quantizer, "L2": layer-2 quantizer (two layers only)}."""
        res = {"L1": self.layer1.quantizer}
        if self.config.layers == 2:
            res["L2"] = self.layer2.quantizer
        return res

    def codebook_columns(self) -> list[tuple[str, int, int]]:
        """(layer name, codebook index within the layer, number of codes) for each column of
        ``Output.codes[m]``, in order."""
        cols = []
        for name, q in self.codebooks().items():
            for j, k in enumerate(q.codebook_sizes):
                cols.append((name, j, k))
        return cols

    def monitor(self) -> dict[str, float]:
        """What `nbkit.regulate.ModelMonitor` logs each step: the warm-start state
        (``warm/mi1_ema``, ``warm/below``, ``warm/on``) and, per codebook (never pooled),
        the perplexity of the last training batch's codes over all modalities and the
        fraction of codes used within ``active_window`` steps (codebook quantizers)."""
        d = {f"warm/{k}": v for k, v in self.warm.state().items()}
        if self._last_codes:
            allc = torch.cat([v.reshape(-1, v.shape[-1]) for v in self._last_codes.values()])
            for j, (name, cb, k) in enumerate(self.codebook_columns()):
                d[f"usage/{name}.{cb}/perplexity"] = codebook_usage(allc[:, j], k)["perplexity"]
        for name, q in self.codebooks().items():
            for cb, a in enumerate(q.active_fraction()):
                if a == a:
                    d[f"usage/{name}.{cb}/active"] = a
        return d
