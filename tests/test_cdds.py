"""CDDS (nbkit.models.cdds), its losses, the paired-embedding data, notebook 07's protocols and
figures: closed forms, Monte Carlo checks, invariances and clear errors."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from nbkit.data import Batch, MultimodalDataset, make_paired_embeddings, mapping_order
from nbkit.losses import gaussian_kl, gaussian_kl_matrix, modality_consistency
from nbkit.models import CDDS, CDDSConfig, InfoNCEConfig, InfoNCERetrieval
from nbkit.models.cdds import batch_column_kl, distribution_sampling, related_semantics


@pytest.fixture(scope="module")
def ds():
    return make_paired_embeddings(n=200, dims=(12, 10), k_shared=3, per_factor=2, k_nuisance=3, seed=0)


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ the KL matrix
def test_gaussian_kl_known_values_and_zero_on_itself():
    one, zero = torch.tensor(1.0), torch.tensor(0.0)
    assert gaussian_kl(zero, one, one, one).item() == pytest.approx(0.5)                 # (mu_p - mu_q)^2 / 2
    assert gaussian_kl(zero, one, zero, 2 * one).item() == pytest.approx(math.log(2) + 1 / 8 - 0.5)
    mu, sd = torch.randn(5, generator=_g()), torch.rand(5, generator=_g(1)) + 0.1
    assert torch.allclose(gaussian_kl(mu, sd, mu, sd), torch.zeros(5), atol=1e-6)
    assert (gaussian_kl(mu, sd, mu + 0.3, sd * 1.5) > 0).all()


def test_closed_form_kl_matches_a_monte_carlo_estimate():
    """KL(p || q) = E_p[log p(x) - log q(x)], estimated from 400k draws of p."""
    from torch.distributions import Normal

    g = _g(3)
    cases = [(0.0, 1.0, 1.0, 1.0), (0.3, 0.5, -0.4, 1.2), (1.0, 2.0, 0.0, 0.7), (-2.0, 0.05, -1.9, 0.1)]
    for mp, sp, mq, sq in cases:
        p, q = Normal(torch.tensor(mp, dtype=torch.float64), sp), Normal(torch.tensor(mq, dtype=torch.float64), sq)
        x = mp + sp * torch.randn(400_000, generator=g, dtype=torch.float64)
        mc = (p.log_prob(x) - q.log_prob(x)).mean().item()
        closed = gaussian_kl(*(torch.tensor(v, dtype=torch.float64) for v in (mp, sp, mq, sq))).item()
        se = (p.log_prob(x) - q.log_prob(x)).std().item() / math.sqrt(len(x))
        assert abs(mc - closed) < 5 * se + 1e-9, (mp, sp, mq, sq, mc, closed)


def test_kl_matrix_entries_and_the_fused_batch_mean():
    g = _g(4)
    B, da, db = 7, 5, 3
    mu_a, mu_b = torch.randn(B, da, generator=g), torch.randn(B, db, generator=g)
    sa, sb = torch.rand(B, da, generator=g) + 0.05, torch.rand(B, db, generator=g) + 0.05
    full = gaussian_kl_matrix(mu_a, sa, mu_b, sb, reduction="none")
    assert full.shape == (B, da, db)
    n, i, j = 2, 4, 1                                       # one entry written out
    assert full[n, i, j].item() == pytest.approx(gaussian_kl(mu_a[n, i], sa[n, i], mu_b[n, j], sb[n, j]).item(), rel=1e-5)
    fused = gaussian_kl_matrix(mu_a, sa, mu_b, sb)
    assert fused.shape == (da, db) and fused.dtype == torch.float32
    assert torch.allclose(fused, full.mean(0), rtol=1e-5, atol=1e-5)
    # a dimension compared with an identical copy of itself has KL 0
    K = gaussian_kl_matrix(mu_a, sa, mu_a[:, [3, 0]], sa[:, [3, 0]])
    assert K[3, 0].item() == pytest.approx(0.0, abs=1e-5) and K[0, 1].item() == pytest.approx(0.0, abs=1e-5)
    assert K[1, 0].item() > 0.01


def test_fused_kl_stays_accurate_when_sigma_is_tiny():
    g = _g(5)
    mu = torch.randn(64, 4, generator=g) * 3
    s = torch.full((64, 4), 1e-3)
    K = gaussian_kl_matrix(mu, s, mu, s)                    # float64 inside: the diagonal stays ~0
    assert torch.allclose(torch.diagonal(K), torch.zeros(4), atol=1e-3)
    assert (K + torch.eye(4) * 1e9).min() > 1e3             # off-diagonal: huge but finite


def test_batch_column_kl_is_the_categorical_kl_written_out():
    g = _g(6)
    a, b = torch.randn(9, 4, generator=g), torch.randn(9, 3, generator=g)
    K = batch_column_kl(a, b)
    for i in range(4):
        for j in range(3):
            p, q = torch.softmax(a[:, i], 0), torch.softmax(b[:, j], 0)
            assert K[i, j].item() == pytest.approx((p * (p.log() - q.log())).sum().item(), rel=1e-4, abs=1e-6)
    assert torch.allclose(torch.diagonal(batch_column_kl(a, a)), torch.zeros(4), atol=1e-6)


# ------------------------------------------------------------------ related semantics and sampling
def test_related_semantics_rows_sum_to_one_for_both_thresholds_and_extreme_K():
    g = _g(7)
    for K in (torch.rand(6, 5, generator=g) * 3, torch.rand(6, 5, generator=g) * 1e6, torch.zeros(6, 5)):
        for th in ("adaptive", "kl"):
            W = related_semantics(K, torch.full((6,), 1.0), 0.1, th)
            assert torch.isfinite(W).all() and (W >= 0).all()
            assert torch.allclose(W.sum(1), torch.ones(6), atol=1e-5)


def test_related_semantics_kl_threshold_is_the_spec_formula():
    K = torch.tensor([[0.0, 0.5, 2.0], [1.0, 1.0, 0.1]])
    alpha, T = torch.tensor([0.8, 0.3]), 0.1
    s = torch.sigmoid((alpha[:, None] - K) / T)
    assert torch.allclose(related_semantics(K, alpha, T, "kl"), s / s.sum(1, keepdim=True), atol=1e-6)
    # within a row, a lower KL never gets a smaller weight
    W = related_semantics(K, alpha, T, "kl")
    assert W[0, 0] > W[0, 1] > W[0, 2] and W[1, 2] > W[1, 0]


def test_related_semantics_adaptive_threshold_written_out():
    """P = softmax(-K) per row; k = mean(P) + alpha std(P); W ∝ P sigmoid((P - k) / (T std(P)))."""
    K = np.array([[0.1, 0.2, 3.0, 0.15], [2.0, 0.0, 2.0, 1.0]])
    alpha, T = np.array([0.5, -0.2]), 0.2
    P = np.exp(-K) / np.exp(-K).sum(1, keepdims=True)
    k = P.mean(1, keepdims=True) + alpha[:, None] * P.std(1, keepdims=True)
    w = P / (1 + np.exp(-(P - k) / (T * P.std(1, keepdims=True))))
    want = w / w.sum(1, keepdims=True)
    got = related_semantics(torch.tensor(K), torch.tensor(alpha), T, "adaptive").numpy()
    assert np.allclose(got, want, atol=1e-8)
    # raising alpha (a higher threshold) concentrates the row on its strongest partner
    lo = related_semantics(torch.tensor(K), torch.tensor([-2.0, -2.0]), T)
    hi = related_semantics(torch.tensor(K), torch.tensor([1.5, 1.5]), T)
    assert (hi.max(1).values > lo.max(1).values).all()


def test_distribution_sampling_mean_and_covariance_by_monte_carlo():
    g = _g(8)
    W = torch.softmax(torch.randn(3, 4, generator=g, dtype=torch.float64), 1)
    mu = torch.randn(1, 4, generator=g, dtype=torch.float64).expand(200_000, 4)
    sigma = (torch.rand(1, 4, generator=g, dtype=torch.float64) + 0.2).expand(200_000, 4)
    x = distribution_sampling(W, mu, sigma, generator=g)
    assert torch.allclose(x.mean(0), W @ mu[0], atol=0.01)
    cov = torch.cov(x.T)
    assert torch.allclose(cov, W @ torch.diag(sigma[0] ** 2) @ W.T, atol=0.01)
    assert torch.allclose(distribution_sampling(W, mu[:2]), mu[:2] @ W.T)              # sigma=None: the mean
    xi = torch.ones(2, 4, dtype=torch.float64)
    assert torch.allclose(distribution_sampling(W, mu[:2], sigma[:2], xi=xi), (mu[:2] + sigma[:2]) @ W.T)


# ------------------------------------------------------------------ losses
def test_modality_consistency_zero_for_identical_components_and_hand_value():
    mu = torch.randn(1, 6, generator=_g(9)).expand(5, 6)
    sd = torch.full((5, 6), 0.3)
    assert modality_consistency(mu, sd).item() == pytest.approx(0.0, abs=1e-6)
    # two samples, one dimension: mu = -1, +1, sigma = 1 -> batch Gaussian N(0, 2);
    # KL(N(+-1, 1) || N(0, 2)) = log(sqrt 2) + (1 + 1) / 4 - 1/2 = 0.5 log 2
    got = modality_consistency(torch.tensor([[-1.0], [1.0]]), torch.ones(2, 1))
    assert got.item() == pytest.approx(0.5 * math.log(2), rel=1e-5)
    # more sample-specific spread -> larger loss
    assert modality_consistency(torch.tensor([[-2.0], [2.0]]), torch.ones(2, 1)) > got


def test_every_loss_term_finite_and_differentiable_including_sigma_near_zero(ds):
    square = make_paired_embeddings(n=64, dims=8, k_shared=2, seed=1)      # sampling=False needs equal widths
    for over in ({}, {"min_sigma": 1e-4, "noise_std": 0.0}, {"min_sigma": 1e-4, "noise_std": 1e-5},
                 {"threshold": "kl"}, {"kl_source": "batch"}, {"decouple": False}, {"sampling": False}):
        data = ds if over.get("sampling", True) else square
        b = data[:32]
        torch.manual_seed(0)
        model = CDDS.for_dataset(data, hidden=16, **over)
        out = model(b)
        if over.get("min_sigma"):
            assert out.extras["sigma_shared"]["image"].min() < 1e-3
        terms = model.loss_terms(b, out)
        assert set(terms) == {"s", "m", "f", "x"}
        assert all(v.ndim == 0 and torch.isfinite(v) for v in terms.values()), (over, terms)
        loss = sum(model.loss_weights()[k] * v for k, v in terms.items())
        model.zero_grad()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), over
        assert model.alpha["image"].grad is not None or not model.config.sampling


# ------------------------------------------------------------------ the model
def test_shapes_outputs_and_loss_weights(ds):
    model = CDDS.for_dataset(ds, hidden=16)
    out = model(ds[:8])
    assert out.logits.shape == (8, 0)                      # a retrieval model has no class head
    assert out.shared["image"].shape == out.private["image"].shape == (8, 12)
    assert out.shared["text"].shape == (8, 10)
    assert out.extras["K"]["image"].shape == (12, 10) and out.extras["K"]["text"].shape == (10, 12)
    assert out.extras["W"]["image"].shape == (12, 10)
    assert out.extras["x_semantic"]["image"].shape == (8, 12) and out.extras["x_semantic"]["text"].shape == (8, 10)
    assert model.loss_weights() == {"s": 1.0, "m": 0.1, "f": 0.5, "x": 0.5}
    assert CDDS.for_dataset(ds, lambda_f=0.2).loss_weights()["x"] == pytest.approx(0.8)    # 1 - lambda_f
    assert CDDS.for_dataset(ds, lambda_f=2.0, lambda_x=0.3).loss_weights() == {"s": 1.0, "m": 0.1, "f": 2.0, "x": 0.3}


def test_sigma_is_the_spread_of_the_noisy_passes(ds):
    torch.manual_seed(0)
    model = CDDS.for_dataset(ds, hidden=16, noise_std=0.5, n_noise=6, min_sigma=1e-3).eval()
    e = ds.x["image"][:4]
    g = torch.Generator().manual_seed(0)                   # eval mode draws this noise
    x = e[None] + 0.5 * torch.randn((6, 4, 12), generator=g)
    h1, h2 = model.E["image"](x)
    passes = model.D_s["image"](x, h1, h2)
    comp = model.components(e, "image")
    assert torch.allclose(comp["mu_s"], passes.mean(0), atol=1e-5)
    assert torch.allclose(comp["sigma_s"], torch.sqrt(passes.var(0) + 1e-6), atol=1e-5)
    # no noise: one pass, sigma is the floor exactly
    m0 = CDDS.for_dataset(ds, hidden=16, noise_std=0.0, min_sigma=0.2)
    assert torch.allclose(m0.components(e, "image")["sigma_s"], torch.full((4, 12), 0.2))


def test_eval_is_deterministic_and_only_training_steps_move_the_retrieval_W(ds):
    torch.manual_seed(0)
    model = CDDS.for_dataset(ds, hidden=16)
    W0 = model.W_bar_image.clone()
    assert torch.allclose(W0.sum(1), torch.ones(12))
    model.eval()
    o1, o2 = model(ds[:16]), model(ds[:16])
    assert torch.equal(o1.shared["image"], o2.shared["image"])
    assert torch.equal(o1.extras["W"]["image"], W0)          # eval uses the stored W
    model.train()
    with torch.no_grad():
        model(ds[:16])
    assert torch.equal(model.W_bar_image, W0)                # no update without a training step
    out = model(ds[:16])
    W = out.extras["W"]["image"].detach()
    assert torch.allclose(model.W_bar_image, 0.9 * W0 + 0.1 * W, atol=1e-6)
    assert torch.allclose(model.W_bar_image.sum(1), torch.ones(12), atol=1e-5)


def test_ablation_switches_change_what_they_say(ds):
    b = ds[:16]
    nodec = CDDS.for_dataset(ds, hidden=16, decouple=False)
    assert not hasattr(nodec, "D_m")
    out = nodec(b)
    assert out.private == {} and nodec.loss_terms(b, out)["m"].item() == 0.0
    # without decoupling the reconstruction is w_s * s alone
    assert torch.allclose(nodec.reconstruct(out, "image", out.shared["image"]), nodec.w_s[0] * out.shared["image"])
    vs = make_paired_embeddings(n=40, dims=8, k_shared=2, seed=1)
    nos = CDDS.for_dataset(vs, hidden=16, sampling=False)
    o = nos(vs[:8])
    assert torch.equal(o.extras["x_semantic"]["image"], o.shared["text"])     # direct alignment
    za, zb = o.shared["image"].detach(), o.shared["text"].detach()
    cos = torch.nn.functional.normalize(za, dim=1) @ torch.nn.functional.normalize(zb, dim=1).T
    assert torch.allclose(nos.similarity(za, zb), cos, atol=1e-6)


def test_similarity_is_the_symmetric_cosine_through_the_stored_W(ds):
    torch.manual_seed(0)
    model = CDDS.for_dataset(ds, hidden=16)
    model.W_bar_image.copy_(torch.softmax(torch.randn(12, 10, generator=_g(1)), 1))
    model.W_bar_text.copy_(torch.softmax(torch.randn(10, 12, generator=_g(2)), 1))
    za, zb = torch.randn(5, 12, generator=_g(3)), torch.randn(6, 10, generator=_g(4))
    S = model.similarity(za, zb)
    p, q = 3, 4
    cos = torch.nn.functional.cosine_similarity
    want = 0.5 * (cos(za[p], model.W_bar_image @ zb[q], dim=0) + cos(zb[q], model.W_bar_text @ za[p], dim=0))
    assert S.shape == (5, 6) and S[p, q].item() == pytest.approx(want.item(), abs=1e-6)


def test_encoder_backbone_for_sequences_and_the_infonce_baseline():
    g = _g(10)
    seq = MultimodalDataset({"image": torch.randn(24, 20, generator=g), "audio": torch.randn(24, 6, 5, generator=g)},
                            torch.arange(24) % 3)
    for cls in (CDDS, InfoNCERetrieval):
        model = cls.for_dataset(seq, d=8, hidden=16, backbone="encoder")
        out = model(seq[:6])
        assert out.features["audio"].shape == (6, 8)
        assert torch.allclose(out.features["audio"].mean(1), torch.zeros(6), atol=1e-5)   # layer-normalised
        terms = model.loss_terms(seq[:6], out)
        assert all(torch.isfinite(v) for v in terms.values())
    nce = InfoNCERetrieval.for_dataset(seq, d=8, hidden=16, backbone="encoder")
    out = nce(seq[:6])
    from nbkit.losses import info_nce
    assert nce.loss_terms(seq[:6], out)["nce"].item() == pytest.approx(
        info_nce(out.shared["image"], out.shared["audio"], 0.2).item())
    # the completeness target is the detached embedding under a trained backbone
    cd = CDDS.for_dataset(seq, d=8, hidden=16, backbone="encoder")
    assert not cd(seq[:6]).extras["target"]["audio"].requires_grad


def test_training_learns_retrieval_and_the_true_mapping():
    from nbkit.experiments import fit
    from nbkit.experiments.nb07_retrieval import evaluate_retrieval, kl_and_related, mapping_agreement

    data = make_paired_embeddings(n=450, dims=16, k_shared=4, per_factor=2, k_nuisance=4, seed=2)
    train, test = data.split((2 / 3, 1 / 3), seed=0)
    tc = dict(epochs=6, batch_size=64, lr=5e-3, progress=False)
    model, _ = fit(CDDS, train, seed=0, config=dict(hidden=32), train_config=tc)
    chance = 2 * 100 * (1 + 5 + 10) / len(test)
    assert evaluate_retrieval(model, test)["rsum"] > 3 * chance
    kr = kl_and_related(model, test)
    agr = mapping_agreement(kr["W_bar"], kr["mapping"])
    assert agr["mass_on_true"] > 3 * agr["chance"]
    nce, _ = fit(InfoNCERetrieval, train, seed=0, config=dict(hidden=32), train_config=tc)
    assert evaluate_retrieval(nce, test)["rsum"] > 3 * chance


def test_clear_errors(ds):
    b = ds[:8]
    model = CDDS.for_dataset(ds, hidden=16)
    x = dict(b.x)
    x["image"] = x["image"].clone()
    x["image"][0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"batch.x\['image'\] must be finite"):
        model(Batch(x, b.present, b.y))
    pres = b.present.clone()
    pres[0, 1] = False
    with pytest.raises(ValueError, match="complete pairs"):
        model(Batch(b.x, pres, b.y))
    with pytest.raises(ValueError, match="at least 2 pairs"):
        model.loss_terms(ds[:1], model(ds[:1]))
    three = MultimodalDataset({k: torch.randn(10, 4) for k in "abc"}, torch.arange(10) % 2)
    with pytest.raises(ValueError, match="exactly 2 modalities"):
        CDDS.for_dataset(three)
    seq = MultimodalDataset({"a": torch.randn(10, 4), "b": torch.randn(10, 3, 2)}, torch.arange(10) % 2)
    with pytest.raises(ValueError, match="backbone='identity' needs embedding vectors"):
        CDDS.for_dataset(seq)
    with pytest.raises(ValueError, match="same width"):
        CDDS.for_dataset(ds, sampling=False)                 # 12 vs 10 dimensions
    for bad, msg in [(dict(lambda_f=1.5), "lambda_f must be <= 1 while lambda_x is None"),
                     (dict(lambda_s=-1.0), "lambda_s must be a finite number >= 0"),
                     (dict(lambda_m=float("nan")), "lambda_m must be"),
                     (dict(n_noise=0), "n_noise must be an integer >= 1"),
                     (dict(noise_std=-0.1), "noise_std must be"),
                     (dict(min_sigma=0.0), "min_sigma must be a finite number > 0"),
                     (dict(tau=0.0), "tau must be"),
                     (dict(threshold="topk"), "threshold must be one of"),
                     (dict(kl_source="x"), "kl_source must be one of"),
                     (dict(backbone="vit"), "backbone must be one of"),
                     (dict(ema=1.0), "ema must be"),
                     (dict(hidden=0), "hidden must be an integer >= 1")]:
        with pytest.raises((ValueError, TypeError), match=msg):
            CDDSConfig(**bad)
    with pytest.raises(TypeError, match="decouple must be True or False"):
        CDDSConfig(decouple="no")
    with pytest.raises(ValueError, match="tau must be"):
        InfoNCEConfig(tau=-1.0)
    with pytest.raises(ValueError, match=r"za must be \[N, 12\]"):
        model.similarity(torch.randn(3, 5), torch.randn(3, 10))
    with pytest.raises(ValueError, match="alpha must be a tensor of shape"):
        related_semantics(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="K must be finite"):
        related_semantics(torch.tensor([[float("nan"), 0.0]]), torch.zeros(1))
    with pytest.raises(ValueError, match="sigma_a must be > 0"):
        gaussian_kl_matrix(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match="mu_b must be finite"):
        gaussian_kl_matrix(torch.zeros(2, 2), torch.ones(2, 2), torch.full((2, 2), float("inf")), torch.ones(2, 2))
    with pytest.raises(ValueError, match="same \\(matched\\) samples"):
        gaussian_kl_matrix(torch.zeros(2, 2), torch.ones(2, 2), torch.zeros(3, 2), torch.ones(3, 2))
    with pytest.raises(ValueError, match="reduction must be one of"):
        gaussian_kl_matrix(torch.zeros(2, 2), torch.ones(2, 2), torch.zeros(2, 2), torch.ones(2, 2), reduction="sum")
    with pytest.raises(ValueError, match="mu must be"):
        distribution_sampling(torch.eye(3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="sigma must be finite"):
        distribution_sampling(torch.eye(2), torch.zeros(3, 2), torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="mu_b must be finite"):
        batch_column_kl(torch.zeros(3, 2), torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="at least 2 samples"):
        modality_consistency(torch.zeros(1, 3), torch.ones(1, 3))


# ------------------------------------------------------------------ data
def test_paired_embeddings_carry_the_known_mapping():
    d = make_paired_embeddings(n=3000, dims=(20, 24), k_shared=4, per_factor=3, k_nuisance=4, seed=3)
    M = d.info["mapping"]
    assert M.shape == (20, 24) and M.sum(1).max() == 3 and int((M.sum(1) > 0).sum()) == 12
    fa, fb = d.info["factor_of_dim"]["image"], d.info["factor_of_dim"]["text"]
    assert torch.equal(M > 0, (fa[:, None] == fb[None, :]) & (fa[:, None] >= 0))
    C = torch.corrcoef(torch.cat([d.x["image"], d.x["text"]], 1).T)[:20, 20:].abs()
    assert C[M > 0].min() > 0.25 and C[M == 0].max() < 0.15
    # a semantic dimension is a (noisy) function of its factor, the others are not
    c = d.factors["shared"]
    i = int(torch.nonzero(fa == 2)[0])
    r = torch.corrcoef(torch.stack([d.x["image"][:, i], c[:, 2]]))[0, 1].abs()
    assert r > 0.4
    assert d.describe().startswith("synthetic paired embeddings n=3000 dims=[20, 24]")
    again = make_paired_embeddings(n=3000, dims=(20, 24), k_shared=4, per_factor=3, k_nuisance=4, seed=3)
    assert torch.equal(again.x["text"], d.x["text"])
    order = mapping_order(fa)
    assert sorted(order.tolist()) == list(range(20))
    assert (fa[order][:12] == torch.arange(4).repeat_interleave(3)).all() and (fa[order][12:] == -1).all()


def test_paired_embeddings_clear_errors():
    with pytest.raises(ValueError, match="dims for 'image' must be >= k_shared \\* per_factor = 16"):
        make_paired_embeddings(dims=8, k_shared=8)
    with pytest.raises(ValueError, match="n must be an integer >= 10"):
        make_paired_embeddings(n=5)
    with pytest.raises(ValueError, match="nuisance_scale must be"):
        make_paired_embeddings(nuisance_scale=-1)
    with pytest.raises(ValueError, match="names must be 2 distinct"):
        make_paired_embeddings(names=("a", "a"))
    with pytest.raises(ValueError, match="dims must be an int or 2 ints"):
        make_paired_embeddings(dims=(8, 8, 8))


# ------------------------------------------------------------------ notebook 07 protocols
def test_cca_recovers_a_linear_pairing_exactly():
    from nbkit.experiments.nb07_retrieval import cca_similarity, evaluate_retrieval

    g = _g(11)
    z = torch.randn(300, 4, generator=g)
    # full-rank views of the same 4 factors (sklearn's NIPALS CCA degenerates on exactly rank-deficient data)
    a = z @ torch.randn(4, 6, generator=g) + 0.01 * torch.randn(300, 6, generator=g)
    b = z @ torch.randn(4, 5, generator=g) + 0.01 * torch.randn(300, 5, generator=g)
    data = MultimodalDataset({"a": a, "b": b}, torch.arange(300) % 2)
    train, test = data.subset(torch.arange(200)), data.subset(torch.arange(200, 300))
    S = cca_similarity(train, test, n_components=4)
    got = evaluate_retrieval(S, test)
    assert got["a->b R@1"] >= 98 and got["b->a R@1"] >= 98
    # class-level hits can only help: any item of the query's class counts
    assert evaluate_retrieval(S, test, labels=True)["rsum"] >= got["rsum"]
    # one canonical pair is not enough to tell 100 items apart
    assert evaluate_retrieval(cca_similarity(train, test, n_components=1), test)["a->b R@1"] < 50


def test_mapping_agreement_by_hand():
    from nbkit.experiments.nb07_retrieval import mapping_agreement

    M = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]])
    W = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    got = mapping_agreement(W, M)
    assert got["mass_on_true"] == pytest.approx((0.5 + 0.0) / 2)
    assert got["chance"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert got["top1_true"] == pytest.approx(0.5)           # row 0: argmax 0 (true); row 1: argmax 0 (false)
    assert got["partners"] == pytest.approx((2.0 + 1.0) / 2)
    with pytest.raises(ValueError, match="same shape"):
        mapping_agreement(W[:2], M)


def test_study_claims_and_tables_on_a_tiny_run(tmp_path, monkeypatch):
    from nbkit.experiments import nb07_retrieval as rx

    train, test = rx.make_data(n=150, dims=8, k_shared=2, k_nuisance=2, seed=0)
    tc = dict(rx.TRAIN, epochs=1)
    st = rx.retrieval_study(train, test, seeds=[0], config=dict(hidden=8), train_config=tc,
                            variants=["CDDS", "w/o sampling"], progress=False)
    assert set(st.metrics.method) == {"CDDS", "CDDS w/o sampling", "InfoNCE", "CCA"}
    assert {"rsum", "image->text R@1", "text->image medr", "train_s"} <= set(st.metrics.columns)
    assert st.models[("InfoNCE", 0)].config.hidden == 8        # the same encoder sizes as CDDS
    with pytest.raises(ValueError, match="unknown variants"):
        rx.retrieval_study(train, test, variants=["w/o everything"])
    with pytest.raises(ValueError, match="unknown baselines"):
        rx.retrieval_study(train, test, baselines=["VSE++"])
    # claims from a constructed per-seed frame: the effects are the per-seed differences
    rows = []
    for s, (full, nce, nodec) in enumerate([(500, 490, 480), (510, 499, 500), (505, 494, 490)]):
        rows += [{"method": "CDDS", "seed": s, "rsum": full}, {"method": "InfoNCE", "seed": s, "rsum": nce},
                 {"method": "CDDS w/o decoupling", "seed": s, "rsum": nodec}]
    frame = pd.DataFrame(rows)
    rel = rx.relative_change(frame)
    assert rel[(rel.method == "CDDS w/o decoupling") & (rel.seed == 0)]["rsum change %"].item() == pytest.approx(-4.0)
    monkeypatch.setenv("NBKIT_CLAIMS", str(tmp_path / "claims.csv"))
    cl = rx.claim_rows(frame, dataset="synthetic test")
    assert len(cl) == 2 and (cl.n_seeds == 3).all() and (cl.dataset == "synthetic test").all()
    assert cl.ours_mean.iloc[0] == pytest.approx((10 + 11 + 11) / 3)
    assert cl.verdict.iloc[0] == "supported" and cl.reference_value.iloc[1] == pytest.approx(-4.6)
    assert (tmp_path / "claims.csv").exists()
    table = rx.summary_table(frame)
    assert "rSum (max 600), CDDS / InfoNCE / CCA" in set(table.quantity)
    assert "505.0 ± 5.0" in table.ours.iloc[0]


def test_inspection_protocols_and_figures(ds):
    from nbkit import viz
    from nbkit.experiments import fit
    from nbkit.experiments import nb07_retrieval as rx

    train, test = ds.split((0.6, 0.4), seed=0)
    model, _ = fit(CDDS, train, seed=0, config=dict(hidden=16), train_config=dict(rx.TRAIN, epochs=1))
    kr = rx.kl_and_related(model, test)
    assert kr["K"].shape == kr["W"].shape == kr["W_bar"].shape == kr["mapping"].shape == (12, 10)
    assert np.allclose(kr["W"].sum(1), 1, atol=1e-5)
    assert (kr["factor_rows"][:6] == np.repeat(np.arange(3), 2)).all()          # grouped by factor
    fig = viz.matrix_row_figure({k: kr[k] for k in ("K", "W_bar", "mapping")})
    assert len(fig.data) == 3 and fig.data[0].colorbar.x < fig.data[1].colorbar.x
    pr = rx.component_probes(model, test)
    assert set(pr.representation) == {"embedding", "semantic component", "modality component"}
    assert set(pr.target) == {"shared factors", "own nuisances"} and len(pr) == 12
    ex = rx.x_semantic_example(model, test, index=3, draws=4)
    assert set(ex.kind) == {"semantic component of the image", "x-semantic mean (from the text)", "x-semantic draw"}
    assert ex[ex.kind == "x-semantic draw"].draw.nunique() == 4
    mean = ex[ex.kind.str.startswith("x-semantic mean")]
    assert np.allclose(mean.hi - mean.value, mean.value - mean.lo)
    fig = viz.x_semantic_figure(ex)
    assert any(t.name == "x-semantic draws" for t in fig.data)
    jm = rx.joint_map({"CDDS": model}, test, method="pca", n=20)
    assert len(jm) == 40 and set(jm.modality) == {"image", "text"} and "factor" in jm
    assert viz.joint_map_figure(jm).data
    with pytest.raises(ValueError, match="matrix_row_figure needs"):
        viz.matrix_row_figure({})
    with pytest.raises(ValueError, match="x_semantic_figure needs"):
        viz.x_semantic_figure(pd.DataFrame())
    with pytest.raises(TypeError, match="must be a trained CDDS"):
        rx.components(InfoNCERetrieval.for_dataset(ds), test)
    with pytest.raises(ValueError, match="index must be an integer"):
        rx.x_semantic_example(model, test, index=len(test))


def test_chance_rsum_closed_form_and_monte_carlo():
    from nbkit.evaluate import retrieval_metrics
    from nbkit.experiments.nb07_retrieval import chance_rsum

    assert chance_rsum(100) == pytest.approx(2 * (1 + 5 + 10))
    labels = np.arange(60) % 6
    assert chance_rsum(labels=np.arange(40)) == pytest.approx(chance_rsum(40))      # distinct labels: instance chance
    g = torch.Generator().manual_seed(0)
    sims = [retrieval_metrics(torch.rand(60, 60, generator=g), None, similarity="precomputed",
                              labels=torch.as_tensor(labels))["rsum"] for _ in range(300)]
    assert np.mean(sims) == pytest.approx(chance_rsum(labels=labels), rel=0.02)


def test_benchmark_script_runs_small_and_reports_what_does_not_fit(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cdds.py"
    spec = importlib.util.spec_from_file_location("bench_cdds", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    # the explicit per-sample KL grows with B d^2, the fused one does not hold that tensor
    assert bench.estimate_bytes("rs+sampling (explicit K)", 4096, 512) > 50 * bench.estimate_bytes("rs+sampling", 4096, 512)
    assert bench.estimate_bytes("infonce", 4096, 64) > 3 * bench.estimate_bytes("infonce", 2048, 64)
    for m in bench.METHODS:                                   # every step runs forward and backward
        bench.make_step(m, 8, 4)()
    assert bench.main(["--batches", "8,16", "--d", "4", "--dims", "4,8", "--batch", "8", "--repeats", "1",
                       "--methods", "infonce,rs+sampling"]) == 0
    out = capsys.readouterr().out
    assert "batch sweep (d = 4)" in out and "d sweep (B = 8)" in out and "growth order in B (time)" in out
    assert out.count("rs+sampling ") >= 4
    row = bench.measure("rs+sampling (explicit K)", 4096, 1024, max_gb=1.0)
    assert row["status"].startswith("does not fit in 1 GB")
    with pytest.raises(SystemExit):
        bench.main(["--methods", "sgd"])
