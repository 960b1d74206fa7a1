"""Neural building blocks: encoders for vectors and sequences, fusion layers, quantizers,
and `eval_mode` (run a module in eval mode, restoring its mode after)."""
import contextlib

from .encoders import MLPEncoder, SequenceEncoder, make_encoder
from .fusion import masked_softmax

__all__ = ["eval_mode", "MLPEncoder", "SequenceEncoder", "make_encoder", "masked_softmax", "VectorQuantizerEMA",
           "ResidualVQ", "FSQ", "Quantized", "codebook_usage", "make_quantizer"]


@contextlib.contextmanager
def eval_mode(*modules):
    """``with eval_mode(model): ...`` runs the block with the module(s) in eval mode (dropout
    off, batch-norm and quantizer statistics frozen) and restores each one's previous mode,
    also on error."""
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield modules[0] if len(modules) == 1 else modules
    finally:
        for m, w in zip(modules, was):
            m.train(w)

# ---- SRCID (issue 9): quantizers -------------------------------------------------------
from .quantize import FSQ, Quantized, ResidualVQ, VectorQuantizerEMA, codebook_usage, make_quantizer  # noqa: E402

