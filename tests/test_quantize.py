"""Quantizers (nbkit.nn.quantize): EMA updates against hand computations and the reference
formulas, straight-through gradients, dead-code reset, usage, FSQ against
vector-quantize-pytorch, clear errors."""
import math

import pytest
import torch
import torch.nn.functional as F

from nbkit.models.srcid import SRCIDConfig
from nbkit.nn.quantize import FSQ, ResidualVQ, VectorQuantizerEMA, codebook_usage, make_quantizer


def _vq(K=3, D=2, **kw):
    vq = VectorQuantizerEMA(K, D, **kw)
    vq.embedding.copy_(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[:K, :D])
    vq.ema_weight.copy_(vq.embedding * 2.0)
    vq.ema_count.fill_(2.0)
    return vq


def test_ema_update_matches_a_hand_computation():
    vq = _vq(decay=0.5, eps=0.1)
    x = torch.tensor([[0.1, 0.0], [0.9, 0.2], [1.1, -0.2], [1.0, 0.3]])
    idx = vq.nearest(x)
    assert idx.tolist() == [0, 1, 1, 1]
    vq.ema_update(idx, x)
    # by hand: counts (1, 3, 0); N = .5*2 + .5*counts = (1.5, 2.5, 1.0); n = 5
    # Laplace: (N + .1) / (5 + 3*.1) * 5 = (1.6, 2.6, 1.1) / 5.3 * 5
    N = torch.tensor([1.6, 2.6, 1.1]) / 5.3 * 5
    assert torch.allclose(vq.ema_count, N, atol=1e-6)
    # m_k = .5 * 2 e_k + .5 * sum of the assigned rows
    m = torch.tensor([[0.0 + 0.05, 0.0], [1.0 + 0.5 * 3.0, 0.5 * 0.3], [0.0, 1.0]])
    assert torch.allclose(vq.ema_weight, m, atol=1e-6)
    assert torch.allclose(vq.embedding, m / N[:, None], atol=1e-6)


def _reference_mm_ema(emb, count, weight, a, v, decay, eps):
    """The reference's MM-EMA for two modalities (haihuangcode/CMG, code/src/model/main_model_2.py,
    Cross_VQEmbeddingEMA.forward), written out: both assigned first, then audio's update with
    0.5 * own + 0.5 * cross sums, then video's, each with its own Laplace smoothing."""
    M = emb.shape[0]

    def assign(f, e):
        d = (e ** 2).sum(1) + (f ** 2).sum(1, keepdim=True) - 2 * f @ e.t()
        return d.argmin(-1)

    ai, vi = assign(a, emb), assign(v, emb)
    A, V = F.one_hot(ai, M).double(), F.one_hot(vi, M).double()
    count, weight = count.double().clone(), weight.double().clone()
    for E, own, other in ((A, a, v), (V, v, a)):
        count = decay * count + (1 - decay) * E.sum(0)
        n = count.sum()
        count = (count + eps) / (n + M * eps) * n
        weight = decay * weight + 0.5 * (1 - decay) * (E.t() @ own.double()) + 0.5 * (1 - decay) * (E.t() @ other.double())
        emb = weight / count[:, None]
    return ai, vi, count, weight, emb


def test_cross_modal_ema_matches_the_reference_formula():
    g = torch.Generator().manual_seed(0)
    vq = VectorQuantizerEMA(6, 4, decay=0.9, eps=1e-5, dead_after=None)
    vq.embedding.copy_(torch.randn(6, 4, generator=g))
    vq.ema_weight.copy_(vq.embedding.clone())
    vq.ema_count.fill_(1.0)
    a, v = torch.randn(20, 4, generator=g), torch.randn(20, 4, generator=g)
    ref = _reference_mm_ema(vq.embedding.clone(), vq.ema_count.clone(), vq.ema_weight.clone(), a, v, 0.9, 1e-5)
    vq.train()
    qa, qv = vq.quantize_many([a, v], ema_targets=[0.5 * a + 0.5 * v, 0.5 * v + 0.5 * a])
    assert torch.equal(qa.codes[:, 0], ref[0]) and torch.equal(qv.codes[:, 0], ref[1])
    assert torch.allclose(vq.ema_count.double(), ref[2], atol=1e-5)
    assert torch.allclose(vq.ema_weight.double(), ref[3], atol=1e-5)
    assert torch.allclose(vq.embedding.double(), ref[4], atol=1e-5)


