import pytest
import torch

from nbkit.nn import MLPEncoder, SequenceEncoder, make_encoder


def test_make_encoder_by_shape():
    assert isinstance(make_encoder((7,)), MLPEncoder)
    assert isinstance(make_encoder((5, 7)), SequenceEncoder)
    with pytest.raises(ValueError, match="no encoder for per-sample shape"):
        make_encoder((2, 3, 4))


def test_sequence_encoder_keeps_time_order_and_any_length():
    torch.manual_seed(0)
    enc = SequenceEncoder(6, d_out=16)
    x = torch.randn(4, 20, 6)
    # the pooled bins keep coarse order: reversing time changes the representation
    assert not torch.allclose(enc(x), enc(x.flip(1)), atol=1e-4)
    for T in (1, 3, 50):
        assert enc(torch.randn(2, T, 6)).shape == (2, 16)
    with pytest.raises(ValueError, match=r"expects \[B, T, D\]"):
        enc(torch.randn(4, 6))


def test_eval_mode_restores_each_modules_mode_also_on_error():
    from nbkit.nn import eval_mode

    a, b = torch.nn.Dropout(0.5), torch.nn.Dropout(0.5)
    b.eval()                                   # one in train mode, one in eval mode
    with eval_mode(a, b) as mods:
        assert mods == (a, b) and not a.training and not b.training
        x = torch.ones(1000)
        assert torch.equal(a(x), x)            # dropout really off inside the block
    assert a.training and not b.training       # each back to ITS previous mode
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(a) as m:
            assert m is a and not a.training
            raise RuntimeError("boom")
    assert a.training
