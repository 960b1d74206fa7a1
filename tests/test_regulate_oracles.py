"""Oracle tests: every balance regulator against its public reference code.

For each method the reference formula is written out below FROM READING the public code
(cited per test; nothing is copied), with the model's forward pass spelled out by hand from
its modules (encoders, fused head, auxiliary heads). nbkit's regulator runs inside the
Trainer's real step; before every step the harness records the parameters, the batch and the
regulator's random-generator state, so the reference sees the same inputs and the same random
draws. Both sides must agree on the coefficients and on every parameter's final gradient to
about 1e-6 (float32).
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from nbkit.data import make_synthetic
from nbkit.models import EarlyFusion
from nbkit.regulate import (AGM, MMPareto, OGMGE, PMR, InfoReg, RedReg, agm_coefficients, min_norm_weights,
                            ogm_coefficients, pmr_coefficients)
from nbkit.train import Trainer

TOL = dict(atol=1e-6, rtol=1e-5)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _data(first_strong: bool, scale: float = 1.0):
    """Two modalities "a" (the reference's audio: the model's first encoder) and "v"."""
    snr = [8.0, 0.3] if first_strong else [0.3, 8.0]
    ds = make_synthetic(n=192, dims=[8, 6], snr=snr, names=["a", "v"], n_classes=3, seed=0)
    if scale != 1.0:
        ds = type(ds)({m: t * scale for m, t in ds.x.items()}, ds.y)
    return ds


def _batches(ds, n_epochs, per_epoch, size=32):
    return [[ds[(i % (len(ds) // size)) * size:((i % (len(ds) // size)) + 1) * size]
             for i in range(e * per_epoch, (e + 1) * per_epoch)] for e in range(n_epochs)]


def _model(ds, aux, seed=0):
    torch.manual_seed(seed)
    return EarlyFusion.for_dataset(ds, aux_heads=aux, d=8, hidden=16)


def run_nbkit(model, reg, epochs_batches, lr=0.05):
    """nbkit's Trainer step over fixed batches; one record per step with the parameters
    before the step, the batch, the generator state, the diagnostics and the final grads."""
    tr = Trainer(model, epochs=len(epochs_batches), optimizer="sgd", lr=lr, batch_size=32, progress=False)
    tr.regulator = reg
    tr.optimizer = tr.make_optimizer()
    reg.attach(model, tr)
    tr._epoch = 0
    recs = []
    real_step, real_after = tr.optimizer.step, reg.after_backward

    def step(*a, **k):
        recs[-1]["grads"] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        return real_step(*a, **k)

    def after(*a, **k):
        d = real_after(*a, **k)
        recs[-1]["diag"] = d
        return d

    tr.optimizer.step, reg.after_backward = step, after
    E = len(epochs_batches)
    for e, batches in enumerate(epochs_batches):
        reg.on_epoch_start(e, E)
        for b in batches:
            recs.append({"epoch": e, "state": copy.deepcopy(model.state_dict()), "batch": b,
                         "gen": reg.gen.get_state().clone() if getattr(reg, "gen", None) is not None else None})
            tr._step(b, e)
        recs[-1]["epoch_end"] = reg.on_epoch_end(e)
    return recs


def _fresh(ds, aux, state):
    m = _model(ds, aux)
    m.load_state_dict(state)
    m.train()
    m.zero_grad(set_to_none=True)
    return m


def _gen(state):
    g = torch.Generator()
    g.set_state(state)
    return g


def _assert_grads(model, recorded):
    mine = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert set(mine) == set(recorded)
    for n in mine:
        torch.testing.assert_close(recorded[n], mine[n], **TOL, msg=lambda s, n=n: f"{n}: {s}")


def _enc(model, x):
    """The reference forward written out: per-modality features, fused logits."""
    a = model.encoders["a"](x["a"])
    v = model.encoders["v"](x["v"])
    return a, v, model.head(torch.cat([a, v], 1))


def _split(model, a, v):
    """The reference's per-modality read-out of a concat head: h_m W_m^T + b / 2."""
    W, b, d = model.head.weight, model.head.bias, a.shape[1]
    return a @ W[:, :d].t() + b / 2, v @ W[:, d:].t() + b / 2


