"""DSRSD-Net: Dual-Stream cross-modal representation learning via Residual Semantic
Decorrelation (arXiv 2512.07568). No official code exists; this file follows
docs/methods/dsrsd.md, equations in the paper's order. "(paper)" marks what the paper states,
"(ours)" every choice the paper leaves open.

For each modality m with encoder output h_m (masked: zero where m is missing):

    (1) base projection   z~_m = LayerNorm(W_m h_m)                          (paper; d ours)
    (2) shared stream     s_m  = z~_m + R_sh(z~_m)                           (paper)
                          R_sh: d -> d -> d MLP, GELU, ONE set of weights for all modalities,
                          last layer initialised near zero so s starts at z~ (ours)
    (3) private stream    p_m  = R_pr^m(z~_m), one MLP per modality          (ours)
    (4) decorrelation     C = S^T S / (N-1) of the standardised stacked shared batch,
                          L_dec = sum_{i!=j} C_ij^2 / (d(d-1))               (paper; /d(d-1) ours)
    (5) orthogonality     L_orth = sum_m ||S^_m^T P^_m||_F^2 / d^2           (MISA-style; /d^2 ours)
    (6) contrastive       L_con = symmetric InfoNCE(s_A, s_B), mean over pairs (paper; tau ours)
    (7) regression align  L_align = ||g(s_A) - s_B||^2 + ||g(s_B) - s_A||^2  (paper; g linear, ours)
    (8) gate              alpha = softmax(W [h_1; ...; h_M] + b), missing -> logit -inf
                          (the paper's softmax(w^T [h_A; h_B]) of one scalar is degenerate)
    (9) fusion            u = sum_m alpha_m [s_m; p_m];  logits = head(u)   (paper)
   (10) total             L = L_task + l_con L_con + l_align L_align + l_dec L_dec + l_orth L_orth

Pairwise terms (6, 7) use only samples that have both modalities; the stacked batch (4) and
(5) use only present rows. A sample with no modality gets alpha = 0, u = 0 (no NaN).
Ablation switches: lambda_dec=0 / lambda_orth=0 drop a term (the Trainer skips weight-0
terms; the unweighted value is still returned for logging), residual=False makes the shared
head a plain MLP s_m = MLP(z~_m) (no R_sh), gate=False averages the present modalities
uniformly, private_mode="difference" sets p_m = z~_m - s_m (no R_pr).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._checks import check_choice, check_number
from ..data.batch import Batch
from ..nn.fusion import masked_softmax
from ..losses import decorrelation, info_nce, orthogonality, regression_alignment
from .base import ModelConfig, MultimodalModel, Output

__all__ = ["DSRSD", "DSRSDConfig"]

PRIVATE_MODES = ("mlp", "difference")


@dataclass
class DSRSDConfig(ModelConfig):
    lambda_con: float = 0.1      # l_con   (spec's starting value)
    lambda_align: float = 0.1    # l_align (spec's starting value)
    lambda_dec: float = 1e-2     # l_dec   (spec: in [1e-3, 1e-1])
    lambda_orth: float = 1e-2    # l_orth  (spec: in [1e-3, 1e-1])
    tau: float = 0.1             # InfoNCE temperature (ours; spec 0.07..0.1)
    residual: bool = True        # s = z~ + R_sh(z~)  vs  s = MLP(z~)
    gate: bool = True            # learned gate vs uniform average over present modalities
    private_mode: str = "mlp"    # "mlp": p = R_pr^m(z~); "difference": p = z~ - s
    align_kind: str = "mse"      # "mse" (paper's ||.||^2) or "cos"

    def __post_init__(self):
        super().__post_init__()
        # tau = inf would make L_con a constant (log B): finite and > 0 only
        self.tau = check_number("tau", self.tau, 0.0, lo_open=True)
        self.private_mode = check_choice("private_mode", self.private_mode, PRIVATE_MODES)
        self.align_kind = check_choice("align_kind", self.align_kind, ("mse", "cos"))
        self.residual = self.check_flag("residual", self.residual)
        self.gate = self.check_flag("gate", self.gate)


def _mlp(d: int, hidden: int, zero_last: bool = False) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
    if zero_last:                         # R_sh starts as a near-zero correction (ours: 1e-3 scale)
        nn.init.normal_(net[2].weight, std=1e-3)
        nn.init.zeros_(net[2].bias)
    return net


class DSRSD(MultimodalModel):
    """DSRSD-Net for any number (>= 2) of modalities; see the module docstring."""

    Config = DSRSDConfig

    def __init__(self, dims, n_classes, config: DSRSDConfig | None = None, **overrides):
        if len(dims) < 2:
            raise ValueError(f"dims must name at least 2 modalities for DSRSD (shared factors are cross-modal), "
                             f"got {list(dims) if hasattr(dims, '__iter__') else dims!r}")
        super().__init__(dims, n_classes, config, **overrides)
        c, M = self.config, len(self.modalities)
        d = c.d
        # (1) base projection W_m + LayerNorm, per modality
        self.base = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d)) for m in self.modalities})
        # (2) shared stream: one residual MLP for all modalities, or a plain MLP head when ablated
        if c.residual:
            self.R_sh = _mlp(d, c.hidden, zero_last=True)
        else:
            self.shared_mlp = _mlp(d, c.hidden)
        # (3) private stream: one MLP per modality (or none in "difference" mode)
        if c.private_mode == "mlp":
            self.R_pr = nn.ModuleDict({m: _mlp(d, c.hidden) for m in self.modalities})
        # (7) alignment predictor g (ours: one linear map, identity at start)
        self.g = nn.Linear(d, d)
        nn.init.eye_(self.g.weight)
        nn.init.zeros_(self.g.bias)
        # (8) gate over the encoder features
        if c.gate:
            self.gate = nn.Linear(M * d, M)
        # (9) task head on u = sum_m alpha_m [s_m; p_m]  (ours: 2-layer MLP)
        self.head = nn.Sequential(nn.Linear(2 * d, c.hidden), nn.GELU(), nn.Dropout(c.dropout),
                                  nn.Linear(c.hidden, n_classes))

    # ------------------------------------------------------------------ forward
    def streams(self, z: Tensor, m: str) -> tuple[Tensor, Tensor]:
        """(2)-(3): shared and private vectors of one modality's base projection z~."""
        s = z + self.R_sh(z) if self.config.residual else self.shared_mlp(z)
        p = self.R_pr[m](z) if self.config.private_mode == "mlp" else z - s
        return s, p

    def gate_weights(self, h: dict[str, Tensor], present: Tensor) -> Tensor:
        """(8): alpha [B, M]; rows sum to 1 over present modalities, 0 for missing ones,
        all 0 for a sample with no modality."""
        pres_f = present.to(next(iter(h.values())).dtype)
        if not self.config.gate:
            return pres_f / pres_f.sum(1, keepdim=True).clamp_min(1.0)
        return masked_softmax(self.gate(torch.cat([h[m] for m in self.modalities], 1)), present)

    def forward(self, batch: Batch) -> Output:
        h = self.encode(batch)
        present = self.present(batch)                                      # [B, M] bool
        shared, private, base = {}, {}, {}
        for i, m in enumerate(self.modalities):
            z = self.base[m](h[m])                                         # (1)
            s, p = self.streams(z, m)                                      # (2), (3)
            keep = present[:, i, None].to(z.dtype)
            base[m], shared[m], private[m] = z * keep, s * keep, p * keep  # zero where missing
        alpha = self.gate_weights(h, present)                              # (8)
        u = sum(alpha[:, i, None] * torch.cat([shared[m], private[m]], 1)
                for i, m in enumerate(self.modalities))                    # (9)
        return Output(logits=self.head(u), features=h, shared=shared, private=private,
                      fused=u, gate=alpha, extras={"base": base, "present": present})

    # ------------------------------------------------------------------ losses
    def loss_terms(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        """UNWEIGHTED terms {"task", "con", "align", "dec", "orth"}; weights in the config."""
        present = out.extras["present"]
        mods = self.modalities
        zero = out.logits.sum() * 0.0                                      # keeps the graph
        con, align, n_pairs = zero, zero, 0
        for (i, a), (j, b) in itertools.combinations(enumerate(mods), 2):
            both = present[:, i] & present[:, j]
            if int(both.sum()) < 2:                                        # no contrast in < 2 pairs
                continue
            sa, sb = out.shared[a][both], out.shared[b][both]
            con = con + info_nce(sa, sb, self.config.tau)                                # (6)
            k = self.config.align_kind
            align = align + 0.5 * (regression_alignment(self.g(sa), sb, k)
                                   + regression_alignment(self.g(sb), sa, k))            # (7)
            n_pairs += 1
        if n_pairs:
            con, align = con / n_pairs, align / n_pairs
        stacked = torch.cat([out.shared[m][present[:, i]] for i, m in enumerate(mods)])
        dec = decorrelation(stacked) if stacked.shape[0] >= 2 else zero                 # (4)
        orth = zero
        for i, m in enumerate(mods):
            mk = present[:, i]
            if int(mk.sum()) >= 2:
                orth = orth + orthogonality(out.shared[m][mk], out.private[m][mk])       # (5)
        return {"task": self.task_loss(out.logits, batch.y), "con": con, "align": align,
                "dec": dec, "orth": orth}
