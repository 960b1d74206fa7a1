from dataclasses import dataclass

import numpy as np

import pandas as pd
import pytest
import torch

from nbkit.data import drop_modalities, make_synthetic
from nbkit.models import EarlyFusion, LateFusion, Unimodal
from nbkit.models.baselines import EarlyFusionConfig
from nbkit.regulate import Regulator
from nbkit.train import History, Trainer, TrainingDiverged, load_checkpoint, pick_device, save_checkpoint


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


# ---------------------------------------------------------------- divergence (issue 14)
@dataclass
class _DivCfg(EarlyFusionConfig):
    lambda_extra: float = 2.0


class _Diverging(EarlyFusion):
    """A term 'extra' that dominates the weighted loss and turns the task term NaN at step
    ``nan_at``: the error must blame 'extra' (the real cause), not 'task'."""

    Config = _DivCfg
    nan_at = 10 ** 9

    def loss_terms(self, batch, out):
        self.calls = getattr(self, "calls", 0) + int(self.training)      # training steps only
        task = super().loss_terms(batch, out)["task"]
        if self.training and self.calls >= self.nan_at:
            task = task * float("nan")
        return {"task": task, "extra": 1e3 + out.logits.pow(2).mean()}


def test_divergence_names_term_weight_culprit_and_restores_best_state(tmp_path, splits):
    tr, va, _ = splits
    torch.manual_seed(0)
    m = _Diverging.for_dataset(tr)
    steps = tr.n_batches(128, drop_last=True)
    m.nan_at = 2 * steps + 3                        # two epochs validate, then NaN in epoch 2
    t = Trainer(m, epochs=5, checkpoint=str(tmp_path / "best.pt"), progress=False)
    with pytest.raises(TrainingDiverged) as info:
        t.fit(tr, va)
    msg = str(info.value)
    assert isinstance(info.value, FloatingPointError)
    assert "loss term(s) task=nan" in msg and f"at step {2 * steps + 2} (epoch 2)" in msg
    assert "extra=2e+03 (lambda_extra=2)" in msg and "task=" in msg and "(weight 1 (the task term))" in msg
    assert "likely cause: the term 'extra' with lambda_extra=2 dominates the loss; lower lambda_extra" in msg
    assert f"restored to its best state (epoch {t.best_epoch})" in msg and t.best_epoch in (0, 1)
    best = torch.load(tmp_path / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(best[k], v) for k, v in m.state_dict().items())   # not left diverged


def test_divergence_before_any_validation_restores_initial_weights(splits):
    tr = splits[0]
    torch.manual_seed(0)
    m = _Diverging.for_dataset(tr)
    init = {k: v.clone() for k, v in m.state_dict().items()}
    m.nan_at = 3
    with pytest.raises(TrainingDiverged, match="restored to its state before training"):
        Trainer(m, epochs=2, progress=False).fit(tr)
    assert all(torch.equal(init[k], v) for k, v in m.state_dict().items())