def _score(logits, y):
    """sum_i softmax(logits)_i[y_i] (OGM-GE, PMR, InfoReg)."""
    logits = logits.detach()
    return sum(F.softmax(logits, 1)[i, y[i]] for i in range(len(y)))


# =============================================================================== OGM-GE
def _ogm_reference_coeff(score_a, score_v, alpha):
    """GeWu-Lab/OGM-GE_CVPR2022 main.py, train_epoch: ratio_v = score_v / score_a; if
    ratio_v > 1 the visual coefficient is 1 - tanh(alpha * relu(ratio_v)) and audio's 1,
    else (a tie included) audio's is 1 - tanh(alpha * relu(1 / ratio_v)) and visual's 1."""
    ratio_v = score_v / score_a
    if ratio_v > 1:
        return 1.0, 1 - math.tanh(alpha * max(ratio_v, 0.0))
    return 1 - math.tanh(alpha * max(1 / ratio_v, 0.0)), 1.0


def test_ogm_coefficients_match_the_reference_including_the_tie():
    for sa, sv in [(30.0, 10.0), (10.0, 40.0), (5.0, 5.0), (1e-3, 2e-3), (12.5, 12.5000001)]:
        ca, cv = _ogm_reference_coeff(sa, sv, 0.8)
        got = ogm_coefficients({"a": sa, "v": sv}, 0.8)
        assert got["a"] == pytest.approx(ca, abs=1e-12) and got["v"] == pytest.approx(cv, abs=1e-12)
    # the exact tie: the reference scales the FIRST modality (its else branch)
    assert ogm_coefficients({"a": 5.0, "v": 5.0}, 0.8) == pytest.approx({"a": 1 - math.tanh(0.8), "v": 1.0})
    # BalanceBenchmark's rule (ratio > 1 per modality) leaves both alone at a tie
    assert ogm_coefficients({"a": 5.0, "v": 5.0}, 0.8, tie="none") == {"a": 1.0, "v": 1.0}


@pytest.mark.parametrize("first_strong", [True, False])
def test_ogm_ge_gradients_match_the_reference(first_strong):
    """Reference: GeWu-Lab/OGM-GE_CVPR2022 main.py (train_epoch), fused CE alone, scores
    from the split concat head, then for every encoder weight tensor
    g <- g * coeff + N(0, std(g) + 1e-8) with std taken from g BEFORE the scaling. The
    reference selects 4-D conv kernels; ours every encoder tensor with ndim >= 2."""
    ds = _data(first_strong)
    reg = OGMGE(seed=3)
    recs = run_nbkit(_model(ds, aux=False), reg, _batches(ds, 2, 2))
    for r in recs:
        m = _fresh(ds, False, r["state"])
        b = r["batch"]
        a, v, out = _enc(m, b.x)
        out_a, out_v = _split(m, a, v)
        F.cross_entropy(out, b.y).backward()
        ca, cv = _ogm_reference_coeff(float(_score(out_a, b.y)), float(_score(out_v, b.y)), 0.8)
        assert r["diag"]["coeff/a"] == pytest.approx(ca, abs=1e-6)
        assert r["diag"]["coeff/v"] == pytest.approx(cv, abs=1e-6)
        g = _gen(r["gen"])
        for mod, c in (("a", ca), ("v", cv)):
            for p in m.encoders[mod].parameters():
                if p.grad.dim() >= 2:
                    p.grad = p.grad * c + torch.zeros_like(p.grad).normal_(0, p.grad.std().item() + 1e-8, generator=g)
        _assert_grads(m, r["grads"])
    scaled = {m for r in recs for m in ("a", "v") if r["diag"][f"coeff/{m}"] < 1.0}
    assert scaled, "the modulation never acted"
    SCALED.update(scaled)


SCALED: set = set()


def test_ogm_ge_oracle_covered_both_branches():
    assert SCALED == {"a", "v"}, f"only {SCALED} was ever scaled: the reference's other branch went untested"


