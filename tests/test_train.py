from dataclasses import dataclass

import pandas as pd
import pytest
import torch

from nbkit.data import drop_modalities, make_synthetic
from nbkit.models import EarlyFusion, LateFusion, Unimodal
from nbkit.models.baselines import EarlyFusionConfig
from nbkit.regulate import Regulator
from nbkit.train import History, Trainer, load_checkpoint, pick_device, save_checkpoint


@pytest.fixture(scope="module")
def splits():
    return make_synthetic(n=900, snr=[4.0, 1.0], seed=0).split(seed=0)


def test_same_seed_same_numbers(splits):
    tr, va, _ = splits
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        m = EarlyFusion.for_dataset(tr)
        Trainer(m, epochs=2, seed=4, progress=False).fit(tr, va)
        runs.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_training_learns_and_history_is_tidy(splits):
    tr, va, te = splits
    m = EarlyFusion.for_dataset(tr)
    t = Trainer(m, epochs=6, progress=False)
    h = t.fit(tr, va)
    assert list(h.frame.columns) == ["step", "epoch", "split", "metric", "value"]
    assert {"loss", "loss/task"} <= set(h.metrics("train")) and {"acc", "auc"} <= set(h.metrics("val"))
    c = h.curve("loss", "train")
    assert c.iloc[-1] < c.iloc[0] * 0.8
    assert t.evaluate(te)["acc"] > 0.6          # 4 classes: chance is 0.25
    h2 = History.from_dict(h.to_dict())
    pd.testing.assert_frame_equal(h2.frame, h.frame)
    with pytest.raises(KeyError, match="no 'val' values of 'nope'"):
        h.curve("nope")


def test_early_stopping_and_best_restore(splits):
    tr, va, _ = splits
    m = EarlyFusion.for_dataset(tr)
    # a tiny learning rate with patience 0 must stop as soon as val acc fails to improve
    t = Trainer(m, epochs=50, lr=1e-3, patience=1, progress=False)
    h = t.fit(tr, va)
    n_epochs = h.frame.epoch.max() + 1
    assert n_epochs < 50 and t.stopped_epoch == n_epochs - 1
    assert t.evaluate(va)["acc"] == pytest.approx(h.best("acc"))


