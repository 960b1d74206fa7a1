"""Properties of the representation losses that a wrong implementation would break."""
import math

import pytest
import torch

from nbkit.losses import covariance, decorrelation, info_nce, orthogonality, regression_alignment


def _zca_white(n=512, d=8, seed=0):
    """Data made exactly white (sample covariance = I) by a ZCA transform."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)
    xc = x - x.mean(0)
    cov = xc.T @ xc / (n - 1)
    evals, evecs = torch.linalg.eigh(cov)
    w = evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    return (xc @ w).float(), x.float()


def _correlated(rho, n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, generator=g), torch.randn(n, generator=g)
    return torch.stack([a, rho * a + math.sqrt(1 - rho ** 2) * b], 1)


# ---------------------------------------------------------------- decorrelation
def test_decorrelation_zero_on_white_data_and_positive_before_whitening():
    white, raw = _zca_white()
    assert torch.allclose(covariance(white), torch.eye(8), atol=1e-3)
    assert decorrelation(white).item() < 1e-6
    assert decorrelation(raw).item() > 1e-2


def test_decorrelation_grows_monotonically_with_correlation_and_equals_rho_squared():
    rhos = [0.0, 0.2, 0.4, 0.6, 0.8, 0.95]
    vals = [decorrelation(_correlated(r)).item() for r in rhos]
    assert all(b > a for a, b in zip(vals, vals[1:])), vals
    # two dims: L_dec = 2 C_12^2 / (2*1) = sample correlation^2
    z = _correlated(0.6)
    r = torch.corrcoef(z.T)[0, 1]
    assert decorrelation(z).item() == pytest.approx(r.item() ** 2, rel=1e-3)


def test_decorrelation_is_scale_and_shift_invariant_and_normalised_by_d():
    _, raw = _zca_white(d=6)
    base = decorrelation(raw)
    assert decorrelation(raw * torch.tensor([1, 10, 0.1, 3, 5, 7.0]) + 4).item() == pytest.approx(base.item(), rel=1e-3)
    # fully correlated data reaches 1 (mean squared off-diagonal correlation) for any d
    for d in (2, 5, 32):
        z = torch.randn(100, 1).repeat(1, d)
        assert decorrelation(z).item() == pytest.approx(1.0, abs=1e-3)


def test_decorrelation_constant_dimension_stays_finite_with_finite_gradient():
    z = torch.randn(16, 4)
    z[:, 0] = 3.0
    z.requires_grad_(True)
    loss = decorrelation(z)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


# ---------------------------------------------------------------- orthogonality
def test_orthogonality_zero_for_orthogonal_column_spaces_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    n = 64
    x = torch.randn(n, 12, generator=g, dtype=torch.float64)
    x = x - x.mean(0)                          # centred columns
    q, _ = torch.linalg.qr(x)                  # orthonormal, still centred (span of centred cols)
    s, p = q[:, :6].float() * 5, q[:, 6:].float() * 0.3
    assert orthogonality(s, p).item() < 1e-8
    p_mixed = p + 0.5 * s[:, :6]
    assert orthogonality(s, p_mixed).item() > 1e-2
    # identical spaces: each shared column matches one private column -> d / d^2
    assert orthogonality(s, s).item() == pytest.approx(1 / 6, rel=1e-4)


def test_orthogonality_accepts_different_widths_and_rejects_unpaired_rows():
    assert orthogonality(torch.randn(10, 3), torch.randn(10, 5)).ndim == 0
    with pytest.raises(ValueError, match="s and p must hold the same samples"):
        orthogonality(torch.randn(10, 3), torch.randn(9, 3))


# ---------------------------------------------------------------- InfoNCE
def test_info_nce_unrelated_pairs_near_log_batch_size():
    g = torch.Generator().manual_seed(0)
    B = 32
    a, b = torch.randn(B, 4096, generator=g), torch.randn(B, 4096, generator=g)
    assert info_nce(a, b, tau=1.0).item() == pytest.approx(math.log(B), abs=0.05)


def test_info_nce_aligned_distinct_pairs_near_zero_at_low_temperature():
    a = torch.eye(16) * 3.0                      # distinct (orthogonal) rows
    assert info_nce(a, a * 2.0, tau=0.05).item() < 1e-6   # scale-free: rows are L2-normalised
    # and a permutation of the pairing is punished
    assert info_nce(a, a.roll(1, 0), tau=0.05).item() > 10


def test_info_nce_symmetric_and_one_sided_version_differs():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    b[:, 0] += 3 * a[:, 0]
    assert info_nce(a, b).item() == pytest.approx(info_nce(b, a).item(), rel=1e-6)
    one = info_nce(a, b, symmetric=False).item()
    other = info_nce(b, a, symmetric=False).item()
    assert one != pytest.approx(other)
    assert info_nce(a, b).item() == pytest.approx((one + other) / 2, rel=1e-6)


# ---------------------------------------------------------------- regression alignment
def test_regression_alignment_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    assert regression_alignment(a, b).item() == pytest.approx(5 / 4)        # sum sq / (B d)
    assert regression_alignment(a, 3 * a, kind="cos").item() == pytest.approx(0.0, abs=1e-6)
    assert regression_alignment(a, -a, kind="cos").item() == pytest.approx(2.0)
    assert regression_alignment(a[:1], b[:1]).item() == pytest.approx(0.5)  # one pair is fine
    with pytest.raises(ValueError, match="regression_alignment: kind must be 'mse' or 'cos', got 'l1'"):
        regression_alignment(a, b, kind="l1")


# ---------------------------------------------------------------- errors and gradients
@pytest.mark.parametrize("fn,name", [
    (lambda t: decorrelation(t), "decorrelation: z"),
    (lambda t: info_nce(t, t), "info_nce: a"),
    (lambda t: orthogonality(t, t), "orthogonality: s"),
    (lambda t: covariance(t), "covariance: z"),
])
def test_batch_smaller_than_two_is_a_clear_error(fn, name):
    with pytest.raises(ValueError, match=f"{name} must hold at least 2 samples, got 1"):
        fn(torch.randn(1, 4))


def test_bad_shapes_and_arguments_are_clear_errors():
    with pytest.raises(ValueError, match=r"z must have shape \[B, d\]"):
        decorrelation(torch.randn(4, 3, 2))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        decorrelation(torch.randn(8, 1))
    with pytest.raises(ValueError, match="info_nce: tau must be a finite number > 0, got 0.0"):
        info_nce(torch.randn(4, 3), torch.randn(4, 3), tau=0)
    with pytest.raises(ValueError, match="same width d"):
        info_nce(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        decorrelation([[1.0, 2.0], [3.0, 4.0]])


def test_gradients_flow_through_every_loss():
    a = torch.randn(12, 6, requires_grad=True)
    b = torch.randn(12, 6, requires_grad=True)
    for loss in (info_nce(a, b), decorrelation(a), orthogonality(a, b), regression_alignment(a, b)):
        a.grad = b.grad = None
        loss.backward()
        assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0
    # a gradient step on L_dec decorrelates
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(256, 1, generator=g) + 0.3 * torch.randn(256, 4, generator=g)).requires_grad_(True)
    before = decorrelation(z).item()
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        decorrelation(z).backward()
        opt.step()
    assert decorrelation(z).item() < 0.2 * before


# ---------------------------------------------------------------- docstring statements (issue 12 item 7)
def _mean_info_nce(d, tau, B, seeds=10):
    vals = []
    for s in range(seeds):
        g = torch.Generator().manual_seed(s)
        vals.append(info_nce(torch.randn(B, d, generator=g), torch.randn(B, d, generator=g), tau=tau).item())
    return sum(vals) / len(vals)


def test_info_nce_unrelated_pairs_sit_at_log_b_plus_one_over_2_d_tau_squared():
    """The docstring: about log(B) + 1/(2 d tau^2) while that excess is small; near
    log(B) + 0.8 at tau=0.1, d=64; far above log(B) for small d. NOT log(B) in general."""
    for d, tau in ((512, 0.25), (256, 0.5)):
        excess = _mean_info_nce(d, tau, 128) - math.log(128)
        assert excess == pytest.approx(1 / (2 * d * tau ** 2), abs=0.006), (d, tau, excess)
    excess = _mean_info_nce(64, 0.1, 256) - math.log(256)
    assert 0.65 < excess < 0.9, excess                       # ~0.78 = 1 / (2 * 64 * 0.01)
    assert _mean_info_nce(16, 0.1, 64) - math.log(64) > 2.0  # small d: far above log B


def test_orthogonality_reference_values_stated_in_the_docstring():
    g = torch.Generator().manual_seed(0)
    n, d = 256, 6
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    xc = x - x.mean(0)
    white = xc @ torch.linalg.inv(torch.linalg.cholesky(xc.T @ xc / (n - 1))).T   # uncorrelated columns
    assert orthogonality(white, white).item() == pytest.approx(1 / d, rel=1e-6)   # p = s: 1/d, not 1
    rot, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    assert orthogonality(white, white @ rot).item() == pytest.approx(1 / d, rel=1e-6)  # same space, rotated
    rank1 = torch.randn(n, 1, generator=g, dtype=torch.float64)
    s1 = rank1 * torch.rand(1, d, generator=g, dtype=torch.float64) + 1.0
    p1 = -2 * rank1 * torch.rand(1, 3, generator=g, dtype=torch.float64)
    assert orthogonality(s1, p1).item() == pytest.approx(1.0, rel=1e-6)            # the maximum: rank one
    for seed in range(5):
        gg = torch.Generator().manual_seed(seed)
        assert 0 <= orthogonality(torch.randn(40, 5, generator=gg), torch.randn(40, 7, generator=gg)).item() <= 1


# ---------------------------------------------------------------- extreme magnitudes (issue 14)
@pytest.mark.parametrize("scale", [1e30, 1e-30, 1e-9, 1e15])
def test_losses_at_extreme_magnitudes_equal_their_value_at_unit_scale(scale):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 8, generator=g)
    b = a + 0.3 * torch.randn(16, 8, generator=g)
    z = torch.randn(64, 1, generator=g) + 0.3 * torch.randn(64, 4, generator=g)
    pairs = [
        (lambda s: info_nce(a * s, b * s), 1e-4),
        (lambda s: decorrelation(z * s), 1e-4),
        (lambda s: orthogonality(z * s, z[:, :2] * s), 1e-4),
        (lambda s: regression_alignment(a * s, b * s, kind="cos"), 1e-5),
    ]
    for fn, tol in pairs:
        assert fn(scale).item() == pytest.approx(fn(1.0).item(), abs=tol, rel=1e-3), fn
    # gradients stay finite and point the same way as at unit scale (up to the scale factor)
    x = (a * scale).requires_grad_(True)
    info_nce(x, b * scale).backward()
    x1 = a.clone().requires_grad_(True)
    info_nce(x1, b).backward()
    assert torch.isfinite(x.grad).all()
    assert torch.allclose(x.grad * scale, x1.grad, rtol=1e-3, atol=1e-5)


def test_normal_range_takes_the_plain_path_bit_for_bit():
    """The extreme-magnitude fallback must not change a single bit of ordinary values (the
    notebooks' numbers): compare with the formulas written out plainly."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(32, 16, generator=g), torch.randn(32, 16, generator=g)
    an, bn = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    lg = an @ bn.T / 0.1
    t = torch.arange(32)
    plain = 0.5 * (torch.nn.functional.cross_entropy(lg, t) + torch.nn.functional.cross_entropy(lg.T, t))
    assert torch.equal(info_nce(a, b), plain)
    zc = a - a.mean(0, keepdim=True)
    s = zc / torch.sqrt(zc.pow(2).sum(0, keepdim=True) / 31 + 1e-5)
    assert torch.equal(covariance(a), s.T @ s / 31)
    sc, pc = a - a.mean(0, keepdim=True), b - b.mean(0, keepdim=True)
    sc, pc = sc / (sc.norm(dim=0, keepdim=True) + 1e-8), pc / (pc.norm(dim=0, keepdim=True) + 1e-8)
    assert torch.equal(orthogonality(a, b), (sc.T @ pc).pow(2).sum() / 256)
    assert torch.equal(regression_alignment(a, b, kind="cos"), (1 - torch.nn.functional.cosine_similarity(a, b, dim=1)).mean())


def test_tiny_variance_batches_are_rescaled_but_constant_columns_still_guarded():
    z = _correlated(0.6, n=2000) * 1e-4                      # every variance ~1e-8 < eps=1e-5
    assert decorrelation(z).item() == pytest.approx(decorrelation(z * 1e4).item(), rel=1e-3)
    const = torch.full((16, 3), 2.0)
    assert decorrelation(const).item() == 0.0 and orthogonality(const, torch.randn(16, 2)).item() == 0.0
    zeros = torch.zeros(8, 4)
    assert info_nce(zeros, torch.randn(8, 4)).item() == pytest.approx(math.log(8), abs=1e-5)   # zero rows stay zero