# =============================================================================== PMR
def test_pmr_weight_is_constant_alpha_for_the_weaker_modality():
    # the case: a score ratio of 1.05 (public rule alpha = 0.6; clipped rule 0.03)
    assert pmr_coefficients({"a": 1.05, "v": 1.0}) == {"a": 0.0, "v": 1.0}
    assert pmr_coefficients({"a": 1.05, "v": 1.0}, rule="clipped")["v"] == pytest.approx(0.05)
    assert pmr_coefficients({"a": 2.0, "v": 2.0}) == {"a": 0.0, "v": 0.0}         # tie: neither
    assert pmr_coefficients({"a": 1.0, "v": 3.0, "t": 2.0}) == {"a": 1.0, "v": 0.0, "t": 1.0}


def _eu_dist(x, c):
    """The reference's EU_dist: sqrt(<x_i - c_j, x_i - c_j>) pair by pair."""
    return torch.stack([torch.stack([torch.sqrt(torch.dot(x[i] - c[j], x[i] - c[j])) for j in range(len(c))])
                        for i in range(len(x))])


@pytest.mark.parametrize("first_strong", [True, False])
def test_pmr_gradients_match_the_reference(first_strong):
    """Reference: fanyunfeng-bit/Modal-Imbalance-PMR main_Prototype_grad.py (train_epoch):
    sim_m = -EU_dist(h_m, proto_m); ratio = sum softmax(sim_a)[y] / sum softmax(sim_v)[y];
    ratio > 1 -> loss = CE(out) + alpha CE(sim_v); ratio < 1 -> CE(out) + alpha CE(sim_a);
    tie -> CE(out). Same step in GeWu-Lab/BalanceBenchmark PMR_trainer.py."""
    ds = _data(first_strong)
    reg = PMR()
    model = _model(ds, aux=False)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        full = model(ds[:96])
        proto = {m: torch.stack([full.features[m][ds.y[:96] == k].mean(0) for k in range(3)])
                 + 0.05 * torch.randn(3, 8, generator=g) for m in ("a", "v")}
    reg.proto = {m: p.clone() for m, p in proto.items()}
    orig_attach = reg.attach
    reg.attach = lambda mdl, tr: (orig_attach(mdl, tr), setattr(reg, "proto", {m: p.clone() for m, p in proto.items()}))
    recs = run_nbkit(model, reg, _batches(ds, 1, 3))
    weak_seen = set()
    for r in recs:
        m = _fresh(ds, False, r["state"])
        b = r["batch"]
        a, v, out = _enc(m, b.x)
        sim_a, sim_v = -_eu_dist(a, proto["a"]), -_eu_dist(v, proto["v"])
        ratio = _score(sim_a, b.y) / _score(sim_v, b.y)
        beta, lam = (0.0, 0.6) if ratio > 1 else ((0.6, 0.0) if ratio < 1 else (0.0, 0.0))
        (F.cross_entropy(out, b.y) + beta * F.cross_entropy(sim_a, b.y) + lam * F.cross_entropy(sim_v, b.y)).backward()
        assert (r["diag"]["coef/a"], r["diag"]["coef/v"]) == pytest.approx((beta, lam))
        weak_seen.add("a" if beta > 0 else "v")
        _assert_grads(m, r["grads"])
    assert weak_seen     # the prototype term was on


# =============================================================================== AGM
def test_agm_coefficients_match_the_reference():
    """Lingy12/AGM_ICCV2023 run/CREMAD_main.py: ratio_a = exp(score_v - score_a),
    optimal_ratio_a = exp(train_score_v - train_score_a), coeff_a =
    exp(alpha * min(optimal_ratio_a - ratio_a, 10)); the same with a and v swapped."""
    for sa, sv, ta, tv, alpha in [(0.5, 1.5, 1.0, 1.0, 0.1), (2.0, 0.1, 0.3, 0.9, 1.0), (30.0, 0.0, 0.0, 25.0, 0.5)]:
        ca = math.exp(alpha * min(math.exp(tv - ta) - math.exp(sv - sa), 10))
        cv = math.exp(alpha * min(math.exp(ta - tv) - math.exp(sa - sv), 10))
        got = agm_coefficients({"a": sa, "v": sv}, {"a": ta, "v": tv}, alpha)
        assert got["a"] == pytest.approx(ca, rel=1e-12) and got["v"] == pytest.approx(cv, rel=1e-12)
    # the cap binds: exp(alpha * 10)
    assert agm_coefficients({"a": 0.0, "v": 30.0}, {"a": 25.0, "v": 0.0}, 0.5)["v"] == pytest.approx(math.exp(5.0))


