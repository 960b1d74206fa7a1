"""Neural building blocks: encoders for vectors and sequences, fusion layers."""
from .encoders import MLPEncoder, SequenceEncoder, make_encoder

__all__ = ["MLPEncoder", "SequenceEncoder", "make_encoder"]
