"""Neural building blocks: encoders for vectors and sequences, fusion layers."""
from .encoders import MLPEncoder, SequenceEncoder, make_encoder
from .fusion import masked_softmax

__all__ = ["MLPEncoder", "SequenceEncoder", "make_encoder", "masked_softmax"]