class _AGMReference:
    """Lingy12/AGM_ICCV2023, model/CREMAD_net.py (GradMod) and run/CREMAD_main.py (train).
    total = f(a, v) in train mode; pad_visual = f(a, 0) and pad_audio = f(0, v) in eval mode,
    with gradient; m_a = (total - pad_audio + pad_visual) / 2, m_v = (total - pad_visual +
    pad_audio) / 2; each passes its gradient back multiplied by its coefficient (a backward
    hook); loss = CE(m_a + m_v); scores are the batch mean of -log softmax(m)[y] (floored at
    1e-8); running scores are averages over all iterations; after backward, if the fused head's
    weight gradient has an entry outside [-1, 1], all gradients are clipped to norm 1."""

    def __init__(self, alpha):
        self.alpha, self.it, self.ta, self.tv = alpha, 0, 0.0, 0.0

    def step(self, m, b):
        a, v, total = _enc(m, b.x)
        m.eval()
        _, _, pad_visual = _enc(m, {"a": b.x["a"], "v": torch.zeros_like(b.x["v"])})
        _, _, pad_audio = _enc(m, {"a": torch.zeros_like(b.x["a"]), "v": b.x["v"]})
        m.train()
        m_a = 0.5 * (total - pad_audio + pad_visual)
        m_v = 0.5 * (total - pad_visual + pad_audio)
        with torch.no_grad():
            sa = float(sum(-torch.log(F.softmax(m_a, 1)[i, b.y[i]].clamp_min(1e-8)) for i in range(len(b.y))) / len(b.y))
            sv = float(sum(-torch.log(F.softmax(m_v, 1)[i, b.y[i]].clamp_min(1e-8)) for i in range(len(b.y))) / len(b.y))
        ca = math.exp(self.alpha * min(math.exp(self.tv - self.ta) - math.exp(sv - sa), 10))
        cv = math.exp(self.alpha * min(math.exp(self.ta - self.tv) - math.exp(sa - sv), 10))
        self.it += 1
        self.ta = self.ta * (self.it - 1) / self.it + sa / self.it
        self.tv = self.tv * (self.it - 1) / self.it + sv / self.it
        m_a.register_hook(lambda g: g * ca)
        m_v.register_hook(lambda g: g * cv)
        F.cross_entropy(m_a + m_v, b.y).backward()
        gw = m.head.weight.grad
        clipped = bool(gw.max() > 1 or gw.min() < -1)
        if clipped:
            torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm=1.0)
        return ca, cv, clipped


@pytest.mark.parametrize("first_strong,alpha,lr,scale", [(True, 0.1, 0.05, 1.0), (False, 1.0, 0.5, 30.0)])
def test_agm_gradients_match_the_reference(first_strong, alpha, lr, scale):
    ds = _data(first_strong, scale)
    recs = run_nbkit(_model(ds, aux=False), AGM(alpha=alpha), _batches(ds, 2, 3), lr=lr)
    ref = _AGMReference(alpha)
    clipped = []
    for r in recs:
        m = _fresh(ds, False, r["state"])
        ca, cv, c = ref.step(m, r["batch"])
        assert r["diag"]["coeff/a"] == pytest.approx(ca, rel=1e-5)
        assert r["diag"]["coeff/v"] == pytest.approx(cv, rel=1e-5)
        assert r["diag"]["clipped"] == float(c)
        clipped.append(c)
        _assert_grads(m, r["grads"])
    assert any(abs(r["diag"]["coeff/a"] - 1) > 1e-3 for r in recs)    # the modulation was on
    if alpha == 1.0:
        assert any(clipped)                                            # and the clip was exercised