def test_nearest_code_is_the_brute_force_argmin():
    g = torch.Generator().manual_seed(1)
    vq = VectorQuantizerEMA(50, 8)
    vq.embedding.copy_(torch.randn(50, 8, generator=g))
    x = torch.randn(200, 8, generator=g)
    assert torch.equal(vq.nearest(x), torch.cdist(x, vq.embedding).argmin(1))


@pytest.mark.parametrize("make", [lambda: VectorQuantizerEMA(16, 5), lambda: ResidualVQ(16, 5, n_stages=3)])
def test_straight_through_gradient_is_identity(make):
    q = make().train()
    z = torch.randn(4, 7, 5, requires_grad=True)
    w = torch.randn(4, 7, 5)
    out = q(z)
    assert torch.allclose(out.quantized, out.hard, atol=1e-6)          # the forward value is the code
    (out.quantized * w).sum().backward()
    assert torch.equal(z.grad, w)                                         # d quantized / d z = I


def test_commitment_is_the_mse_to_the_chosen_code():
    vq = _vq()
    z = torch.tensor([[0.1, 0.2], [0.8, 0.1]], requires_grad=True)
    out = vq.eval()(z)
    assert out.commitment.item() == pytest.approx(((0.1 ** 2 + 0.2 ** 2) + (0.2 ** 2 + 0.1 ** 2)) / 4)
    out.commitment.backward()
    assert torch.allclose(z.grad, 2 * (z.detach() - out.hard) / 4)       # codes get no gradient


@pytest.mark.parametrize("reset_ema", [False, True])
def test_dead_codes_are_reset_near_used_codes_and_what_the_next_ema_step_does(reset_ema):
    vq = VectorQuantizerEMA(8, 3, dead_after=3, active_window=2, reset_noise=1e-3, reset_ema=reset_ema,
                            seed=0).train()
    assert vq.reset_ema is reset_ema and VectorQuantizerEMA(4, 2).reset_ema is False   # reference by default
    target = torch.tensor([[2.0, -1.0, 0.5]])
    for _ in range(4):                                     # counters start at -1 (reference code): 0, 1, 2, 3
        vq(target.repeat(5, 1))
    assert int(vq.n_resets) == 0                           # not yet more than dead_after = 3 steps unused
    vq(target.repeat(5, 1))
    assert int(vq.n_resets) == 7                           # all 7 codes never chosen
    used = vq.nearest(target)[0]
    others = [k for k in range(8) if k != int(used)]
    dist = (vq.embedding[others] - vq.embedding[used]).abs().max()
    assert dist <= 1e-3 + 1e-6                             # reset at the used code, within the noise
    before = vq.embedding[others].clone()
    # the next EMA step, in which the reset codes are not chosen, written out (reference code):
    # N <- g N + (1-g) n, Laplace-smoothed; m <- g m + (1-g) sum of assigned targets; e = m / N
    g, eps = vq.decay, vq.eps
    N = g * vq.ema_count.clone()
    N[used] += (1 - g) * 5
    N = (N + eps) / (N.sum() + 8 * eps) * N.sum()
    m = g * vq.ema_weight.clone()
    m[used] += (1 - g) * 5 * target[0]
    vq(target.repeat(5, 1))
    assert torch.allclose(vq.embedding, m / N[:, None], atol=1e-5)
    if reset_ema:                                          # ours: the reset survives
        assert torch.allclose(vq.embedding[others], before, atol=1e-4)
    else:                                                  # reference: recomputed from the stale statistics
        assert (vq.embedding[others] - before).abs().max() > 0.1


def test_eval_mode_and_update_false_leave_the_codebook_alone():
    vq = VectorQuantizerEMA(8, 3)
    before = vq.embedding.clone()
    vq.eval()(torch.randn(10, 3))
    vq.train()(torch.randn(10, 3), update=False)
    assert torch.equal(vq.embedding, before) and torch.equal(vq.unused, -torch.ones(8))


def test_residual_vq_adds_stage_codes_of_the_residuals():
    rvq = ResidualVQ(16, 4, n_stages=3).eval()
    for s in rvq.stages:
        s.embedding.normal_()
    z = torch.randn(30, 4)
    out = rvq(z)
    assert out.codes.shape == (30, 3)
    r, total = z.clone(), torch.zeros_like(z)
    for s, stage in enumerate(rvq.stages):
        k = stage.nearest(r)
        assert torch.equal(out.codes[:, s], k)
        total += stage.embedding[k]
        r = r - stage.embedding[k]
    assert torch.allclose(out.hard, total, atol=1e-6)
    assert ((z - out.hard) ** 2).mean() <= ((z - rvq.stages[0].embedding[out.codes[:, 0]]) ** 2).mean() + 1e-6


