"""Neural building blocks: encoders for vectors and sequences, fusion layers."""
from .encoders import MLPEncoder, SequenceEncoder, make_encoder
from .fusion import masked_softmax

__all__ = ["MLPEncoder", "SequenceEncoder", "make_encoder", "masked_softmax", "VectorQuantizerEMA",
           "ResidualVQ", "FSQ", "Quantized", "codebook_usage", "make_quantizer"]

# ---- SRCID (issue 9): quantizers -------------------------------------------------------
from .quantize import FSQ, Quantized, ResidualVQ, VectorQuantizerEMA, codebook_usage, make_quantizer  # noqa: E402