def test_agm_responses_add_up_as_the_original_defines_them():
    ds = _data(True)
    m = _model(ds, aux=False)
    reg = AGM()
    reg.attach(m, None)
    b = ds[:16]
    with torch.no_grad():
        full = m(b).logits
        zero = m(b.with_x({k: torch.zeros_like(t) for k, t in b.x.items()})).logits
    phi = reg.shapley_logits(b)
    torch.testing.assert_close(phi["a"] + phi["v"], full, **TOL)              # empty coalition worth 0
    reg2 = AGM(response="shapley")
    reg2.attach(m, None)
    phi2 = reg2.shapley_logits(b)
    torch.testing.assert_close(phi2["a"] + phi2["v"], full - zero, **TOL)     # exact Shapley values
    reg3 = AGM(response="balancebenchmark")
    reg3.attach(m, None)
    phi3 = reg3.shapley_logits(b)
    with torch.no_grad():
        only_v = m(b.with_x({"a": torch.zeros_like(b.x["a"]), "v": b.x["v"]})).logits
    torch.testing.assert_close(phi3["a"], 0.5 * (full - only_v), **TOL)       # S = {} term dropped


# =============================================================================== InfoReg
class _InfoRegReference:
    """GeWu-Lab/InfoReg_CVPR2025 main.py (train_epoch, main): audio_trace_list starts as
    ten zeros; at the start of epoch e, k = 1 if e == 0 else (tr1 - tr2) / tr1 with tr1 the
    mean of the last ten audio traces and tr2 of the ten before, shifted by one; a copy of the
    model is taken (theta_0). Per step: out_a / out_v from the split head (bias / 2); the loss
    CE(out_v), CE(out_a), CE(out) backpropagated in turn; scores are summed softmax[y];
    audio ahead and k > 0.05: beta = 0.95 exp(tanh(s_a - s_v)) on every audio-encoder
    parameter, visual ahead and k > 0.05: 0.1 exp(tanh(s_v - s_a)) on the visual encoder;
    g += beta (theta - theta_0). Then each Linear/Conv2d weight of the encoders accumulates
    g * g; at the epoch end the trace is the sum over those modules of the mean."""

    def __init__(self):
        self.trace = {"a": [0.0] * 10, "v": [0.0] * 10}

    def epoch_start(self, e, state):
        if e == 0:
            self.k = 1.0
        else:
            L = self.trace["a"]
            tr1, tr2 = sum(L[-10:]) / 10, sum(L[-11:-1]) / 10
            self.k = (tr1 - tr2) / tr1
        self.theta0 = copy.deepcopy(state)
        self.fim = {"a": {}, "v": {}}

    def step(self, m, b):
        a, v, out = _enc(m, b.x)
        out_a, out_v = _split(m, a, v)
        F.cross_entropy(out_v, b.y).backward(retain_graph=True)
        F.cross_entropy(out_a, b.y).backward(retain_graph=True)
        F.cross_entropy(out, b.y).backward()
        sa, sv = float(_score(out_a, b.y)), float(_score(out_v, b.y))
        beta_a = beta_v = 0.0
        if sa > sv and self.k > 0.05:
            beta_a = 0.95 * math.exp(math.tanh(sa - sv))
        elif sa < sv and self.k > 0.05:
            beta_v = 0.1 * math.exp(math.tanh(sv - sa))
        for name, p in m.named_parameters():
            if name.startswith("encoders.a."):
                p.grad += beta_a * (p.detach() - self.theta0[name])
            if name.startswith("encoders.v."):
                p.grad += beta_v * (p.detach() - self.theta0[name])
        for mod in ("a", "v"):
            for name, module in m.encoders[mod].named_modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                    self.fim[mod][name] = self.fim[mod].get(name, 0) + module.weight.grad * module.weight.grad
        return beta_a, beta_v

    def epoch_end(self):
        for mod in ("a", "v"):
            self.trace[mod].append(sum(float(t.mean()) for t in self.fim[mod].values()))