def test_codebook_usage_by_hand_and_per_codebook():
    u = codebook_usage(torch.tensor([0, 0, 1, 1]), 4)
    assert u["perplexity"] == pytest.approx(2.0) and u["active"] == 0.5 and u["n"] == 4
    assert codebook_usage(torch.arange(8), 8)["perplexity"] == pytest.approx(8.0)
    p = torch.tensor([0.5, 0.25, 0.25])
    u = codebook_usage(torch.tensor([0, 0, 1, 2]), 3)
    assert u["perplexity"] == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 3\)"):
        codebook_usage(torch.tensor([0, 3]), 3)
    with pytest.raises(TypeError, match="integer code indices"):
        codebook_usage(torch.tensor([0.5]), 3)


def test_clear_errors_name_the_argument():
    vq = VectorQuantizerEMA(8, 4)
    with pytest.raises(ValueError, match=r"z has last dimension 5 but the codebook dimension is 4"):
        vq(torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"z must have shape \[N, 4\]"):
        vq(torch.randn(4))
    with pytest.raises(ValueError, match="z must be finite, got 1 NaN"):
        vq(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]))
    with pytest.raises(TypeError, match="z must be a floating-point tensor"):
        vq(torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"n_codes must be an integer >= 1, got 0"):
        VectorQuantizerEMA(0, 4)
    with pytest.raises(ValueError, match=r"decay must be a finite number >= 0 and < 1, got 1.0"):
        VectorQuantizerEMA(8, 4, decay=1.0)
    with pytest.raises(TypeError, match=r"reset_ema must be True or False, got 'no'"):
        VectorQuantizerEMA(8, 4, reset_ema="no")
    with pytest.raises(TypeError, match=r"reset_ema must be True or False, got 1"):
        SRCIDConfig(reset_ema=1)
    with pytest.raises(ValueError, match=r"levels\[1\] must be an integer >= 3, got 2"):
        FSQ((5, 2), dim=4)
    with pytest.raises(ValueError, match="kind must be one of"):
        make_quantizer("pq", 8, 4)
    with pytest.raises(ValueError, match=r"zs\[1\] has last dimension 3"):
        vq.quantize_many([torch.randn(2, 4), torch.randn(2, 3)])


def test_fsq_grid_and_indices():
    f = FSQ((5, 5, 4, 4), dim=4)
    assert f.n_codes == 400
    z = torch.randn(500, 4) * 3
    out = f(z)
    normed, idx = f.quantize_latent(z)
    assert torch.equal(out.codes[:, 0], idx) and int(idx.min()) >= 0 and int(idx.max()) < 400
    half = torch.tensor([2.0, 2.0, 2.0, 2.0])
    levels = (normed * half).round()
    assert set(levels[:, 0].tolist()) <= {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert set(levels[:, 2].tolist()) <= {-2.0, -1.0, 0.0, 1.0}     # 4 levels: -2..1
    assert len(torch.unique(idx)) > 100                              # spread out over the grid


def test_fsq_codes_equal_vector_quantize_pytorch():
    vqp = pytest.importorskip("vector_quantize_pytorch", reason="vector-quantize-pytorch (the 'bench' extra) is not installed")
    torch.manual_seed(0)
    z = torch.randn(3, 40, 4) * 2
    ours, theirs = FSQ((5, 5, 4, 4), dim=4), vqp.FSQ([5, 5, 4, 4])
    o = ours(z)
    q, idx = theirs(z)
    assert torch.equal(o.codes[..., 0], idx.long())
    assert torch.allclose(o.quantized, q, atol=1e-6)
    # with projections: copy theirs into ours, same inputs
    ours, theirs = FSQ((5, 5, 4, 4), dim=16), vqp.FSQ([5, 5, 4, 4], dim=16)
    ours.project_in.load_state_dict(theirs.project_in.state_dict())
    ours.project_out.load_state_dict(theirs.project_out.state_dict())
    z = torch.randn(2, 30, 16)
    o = ours(z)
    q, idx = theirs(z)
    assert torch.equal(o.codes[..., 0], idx.long())
    assert torch.allclose(o.quantized, q, atol=1e-5)
