"""Models: one paper, one file. Every model maps a `Batch` to an `Output`."""
from .base import ModelConfig, MultimodalModel, Output
from .baselines import EarlyFusion, LateFusion, Unimodal

__all__ = ["Output", "ModelConfig", "MultimodalModel", "Unimodal", "EarlyFusion", "LateFusion"]