class _Poison(Regulator):
    """Sets one encoder weight to NaN after step ``at`` (a blow-up inside the model)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.n = at, 0

    def after_step(self):
        self.n += 1
        if self.n == self.at:
            with torch.no_grad():
                next(iter(self.model.encoders.values())).net[0].weight[0, 0] = float("nan")


def test_nan_inside_the_model_is_divergence_not_bad_input(splits):
    """DSRSD's losses reject NaN input; when the NaN comes from the model's own weights
    (finite batch), the Trainer reports divergence and restores, instead of blaming data."""
    from nbkit.models import DSRSD

    tr, va, _ = splits
    torch.manual_seed(0)
    m = DSRSD.for_dataset(tr, d=16, hidden=32)
    t = Trainer(m, epochs=3, regulator=_Poison(at=tr.n_batches(128, True) + 2), progress=False)
    with pytest.raises(TrainingDiverged) as info:
        t.fit(tr, va)
    assert "a value inside the model became NaN/inf (info_nce: a must be finite" in str(info.value)
    assert "clean or impute" not in str(info.value)
    assert all(torch.isfinite(p).all() for p in m.parameters()) and t.best_epoch == 0


def test_nan_weight_set_on_a_built_model_is_rejected_before_training(splits):
    tr = splits[0]
    m = _Weighted.for_dataset(tr)
    m.config.lambda_extra = float("inf")               # e.g. a slider
    with pytest.raises(ValueError, match="lambda_extra must be a finite number >= 0, got inf"):
        Trainer(m, epochs=1, progress=False).fit(tr)


# ---------------------------------------------------------------- checkpoints know their model
def test_checkpoint_refuses_a_model_built_in_another_modality_order(tmp_path, splits):
    tr, va, te = splits
    torch.manual_seed(0)
    m = EarlyFusion.for_dataset(tr)
    Trainer(m, epochs=3, checkpoint=str(tmp_path / "ef.pt"), progress=False).fit(tr, va)
    swapped = EarlyFusion({"m2": (32,), "m1": (32,)}, 4)
    before = {k: v.clone() for k, v in swapped.state_dict().items()}
    with pytest.raises(ValueError, match=r"modalities: checkpoint \['m1', 'm2'\] vs model \['m2', 'm1'\]"):
        load_checkpoint(tmp_path / "ef.pt", swapped)
    assert all(torch.equal(before[k], v) for k, v in swapped.state_dict().items())   # nothing copied
    # what the check prevents: the same weights in the other order score like chance
    swapped.load_state_dict(m.state_dict())
    ok, wrong = Trainer(m).evaluate(te)["acc"], Trainer(swapped).evaluate(te)["acc"]
    assert ok > wrong + 0.2, (ok, wrong)


def test_checkpoint_lists_every_difference_and_records_identity(tmp_path, splits):
    import nbkit

    tr = splits[0]
    save_checkpoint(tmp_path / "a.pt", EarlyFusion.for_dataset(tr, d=32), note="x")
    state = load_checkpoint(tmp_path / "a.pt")
    assert state["nbkit_version"] == nbkit.__version__
    assert state["identity"]["class"] == "nbkit.models.baselines.EarlyFusion"
    assert state["identity"]["modalities"] == ["m1", "m2"] and state["identity"]["n_classes"] == 4
    with pytest.raises(ValueError) as info:
        load_checkpoint(tmp_path / "a.pt", EarlyFusion(tr.dims(), 5, d=16))
    msg = str(info.value)
    assert "config.d: checkpoint 32 vs model 16" in msg and "n_classes: checkpoint 4 vs model 5" in msg
    with pytest.raises(ValueError, match="class: checkpoint 'nbkit.models.baselines.EarlyFusion' vs model "
                                         "'nbkit.models.baselines.LateFusion'"):
        load_checkpoint(tmp_path / "a.pt", LateFusion.for_dataset(tr, d=32))
    torch.save({"model": EarlyFusion.for_dataset(tr).state_dict()}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="carries no model identity"):
        load_checkpoint(tmp_path / "old.pt", EarlyFusion.for_dataset(tr))
    (tmp_path / "cut.pt").write_bytes((tmp_path / "a.pt").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"checkpoint '.*cut.pt' could not be read"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        load_checkpoint(tmp_path)
    with pytest.raises(TypeError, match=r"meta\['arr'\] must be a plain value"):
        save_checkpoint(tmp_path / "b.pt", EarlyFusion.for_dataset(tr), arr=np.zeros(3))
    assert not (tmp_path / "b.pt").exists()


# ---------------------------------------------------------------- dropout really drops
@pytest.mark.parametrize("cls,extra", [(EarlyFusion, {}), (LateFusion, {}), (Unimodal, {"modality": "m1"}),
                                       ("CoAttention", {}), ("GatedFusion", {}), ("DSRSD", {})])
def test_dropout_reaches_the_encoders_of_every_model(cls, extra, splits):
    import nbkit.models as M

    cls = getattr(M, cls) if isinstance(cls, str) else cls
    b = splits[0][:32]
    torch.manual_seed(0)
    m = cls.for_dataset(splits[0], dropout=0.5, **extra)
    drops = [mod for enc in m.encoders.values() for mod in enc.modules() if isinstance(mod, torch.nn.Dropout)]
    assert drops and all(d.p == 0.5 for d in drops)
    m.train()
    assert not torch.equal(m(b).logits, m(b).logits)           # two train-mode forwards differ
    m.eval()
    assert torch.equal(m(b).logits, m(b).logits)               # eval is deterministic
    # and the encoder alone: a train-mode pass zeroes about half the hidden units
    enc = next(iter(m.encoders.values())).train()
    h = enc.net[:3](b.x[m.modalities[0]])
    assert 0.3 < float((h == 0).float().mean()) < 0.7


def test_dropout_zero_changes_nothing_and_sequence_encoder_drops_too():
    from nbkit.nn.encoders import SequenceEncoder

    seq = make_synthetic(n=64, seq_len=6, dims=[5, 7], seed=0)
    torch.manual_seed(0)
    m = EarlyFusion.for_dataset(seq, dropout=0.0).train()
    assert torch.equal(m(seq[:16]).logits, m.eval()(seq[:16]).logits)
    m = EarlyFusion.for_dataset(seq, dropout=0.5).train()
    assert isinstance(m.encoders["m1"], SequenceEncoder) and m.encoders["m1"].drop.p == 0.5
    assert not torch.equal(m(seq[:16]).logits, m(seq[:16]).logits)
