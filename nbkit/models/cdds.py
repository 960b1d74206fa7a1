"""CDDS: Constrained Decoupling and Distribution Sampling for cross-modal alignment (AAAI 2026,
arXiv 2603.05566), and the VSE-style InfoNCE retrieval baseline on the same encoders.

No official code exists; docs/methods/cdds.md says what the paper states and what we chose.
"(paper)" marks what the paper states, "(spec)" the project's reading written down before this
file, "(ours)" every other choice. Equations in the paper's order, for two modalities a
(the paper's image v) and b (its text t), each given as an embedding e_m:

 (1) dual-path UNet, per modality (paper: shared encoder, semantic and modality decoders, skip
     connections, z noisy passes, average over the passes):
        e^(k) = e + noise_std * eps_k,  k = 1..z                          (paper: z; noise_std ours)
        h1, h2 = E(e^(k))                  E: 2 x [Linear, LayerNorm, GELU]      (paper: 2 layers)
        s^(k) = a_s * e^(k) + D_s(h2, h1)  D: [Linear, LayerNorm, GELU] + skip h1, Linear
        m^(k) = a_m * e^(k) + D_m(h2, h1)  (a_s, a_m: learnable per-dimension input skips, ours)
        mu_j = mean_k s_j^(k),  sigma_j = sqrt(var_k s_j^(k) + min_sigma^2)   (spec; floor ours)
 (2) KL matrix between the two modalities' per-dimension Gaussians, batch mean over the matched
     pairs (`nbkit.losses.gaussian_kl_matrix`; the batch mean is ours):
        K^{a->b}_ij = 1/B sum_n KL(N(mu^a_ni, sigma^a_ni^2) || N(mu^b_nj, sigma^b_nj^2))  [d_a, d_b]
     kl_source="batch" (spec's alternative): categorical distributions over the batch,
        p_i = softmax_n(mu^a[:, i]), q_j = softmax_n(mu^b[:, j]), K_ij = KL(p_i || q_j)
 (3) related semantics, adaptive soft threshold with learnable alpha_i, rows normalised:
        threshold="adaptive" (paper's description, our formula): P_ij = softmax_j(-K_ij),
            k_i = mean_j P_ij + alpha_i std_j P_ij,
            W_ij ∝ P_ij * sigmoid((P_ij - k_i) / (T std_j P_ij))
        threshold="kl" (spec): W_ij ∝ sigmoid((alpha_i - K_ij) / T)
     normalised in log space (softmax of the log weights), so every row sums to 1 exactly.
 (4) distribution sampling into x-semantic components (spec):
        x^{a<-b}_ni = sum_j W^a_ij (mu^b_nj + sigma^b_nj xi_nj),  xi ~ N(0, 1)   (and b<-a)
 (5) losses (paper), L = l_s L_s + l_m L_m + l_f L_f + l_x L_x with l_x = 1 - l_f (paper):
        L_s  semantic consistency: symmetric InfoNCE(mu^a, x^{a<-b}) and (mu^b, x^{b<-a}), averaged
             (paper: contrastive; InfoNCE and tau ours)
        L_m  modality consistency: `nbkit.losses.modality_consistency` per modality, averaged
        L_f  information completeness: mse(w_s mu + w_m mu_m, e), w_s, w_m learnable (paper; mse = L2)
        L_x  x-semantic completeness: mse(w_s x + w_m mu_m, e)
     The reconstruction target e is detached when a trained backbone produces it (ours: the
     completeness terms cannot be met by shrinking the embedding).

Retrieval score of a pair (query a_p, item b_q), in eval mode (ours):
    S_pq = 1/2 [cos(mu^a_p, Wbar^a mu^b_q) + cos(mu^b_q, Wbar^b mu^a_p)]
with Wbar an exponential moving average of the training batches' W (the batch's W needs the
pairing, which a query does not have). Ablations (config switches): decouple=False (one path,
no modality component: the aligned vector must reconstruct the whole embedding), lambda_m=0,
lambda_f=lambda_x=0, noise_std=0 (one clean pass, sigma = min_sigma), sampling=False (x^{a<-b}
= mu^b: direct contrastive alignment of the semantic components, dimension by dimension).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_finite, check_int, check_number, check_weight
from ..data.batch import Batch
from ..losses import gaussian_kl_matrix, info_nce, modality_consistency
from .base import ModelConfig, MultimodalModel, Output

__all__ = ["CDDS", "CDDSConfig", "InfoNCERetrieval", "InfoNCEConfig", "related_semantics",
           "distribution_sampling", "batch_column_kl"]

THRESHOLDS = ("adaptive", "kl")
KL_SOURCES = ("noise", "batch")
BACKBONES = ("identity", "encoder")


def _check_sizes(cfg) -> None:
    check_int("d", cfg.d, 1)
    check_int("hidden", cfg.hidden, 1)
    check_number("dropout", cfg.dropout, 0.0, 1.0, hi_open=True)


@dataclass
class CDDSConfig(ModelConfig):
    d: int = 64                  # backbone output width when backbone="encoder" (ours)
    hidden: int = 128            # UNet width (ours; paper: 512-dim features)
    lambda_s: float = 1.0        # alpha_s (spec's starting value; the paper gives none)
    lambda_m: float = 0.1        # alpha_m (spec's starting value)
    lambda_f: float = 0.5        # alpha_f (spec's starting value)
    lambda_x: float | None = None  # None: 1 - lambda_f, the paper's coupling; a number decouples it
    n_noise: int = 8             # z noisy passes (spec; paper: "z groups")
    noise_std: float = 0.1       # std of the Gaussian noise on the embedding (ours); 0 = no noise
    min_sigma: float = 0.2       # floor of sigma (ours: keeps K finite; 0.2 chosen on exploration data, docs/methods/cdds.md)
    tau: float = 0.2             # InfoNCE temperature of L_s (ours; 0.2 was best for the baseline too)
    temperature: float = 0.1     # T of the soft threshold (spec)
    alpha_init: float = 1.0      # initial alpha_i (ours: threshold one std above the mean)
    threshold: str = "adaptive"  # "adaptive" (paper's description) | "kl" (spec)
    kl_source: str = "noise"     # "noise": noisy-pass Gaussians (spec) | "batch": softmax over batch columns
    backbone: str = "identity"   # "identity": inputs are embeddings | "encoder": nbkit encoders to d
    decouple: bool = True        # False: ablation w/o decoupling
    sampling: bool = True        # False: ablation w/o sampling (direct contrastive alignment)
    ema: float = 0.9             # momentum of the W average used at retrieval time (ours)

    def __post_init__(self):
        # the base check rejects lambda_x=None, so the checks are written out here
        _check_sizes(self)
        for f in fields(self):
            if f.name.startswith("lambda_") and not (f.name == "lambda_x" and getattr(self, f.name) is None):
                setattr(self, f.name, check_weight(f.name, getattr(self, f.name)))
        if self.lambda_x is None and self.lambda_f > 1:
            raise ValueError(f"lambda_f must be <= 1 while lambda_x is None (lambda_x = 1 - lambda_f, the paper's "
                             f"coupling), got {self.lambda_f!r}; or give lambda_x explicitly")
        self.n_noise = check_int("n_noise", self.n_noise, 1)
        self.noise_std = check_number("noise_std", self.noise_std, 0.0)
        self.min_sigma = check_number("min_sigma", self.min_sigma, 0.0, lo_open=True)
        self.tau = check_number("tau", self.tau, 0.0, lo_open=True)
        self.temperature = check_number("temperature", self.temperature, 0.0, lo_open=True)
        self.alpha_init = check_number("alpha_init", self.alpha_init)
        check_choice("threshold", self.threshold, THRESHOLDS)
        check_choice("kl_source", self.kl_source, KL_SOURCES)
        check_choice("backbone", self.backbone, BACKBONES)
        self.decouple = check_bool("decouple", self.decouple)
        self.sampling = check_bool("sampling", self.sampling)
        self.ema = check_number("ema", self.ema, 0.0, 1.0, hi_open=True)

    def loss_weights(self) -> dict[str, float]:
        lx = 1.0 - self.lambda_f if self.lambda_x is None else self.lambda_x
        return {"s": self.lambda_s, "m": self.lambda_m, "f": self.lambda_f, "x": float(lx)}


# ------------------------------------------------------------------ equations (2)-(4)
def related_semantics(K: Tensor, alpha: Tensor, temperature: float = 0.1, threshold: str = "adaptive") -> Tensor:
    """(3): the related-semantics matrix W [d_a, d_b] from a KL matrix K [d_a, d_b] and the
    learnable thresholds ``alpha`` [d_a]; every row sums to 1. See the module docstring."""
    check_choice("threshold", threshold, THRESHOLDS)
    temperature = check_number("temperature", temperature, 0.0, lo_open=True)
    if not isinstance(K, Tensor) or K.ndim != 2:
        raise ValueError(f"K must be a [d_a, d_b] tensor, got {getattr(K, 'shape', type(K).__name__)}")
    if not isinstance(alpha, Tensor) or tuple(alpha.shape) != (K.shape[0],):
        raise ValueError(f"alpha must be a tensor of shape [{K.shape[0]}] (one threshold per row of K), "
                         f"got {tuple(getattr(alpha, 'shape', ()))}")
    check_finite("K", K), check_finite("alpha", alpha)
    if threshold == "kl":
        logw = F.logsigmoid((alpha[:, None] - K) / temperature)
    else:
        logp = F.log_softmax(-K, dim=1)                            # conditional probability P_ij
        P = logp.exp()
        mean, sd = P.mean(1, keepdim=True), P.std(1, keepdim=True, correction=0)
        k = mean + alpha[:, None] * sd                              # adaptive threshold k_i
        logw = logp + F.logsigmoid((P - k) / (temperature * sd + 1e-12))
    return torch.softmax(logw, dim=1)                              # rows sum to 1


def distribution_sampling(W: Tensor, mu: Tensor, sigma: Tensor | None = None, xi: Tensor | None = None,
                          generator: torch.Generator | None = None) -> Tensor:
    """(4): x-semantic components [B, d_a] = (mu + sigma * xi) W^T, i.e. for each of the B
    samples, x_i = sum_j W_ij (mu_j + sigma_j xi_j). ``xi`` ~ N(0, 1) is drawn when not given
    (from ``generator``); ``sigma=None`` gives the mean (no sampling)."""
    if not isinstance(W, Tensor) or W.ndim != 2:
        raise ValueError(f"W must be a [d_a, d_b] tensor, got {getattr(W, 'shape', type(W).__name__)}")
    if not isinstance(mu, Tensor) or mu.ndim != 2 or mu.shape[1] != W.shape[1]:
        raise ValueError(f"mu must be [B, {W.shape[1]}] (one column per column of W), got "
                         f"{tuple(getattr(mu, 'shape', ()))}")
    check_finite("W", W), check_finite("mu", mu)
    z = mu
    if sigma is not None:
        check_finite("sigma", sigma)
        if sigma.shape != mu.shape:
            raise ValueError(f"sigma must have mu's shape {tuple(mu.shape)}, got {tuple(sigma.shape)}")
        if xi is None:
            xi = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        elif xi.shape != mu.shape:
            raise ValueError(f"xi must have mu's shape {tuple(mu.shape)}, got {tuple(xi.shape)}")
        z = mu + sigma * xi
    return z @ W.T


def batch_column_kl(mu_a: Tensor, mu_b: Tensor) -> Tensor:
    """(2), kl_source="batch": K_ij = KL(p_i || q_j) between the categorical distributions over
    the B matched samples p_i = softmax_n(mu_a[:, i]) and q_j = softmax_n(mu_b[:, j]) [d_a, d_b]."""
    if mu_a.ndim != 2 or mu_b.ndim != 2 or mu_a.shape[0] != mu_b.shape[0]:
        raise ValueError(f"mu_a and mu_b must be [B, d] with the same (matched) rows, got "
                         f"{tuple(mu_a.shape)} and {tuple(mu_b.shape)}")
    check_finite("mu_a", mu_a), check_finite("mu_b", mu_b)
    logp, logq = F.log_softmax(mu_a, 0), F.log_softmax(mu_b, 0)
    p = logp.exp()
    return (p * logp).sum(0)[:, None] - p.T @ logq


# ------------------------------------------------------------------ building blocks
def _block(d_in: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.GELU(), nn.Dropout(dropout))


class _Encoder(nn.Module):
    """E: 2 x [Linear, LayerNorm, GELU]; returns both levels for the skip connections."""

    def __init__(self, d_in: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.l1, self.l2 = _block(d_in, hidden, dropout), _block(hidden, hidden, dropout)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h1 = self.l1(x)
        return h1, self.l2(h1)


class _Decoder(nn.Module):
    """D: [Linear, LayerNorm, GELU] + skip from E's first level, then Linear back to d_out,
    plus a learnable per-dimension skip from the (noisy) input (ours)."""

    def __init__(self, hidden: int, d_out: int, skip_init: float = 0.5, dropout: float = 0.0):
        super().__init__()
        self.l1 = _block(hidden, hidden, dropout)
        self.out = nn.Linear(hidden, d_out)
        nn.init.normal_(self.out.weight, std=0.02)     # starts close to the input skip (ours)
        nn.init.zeros_(self.out.bias)
        self.skip = nn.Parameter(torch.full((d_out,), float(skip_init)))

    def forward(self, x: Tensor, h1: Tensor, h2: Tensor) -> Tensor:
        return self.skip * x + self.out(self.l1(h2) + h1)


class _Backbone(MultimodalModel):
    """Shared by CDDS and the InfoNCE baseline: two modalities, complete pairs, identity or
    nbkit-encoder backbone giving the embedding e_m."""

    def __init__(self, dims, n_classes, config=None, **overrides):
        super().__init__(dims, n_classes, config, **overrides)
        if len(self.modalities) != 2:
            raise ValueError(f"{type(self).__name__} aligns exactly 2 modalities, got {list(self.modalities)}")
        if self.config.backbone == "identity":
            bad = {m: s for m, s in self.dims.items() if len(s) != 1}
            if bad:
                raise ValueError(f"backbone='identity' needs embedding vectors [B, D] for every modality, got "
                                 f"per-sample shapes {bad}; use backbone='encoder' for sequences")
            self.encoders = nn.ModuleDict({m: nn.Identity() for m in self.modalities})
            self.emb_dims = {m: self.dims[m][0] for m in self.modalities}
        else:
            self.emb_dims = {m: self.config.d for m in self.modalities}
            # the encoders' ReLU outputs have an arbitrary scale; CDDS' KL compares values
            # against sigma >= min_sigma, so the embedding is standardised per sample (ours)
            self.emb_norm = nn.LayerNorm(self.config.d, elementwise_affine=False)

    def embeddings(self, batch: Batch) -> dict[str, Tensor]:
        """e_m per modality (``backbone="encoder"``: the encoder output, layer-normalised
        without affine parameters); a NaN/inf input or a missing modality is an error naming it."""
        self.check_batch(batch)
        for m in self.modalities:
            check_finite(f"batch.x[{m!r}]", batch.x[m])
        if not bool(batch.present.all()):
            miss = int((~batch.present.all(1)).sum())
            raise ValueError(f"{type(self).__name__} aligns complete pairs, but batch.present marks {miss} sample(s) "
                             f"with a missing modality; drop them first")
        e = self.encode(batch)
        if self.config.backbone == "encoder":
            e = {m: self.emb_norm(v) for m, v in e.items()}
        return e

    def _empty_logits(self, e: Tensor) -> Tensor:
        # a retrieval model has no class head: logits are [B, 0] (nothing to score against y)
        return e.new_zeros(e.shape[0], 0)


class CDDS(_Backbone):
    """CDDS for two modalities; see the module docstring. ``Output.shared`` holds the semantic
    components mu (mean over the noisy passes), ``Output.private`` the modality components,
    ``Output.extras`` sigma, K, W, the x-semantic components and the reconstructions."""

    Config = CDDSConfig

    def __init__(self, dims, n_classes, config: CDDSConfig | None = None, **overrides):
        super().__init__(dims, n_classes, config, **overrides)
        c = self.config
        a, b = self.modalities
        if not c.sampling and self.emb_dims[a] != self.emb_dims[b]:
            raise ValueError(f"sampling=False aligns the semantic components dimension by dimension, so both "
                             f"embeddings need the same width, got {self.emb_dims}")
        self.E = nn.ModuleDict({m: _Encoder(self.emb_dims[m], c.hidden, c.dropout) for m in self.modalities})
        self.D_s = nn.ModuleDict({m: _Decoder(c.hidden, self.emb_dims[m], 0.5 if c.decouple else 1.0, c.dropout)
                                  for m in self.modalities})
        if c.decouple:
            self.D_m = nn.ModuleDict({m: _Decoder(c.hidden, self.emb_dims[m], 0.5, c.dropout) for m in self.modalities})
        # learnable completeness weights w_s, w_m per modality (paper: learnable; init 1, ours)
        self.w_s = nn.Parameter(torch.ones(2))
        self.w_m = nn.Parameter(torch.ones(2))
        # alpha: one learnable threshold per row of each direction's K (paper)
        self.alpha = nn.ParameterDict({m: nn.Parameter(torch.full((self.emb_dims[m],), float(c.alpha_init)))
                                       for m in self.modalities})
        # the W used at retrieval time: EMA of the training batches' W (ours), uniform at start
        for m, o in ((a, b), (b, a)):
            self.register_buffer(f"W_bar_{m}", torch.full((self.emb_dims[m], self.emb_dims[o]),
                                                          1.0 / self.emb_dims[o]))

    # ------------------------------------------------------------------ forward
    def _noise(self, shape, like: Tensor) -> Tensor:
        if self.training:
            return torch.randn(shape, dtype=like.dtype, device=like.device)
        g = torch.Generator().manual_seed(0)            # eval: the same noise every call (ours)
        return torch.randn(shape, generator=g, dtype=like.dtype).to(like.device)

    def components(self, e: Tensor, m: str) -> dict[str, Tensor]:
        """(1) for one modality: the noisy passes and the mean/sigma of the semantic (and
        modality) components. Returns mu_s, sigma_s (and mu_m, sigma_m when decoupling)."""
        c = self.config
        z = c.n_noise if c.noise_std > 0 else 1
        x = e[None].expand(z, *e.shape)
        if c.noise_std > 0:
            x = x + c.noise_std * self._noise(x.shape, e)
        h1, h2 = self.E[m](x)
        out = {}
        paths = (("s", self.D_s), ("m", self.D_m)) if c.decouple else (("s", self.D_s),)
        for name, dec in paths:
            passes = dec[m](x, h1, h2)                                        # [z, B, D]
            mu = passes.mean(0)
            var = (passes - mu).pow(2).sum(0) / (z - 1) if z > 1 else torch.zeros_like(mu)   # Bessel
            out[f"mu_{name}"] = mu
            out[f"sigma_{name}"] = torch.sqrt(var + c.min_sigma ** 2)
        return out

    def kl_matrices(self, comp: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        """(2) both directions: K[a] [d_a, d_b] (rows: a's dimensions), K[b] [d_b, d_a]."""
        a, b = self.modalities
        ca, cb = comp[a], comp[b]
        if self.config.kl_source == "batch":
            return {a: batch_column_kl(ca["mu_s"], cb["mu_s"]), b: batch_column_kl(cb["mu_s"], ca["mu_s"])}
        return {a: gaussian_kl_matrix(ca["mu_s"], ca["sigma_s"], cb["mu_s"], cb["sigma_s"]),
                b: gaussian_kl_matrix(cb["mu_s"], cb["sigma_s"], ca["mu_s"], ca["sigma_s"])}

    def forward(self, batch: Batch) -> Output:
        c = self.config
        a, b = self.modalities
        e = self.embeddings(batch)
        comp = {m: self.components(e[m], m) for m in self.modalities}
        extras: dict = {"sigma_shared": {m: comp[m]["sigma_s"] for m in self.modalities}}
        if c.decouple:
            extras["sigma_private"] = {m: comp[m]["sigma_m"] for m in self.modalities}
        if c.sampling:
            if self.training and len(batch) >= 2:
                K = self.kl_matrices(comp)
                W = {m: related_semantics(K[m], self.alpha[m], c.temperature, c.threshold) for m in self.modalities}
                if torch.is_grad_enabled():                  # a training step: update the retrieval-time W
                    with torch.no_grad():
                        for m in self.modalities:
                            buf = getattr(self, f"W_bar_{m}")
                            buf.mul_(c.ema).add_((1 - c.ema) * W[m].detach().to(buf.dtype))
                extras["K"] = K
            else:
                W = {m: getattr(self, f"W_bar_{m}") for m in self.modalities}
            extras["W"] = W
            gen = None if self.training else torch.Generator().manual_seed(1)
            x_mean = {a: distribution_sampling(W[a], comp[b]["mu_s"]), b: distribution_sampling(W[b], comp[a]["mu_s"])}
            x_sample = {a: distribution_sampling(W[a], comp[b]["mu_s"], comp[b]["sigma_s"], generator=gen),
                        b: distribution_sampling(W[b], comp[a]["mu_s"], comp[a]["sigma_s"], generator=gen)}
        else:                                               # ablation: x^{a<-b} = mu^b, dimension by dimension
            x_mean = x_sample = {a: comp[b]["mu_s"], b: comp[a]["mu_s"]}
        extras["x_semantic"] = x_sample if self.training else x_mean
        extras["x_semantic_mean"], extras["x_semantic_sample"] = x_mean, x_sample
        extras["target"] = {m: e[m].detach() if c.backbone == "encoder" else e[m] for m in self.modalities}
        shared = {m: comp[m]["mu_s"] for m in self.modalities}
        private = {m: comp[m]["mu_m"] for m in self.modalities} if c.decouple else {}
        return Output(logits=self._empty_logits(e[a]), features=e, shared=shared, private=private, extras=extras)

    # ------------------------------------------------------------------ losses
    def reconstruct(self, out: Output, m: str, semantic: Tensor) -> Tensor:
        """w_s semantic + w_m modality component (no modality part without decoupling)."""
        i = self.modalities.index(m)
        rec = self.w_s[i] * semantic
        return rec + self.w_m[i] * out.private[m] if self.config.decouple else rec

    def loss_terms(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        """UNWEIGHTED terms {"s", "m", "f", "x"} (weights: lambda_s, lambda_m, lambda_f and
        lambda_x = 1 - lambda_f unless given)."""
        c = self.config
        a, b = self.modalities
        if len(batch) < 2:
            raise ValueError(f"CDDS loss terms need a batch of at least 2 pairs (a contrastive term), got {len(batch)}")
        xs, tgt = out.extras["x_semantic"], out.extras["target"]
        L_s = 0.5 * (info_nce(out.shared[a], xs[a], c.tau) + info_nce(out.shared[b], xs[b], c.tau))
        zero = L_s * 0.0
        if c.decouple:
            L_m = 0.5 * sum(modality_consistency(out.private[m], out.extras["sigma_private"][m]) for m in (a, b))
        else:
            L_m = zero
        L_f = 0.5 * sum(F.mse_loss(self.reconstruct(out, m, out.shared[m]), tgt[m]) for m in (a, b))
        L_x = 0.5 * sum(F.mse_loss(self.reconstruct(out, m, xs[m]), tgt[m]) for m in (a, b))
        return {"s": L_s, "m": L_m, "f": L_f, "x": L_x}

    # ------------------------------------------------------------------ retrieval
    @torch.no_grad()
    def similarity(self, za: Tensor, zb: Tensor) -> Tensor:
        """Retrieval scores [N_a, N_b] between semantic components of modality a (rows, queries)
        and b (columns): 1/2 [cos(mu^a_p, Wbar^a mu^b_q) + cos(mu^b_q, Wbar^b mu^a_p)] (ours);
        with sampling=False the plain cosine cos(mu^a_p, mu^b_q)."""
        a, b = self.modalities
        za, zb = _check_pair_dims(za, zb, self.emb_dims[a], self.emb_dims[b])
        if not self.config.sampling:
            return F.normalize(za, dim=1) @ F.normalize(zb, dim=1).T
        xa = zb @ getattr(self, f"W_bar_{a}").T.to(zb.dtype)                 # b's items in a's layout [N_b, d_a]
        xb = za @ getattr(self, f"W_bar_{b}").T.to(za.dtype)                 # a's queries in b's layout [N_a, d_b]
        s1 = F.normalize(za, dim=1) @ F.normalize(xa, dim=1).T
        s2 = F.normalize(xb, dim=1) @ F.normalize(zb, dim=1).T
        return 0.5 * (s1 + s2)


def _check_pair_dims(za, zb, da: int, db: int) -> tuple[Tensor, Tensor]:
    za, zb = torch.as_tensor(za, dtype=torch.float32), torch.as_tensor(zb, dtype=torch.float32)
    if za.ndim != 2 or za.shape[1] != da:
        raise ValueError(f"za must be [N, {da}] (the first modality's components), got {tuple(za.shape)}")
    if zb.ndim != 2 or zb.shape[1] != db:
        raise ValueError(f"zb must be [N, {db}] (the second modality's components), got {tuple(zb.shape)}")
    check_finite("za", za), check_finite("zb", zb)
    return za, zb


# ------------------------------------------------------------------ InfoNCE baseline
@dataclass
class InfoNCEConfig(ModelConfig):
    d: int = 64                  # joint space width (and backbone width with backbone="encoder") (ours)
    hidden: int = 128            # encoder width, as CDDS' E (ours)
    lambda_nce: float = 1.0      # the only term
    tau: float = 0.2             # temperature (ours; 0.2 beat 0.1 and 0.05 on exploration data)
    backbone: str = "identity"

    def __post_init__(self):
        super().__post_init__()
        _check_sizes(self)
        self.lambda_nce = check_weight("lambda_nce", self.lambda_nce)
        self.tau = check_number("tau", self.tau, 0.0, lo_open=True)
        check_choice("backbone", self.backbone, BACKBONES)

    def loss_weights(self) -> dict[str, float]:
        return {"nce": self.lambda_nce}


class InfoNCERetrieval(_Backbone):
    """VSE-style retrieval baseline on the same backbone and encoder E as CDDS: per modality
    z_m = Linear(E(e_m))[-1] in a joint d-dim space, trained with the symmetric InfoNCE of
    `nbkit.losses.info_nce` (one term "nce"); retrieval by cosine. ``Output.shared`` holds z."""

    Config = InfoNCEConfig

    def __init__(self, dims, n_classes, config: InfoNCEConfig | None = None, **overrides):
        super().__init__(dims, n_classes, config, **overrides)
        c = self.config
        self.E = nn.ModuleDict({m: _Encoder(self.emb_dims[m], c.hidden, c.dropout) for m in self.modalities})
        self.head = nn.ModuleDict({m: nn.Linear(c.hidden, c.d) for m in self.modalities})

    def forward(self, batch: Batch) -> Output:
        e = self.embeddings(batch)
        z = {m: self.head[m](self.E[m](e[m])[1]) for m in self.modalities}
        return Output(logits=self._empty_logits(e[self.modalities[0]]), features=e, shared=z)

    def loss_terms(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        a, b = self.modalities
        return {"nce": info_nce(out.shared[a], out.shared[b], self.config.tau)}

    @torch.no_grad()
    def similarity(self, za: Tensor, zb: Tensor) -> Tensor:
        """Cosine similarity [N_a, N_b] in the joint space."""
        za, zb = _check_pair_dims(za, zb, self.config.d, self.config.d)
        return F.normalize(za, dim=1) @ F.normalize(zb, dim=1).T