@pytest.mark.parametrize("first_strong", [True, False])
def test_inforeg_gradients_and_window_match_the_reference(first_strong):
    ds = _data(first_strong)
    recs = run_nbkit(_model(ds, aux=False), InfoReg(), _batches(ds, 3, 2))
    ref = _InfoRegReference()
    betas = []
    for i, r in enumerate(recs):
        if i == 0 or recs[i - 1]["epoch"] != r["epoch"]:
            ref.epoch_start(r["epoch"], r["state"])
            assert r["diag"]["k"] == pytest.approx(ref.k, rel=1e-5)
        m = _fresh(ds, False, r["state"])
        ba, bv = ref.step(m, r["batch"])
        assert r["diag"]["beta"] == pytest.approx(ba + bv, rel=1e-5)
        betas.append((ba, bv))
        _assert_grads(m, r["grads"])
        if "epoch_end" in r:
            ref.epoch_end()
            assert r["epoch_end"]["fim/a"] == pytest.approx(ref.trace["a"][-1], rel=1e-5)
    # the branch of the dominant modality was taken, with its own beta scale
    if first_strong:
        assert any(ba > 0.95 for ba, _ in betas)
    else:
        assert any(0.1 < bv < 0.3 for _, bv in betas)


def test_inforeg_window_closes_as_the_reference_computes_it():
    reg = InfoReg()
    reg.window = 10
    reg.traces = {"a": [0.0] * 10}
    assert reg.growth("a") == 1.0                         # epoch 0: k = 1
    L = [0.0] * 10 + [4.0] * 11 + [4.1]
    reg.traces = {"a": L}
    tr1, tr2 = sum(L[-10:]) / 10, sum(L[-11:-1]) / 10
    assert reg.growth("a") == pytest.approx((tr1 - tr2) / tr1)
    assert reg.growth("a") < 0.05 < 1.0                   # this trace list closes the window


# =============================================================================== MMPareto
def _min_norm_2(v1v1, v1v2, v2v2):
    """GeWu-Lab/MMPareto_ICML2024 code/min_norm_solvers.py, _min_norm_element_from2: the
    weight of the first vector (the solution for two vectors is returned as is)."""
    if v1v2 >= v1v1:
        return 0.999
    if v1v2 >= v2v2:
        return 0.001
    return -1.0 * ((v1v2 - v2v2) / (v1v1 + v2v2 - 2 * v1v2))