def test_checkpoint_roundtrip_atomic_and_weights_only(tmp_path, splits):
    tr, va, _ = splits
    m = LateFusion.for_dataset(tr)
    path = tmp_path / "ck" / "best.pt"
    Trainer(m, epochs=2, checkpoint=str(path), progress=False).fit(tr, va)
    assert path.exists() and not list(path.parent.glob("*.tmp"))
    fresh = LateFusion.for_dataset(tr)
    state = load_checkpoint(path, fresh)
    assert state["meta"]["monitor"] == "acc" and state["config"]["d"] == 64
    for a, b in zip(m.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    # weights_only refuses arbitrary objects
    bad = tmp_path / "bad.pt"
    torch.save({"model": {}, "obj": object.__new__(History)}, bad)
    with pytest.raises(Exception):
        load_checkpoint(bad)


def test_save_checkpoint_meta_must_be_plain(tmp_path, splits):
    m = EarlyFusion.for_dataset(splits[0])
    save_checkpoint(tmp_path / "a.pt", m, epoch=3, note="x")
    assert load_checkpoint(tmp_path / "a.pt")["meta"] == {"epoch": 3, "note": "x"}


@dataclass
class _Cfg(EarlyFusionConfig):
    lambda_extra: float = 0.0


class _Weighted(EarlyFusion):
    Config = _Cfg

    def loss_terms(self, batch, out):
        return {"task": super().loss_terms(batch, out)["task"], "extra": out.logits.pow(2).mean()}


def test_loss_weights_come_from_config(splits):
    tr = splits[0]
    m = _Weighted.for_dataset(tr, lambda_extra=0.0)
    t = Trainer(m, epochs=1, progress=False)
    b = next(tr.batches(64))
    out = m(b)
    terms = m.loss_terms(b, out)
    assert torch.allclose(t.weighted_loss(terms), terms["task"])
    m.config.lambda_extra = 2.0
    assert torch.allclose(t.weighted_loss(terms), terms["task"] + 2 * terms["extra"])
    with pytest.raises(ValueError, match="lambda_extra must be a finite number >= 0, got -1.0"):
        _Weighted.for_dataset(tr, lambda_extra=-1.0)
    with pytest.raises(TypeError, match="unknown config fields"):
        EarlyFusion.for_dataset(tr, lambda_nope=1.0)


class _Recorder(Regulator):
    name = "rec"

    def __init__(self):
        super().__init__()
        self.calls = []

    def on_epoch_start(self, epoch, n):
        self.calls.append("epoch")

    def after_backward(self, batch, out, terms):
        grads = [p.grad for p in self.model.encoders.parameters()]
        assert all(g is not None for g in grads)          # called after backward
        self.calls.append("after_backward")
        return {"gnorm": float(torch.stack([g.norm() for g in grads]).norm())}

    def after_step(self):
        self.calls.append("step")


def test_regulator_hook_order_and_diagnostics(splits):
    tr = splits[0]
    reg = _Recorder()
    t = Trainer(EarlyFusion.for_dataset(tr), epochs=2, batch_size=256, regulator=reg, progress=False)
    h = t.fit(tr)
    steps = tr.n_batches(256, drop_last=True)
    assert reg.calls[:3] == ["epoch", "after_backward", "step"]
    assert reg.calls.count("after_backward") == 2 * steps
    assert len(h.curve("reg/gnorm", "train", by="step")) == 2 * steps


def test_base_regulator_leaves_training_bit_identical(splits):
    tr = splits[0]
    params = []
    for reg in (None, Regulator()):
        torch.manual_seed(0)
        m = EarlyFusion.for_dataset(tr)
        Trainer(m, epochs=1, regulator=reg, progress=False).fit(tr)
        params.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
    assert torch.equal(params[0], params[1])


def test_trainer_bad_input(splits):
    tr = splits[0]
    m = EarlyFusion.for_dataset(tr)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):
        Trainer(m, batch_size=1)
    with pytest.raises(ValueError, match="optimizer must be"):
        Trainer(m, optimizer="lbfgs")
    with pytest.raises(TypeError, match="unknown TrainConfig fields"):
        Trainer(m, epoch=3)
    with pytest.raises(TypeError, match="train must be a MultimodalDataset"):
        Trainer(m, progress=False).fit([1, 2, 3])
    with pytest.raises(KeyError, match="monitor='f1' is not among"):
        Trainer(m, epochs=1, monitor="f1", progress=False).fit(tr, splits[1])
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            pick_device("cuda")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_models_reject_wrong_batches(splits):
    tr = splits[0]
    m = EarlyFusion.for_dataset(tr)
    other = make_synthetic(n=10, dims=[5, 32], seed=0)
    with pytest.raises(ValueError, match=r"batch.x\['m1'\] has per-sample shape \(5,\)"):
        m(other[:4])
    with pytest.raises(KeyError, match="lacks \\['m2'\\]"):
        m(tr[:4].select(["m1"]))
    with pytest.raises(ValueError, match="Unimodal needs modality"):
        Unimodal.for_dataset(tr)


def test_late_fusion_averages_present_modalities_only(splits):
    tr = splits[0]
    m = LateFusion.for_dataset(tr).eval()
    b = drop_modalities(tr[:50], {"m2": 1.0})
    out = m(b)
    p1 = torch.softmax(out.unimodal_logits["m1"], 1)
    assert torch.allclose(out.logits.exp(), p1, atol=1e-5)   # m2 missing -> m1's probabilities alone
    full = m(tr[:50])
    both = (torch.softmax(full.unimodal_logits["m1"], 1) + torch.softmax(full.unimodal_logits["m2"], 1)) / 2
    assert torch.allclose(full.logits.exp(), both, atol=1e-5)


def test_missing_modality_values_do_not_leak(splits):
    tr = splits[0]
    m = EarlyFusion.for_dataset(tr).eval()
    b = drop_modalities(tr[:20], {"m2": 1.0})
    garbage = b.with_x({**b.x, "m2": torch.randn_like(b.x["m2"]) * 100})
    assert torch.allclose(m(b).logits, m(garbage).logits)
    nan = b.with_x({**b.x, "m2": torch.full_like(b.x["m2"], float("nan"))})
    assert torch.allclose(m(b).logits, m(nan).logits)          # NaN in an absent modality cannot leak


def test_adam_family_uses_the_fused_kernel_and_sgd_keeps_momentum(splits):
    m = EarlyFusion.for_dataset(splits[0])
    assert Trainer(m, optimizer="adamw").make_optimizer().defaults["fused"] is True
    sgd = Trainer(m, optimizer="sgd", lr=0.1, momentum=0.5).make_optimizer()
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.5