def test_min_norm_weights_match_the_reference_solver():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        a, b = torch.randn(30, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
        b = b - 2 * (a @ b).clamp_min(0) / (a @ a) * a           # make them conflict (cos <= 0)
        c = _min_norm_2(float(a @ a), float(a @ b), float(b @ b))
        assert min_norm_weights(a, b)[0] == pytest.approx(c, abs=1e-9)


@pytest.mark.parametrize("conflict", [False, True])
def test_mmpareto_gradients_match_the_reference(conflict):
    """Reference: GeWu-Lab/MMPareto_ICML2024 code/MMPareto.py (train_epoch): per encoder,
    gradients of loss_mm, loss_a, loss_v recorded one by one; cos(g_mm, g_uni) > 0 -> weights
    0.5 / 0.5, else the min-norm solver; after (loss_mm + loss_a + loss_v).backward(), each
    encoder tensor gets new = 2 (k_mm g_mm + k_uni g_uni), times ||g_sum|| / ||new|| when that
    is > 1, times gamma = 1.5."""
    ds = _data(True)
    model = _model(ds, aux=True)
    if conflict:      # an auxiliary head reading its features with the opposite sign: conflicting gradients
        with torch.no_grad():
            for i, mod in enumerate(("a", "v")):
                model.aux[mod].weight.copy_(-model.head.weight[:, 8 * i:8 * (i + 1)])
                model.aux[mod].bias.zero_()
    recs = run_nbkit(model, MMPareto(), _batches(ds, 1, 2))
    solver_used = False
    for r in recs:
        m = _fresh(ds, True, r["state"])
        b = r["batch"]
        a, v, out = _enc(m, b.x)
        losses = {"both": F.cross_entropy(out, b.y), "a": F.cross_entropy(m.aux["a"](a), b.y),
                  "v": F.cross_entropy(m.aux["v"](v), b.y)}
        names = {mod: [n for n, _ in m.named_parameters() if n.startswith(f"encoders.{mod}.")] for mod in ("a", "v")}
        params = dict(m.named_parameters())
        rec = {}
        for kind, L in losses.items():
            L.backward(retain_graph=True)
            rec[kind] = {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in params.items()}
            m.zero_grad()
        (losses["both"] + losses["a"] + losses["v"]).backward()
        for mod in ("a", "v"):
            gm = torch.cat([rec["both"][n].flatten() for n in names[mod]])
            gu = torch.cat([rec[mod][n].flatten() for n in names[mod]])
            cos = F.cosine_similarity(gm, gu, dim=0)
            if cos > 0:
                k = (0.5, 0.5)
            else:
                solver_used = True
                c = _min_norm_2(float(gm @ gm), float(gm @ gu), float(gu @ gu))
                k = (c, 1 - c)
            assert r["diag"][f"w_mm/{mod}"] == pytest.approx(k[0], abs=1e-5)
            for n in names[mod]:
                p = params[n]
                three = torch.norm(p.grad.clone())
                new = 2 * k[0] * rec["both"][n] + 2 * k[1] * rec[mod][n]
                diff = three / torch.norm(new)
                p.grad = diff * new * 1.5 if diff > 1 else new * 1.5
        _assert_grads(m, r["grads"])
    if conflict:
        assert solver_used, "the conflicting case must exercise the min-norm branch"


# =============================================================================== RedReg
class _RedRegReference:
    """xia-zhe/RedReg main_RedReg.py (train_epoch). Per epoch: histories and EMAs restart,
    AGREE_THR = 0.2 + 0.3 e / max(1, E - 1), p_drop = 0.6 + (0.1 - 0.6) min(1, e /
    max(1, int(0.3 E))), theta_0 = a copy of the model. Per step: u ~ U(0,1): drop audio if
    u < p/2, visual if p/2 <= u < p (inputs zeroed); prob_m = batch mean of softmax(head_m)[y];
    growth (mean of last 10 - mean of the 10 before, shifted by one) / (|that| + 1e-12), 1
    while <= 10 known; red_m = mean (phi(x+0.03 e1) - phi(x+0.03 e2))^2 / (mean of the input
    difference^2 + 1e-12) on the clean inputs, encoders in eval mode (audio first, then
    visual; the reference clamps its images to [0, 1], which our standardized inputs are not:
    both modalities use the audio formula here); EMA 0.9; r = red / (EMA + 1e-12) - 0.6
    max(S, 0); v dominant (prob_a < prob_v) and r_v > 0.15 -> beta_v = exp(0.9 tanh(prob_v -
    prob_a)), symmetrically for a; gate: mean_i cos(a_i, v_i) > AGREE_THR; loss CE(out) +
    CE(out_a) + CE(out_v); then every encoder parameter gets g += beta_m (d - <d, g>/(<g, g> +
    1e-12) g) with d = theta - theta_0 (d itself where g is all zeros)."""

    def __init__(self, E):
        self.E = E

    def epoch_start(self, e, state):
        self.hist = {"a": [], "v": []}
        self.ema = {"a": 0.0, "v": 0.0}
        self.thr = 0.2 + (0.5 - 0.2) * float(e) / max(1, self.E - 1)
        self.p = 0.6 + (0.1 - 0.6) * min(1.0, e / max(1, int(self.E * 0.3)))
        self.theta0 = copy.deepcopy(state)

    @staticmethod
    def growth(h):
        if len(h) <= 10:
            return 1.0
        s1, s2 = sum(h[-10:]) / 10, sum(h[-11:-1]) / 10
        return (s1 - s2) / (abs(s2) + 1e-12)

    def step(self, m, b, gen):
        u = torch.rand((), generator=gen)
        drop_a = bool(u < self.p * 0.5)
        drop_v = bool((u >= self.p * 0.5) and (u < self.p))
        x_in = {"a": torch.zeros_like(b.x["a"]) if drop_a else b.x["a"],
                "v": torch.zeros_like(b.x["v"]) if drop_v else b.x["v"]}
        a, v, out = _enc(m, x_in)
        out_a, out_v = m.aux["a"](a), m.aux["v"](v)
        idx = torch.arange(len(b.y))
        prob = {"a": F.softmax(out_a, 1)[idx, b.y].mean().item(), "v": F.softmax(out_v, 1)[idx, b.y].mean().item()}
        S = {}
        for mod in ("a", "v"):
            self.hist[mod].append(prob[mod])
            S[mod] = self.growth(self.hist[mod])
        red = {}
        with torch.no_grad():
            m.eval()
            for mod in ("a", "v"):
                x = b.x[mod]
                x1 = x + torch.randn(x.shape, generator=gen) * 0.03
                x2 = x + torch.randn(x.shape, generator=gen) * 0.03
                z1, z2 = m.encoders[mod](x1), m.encoders[mod](x2)
                red[mod] = ((z1 - z2).pow(2).mean() / ((x1 - x2).pow(2).mean() + 1e-12)).item()
            m.train()
        r = {}
        for mod in ("a", "v"):
            self.ema[mod] = 0.9 * self.ema[mod] + 0.1 * red[mod]
            r[mod] = red[mod] / (self.ema[mod] + 1e-12) - 0.6 * max(S[mod], 0.0)
        beta = {"a": 0.0, "v": 0.0}
        if prob["a"] < prob["v"] and r["v"] > 0.15:
            beta["v"] = math.exp(0.9 * math.tanh(max(prob["v"] - prob["a"], 0.0)))
        elif prob["v"] < prob["a"] and r["a"] > 0.15:
            beta["a"] = math.exp(0.9 * math.tanh(max(prob["a"] - prob["v"], 0.0)))
        with torch.no_grad():
            sim = (F.normalize(a.flatten(1), dim=1) * F.normalize(v.flatten(1), dim=1)).sum(1).mean().item()
        gate = 1.0 if sim > self.thr else 0.0
        (F.cross_entropy(out, b.y) + F.cross_entropy(out_a, b.y) + F.cross_entropy(out_v, b.y)).backward()
        for name, p in m.named_parameters():
            for mod in ("a", "v"):
                if name.startswith(f"encoders.{mod}."):
                    d = p.detach() - self.theta0[name]
                    g = p.grad
                    d_safe = d if g.abs().sum() == 0 else d - ((d * g).sum() / ((g * g).sum() + 1e-12)) * g
                    p.grad = p.grad + beta[mod] * gate * d_safe
        return beta, gate, S


@pytest.mark.parametrize("shared", [False, True])
def test_redreg_gradients_match_the_reference(shared):
    """shared=False: unrelated modalities, the co-information gate stays shut; shared=True:
    the second modality is a noisy copy of the first read by a copy of its encoder, so the
    gate opens and the orthogonal pull-back acts."""
    ds = _data(True)
    model = _model(ds, aux=True)
    if shared:
        g = torch.Generator().manual_seed(2)
        xa = ds.x["a"]
        ds = type(ds)({"a": xa, "v": xa + 0.3 * torch.randn(xa.shape, generator=g)}, ds.y)
        model = _model(ds, aux=True)
        model.encoders["v"].load_state_dict(model.encoders["a"].state_dict())
    E = 2
    recs = run_nbkit(model, RedReg(seed=7), _batches(ds, E, 12), lr=0.1)
    ref = _RedRegReference(E)
    fired, grew = 0, 0

    def model_like(state):
        m = copy.deepcopy(model)
        m.load_state_dict(state)
        m.zero_grad(set_to_none=True)
        return m.train()

    for i, r in enumerate(recs):
        if i == 0 or recs[i - 1]["epoch"] != r["epoch"]:
            ref.epoch_start(r["epoch"], r["state"])
        m = model_like(r["state"])
        beta, gate, S = ref.step(m, r["batch"], _gen(r["gen"]))
        assert r["diag"]["beta"] == pytest.approx(max(beta.values()), rel=1e-5)
        assert r["diag"]["gate"] == gate
        assert r["diag"]["S/a"] == pytest.approx(S["a"], rel=1e-5, abs=1e-9)
        fired += r["diag"]["fired"]
        grew += S["a"] != 1.0
        _assert_grads(m, r["grads"])
    assert grew > 0                    # the growth rate left its start value
    assert (fired > 0) == shared       # the pull-back acted exactly where the gate could open
