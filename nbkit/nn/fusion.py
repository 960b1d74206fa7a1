"""Fusion pieces shared by several models."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["masked_softmax"]


def masked_softmax(logits: Tensor, present: Tensor) -> Tensor:
    """Softmax over modalities that ignores the missing ones: [B, M] logits and a bool
    [B, M] mask -> weights that sum to 1 over each row's present modalities and are 0 for
    missing ones (logit -> -inf). A row with no modality present gets all zeros, not NaN.
    The gate of DSRSD-Net (eq. 8) and of `GatedFusion`."""
    if logits.shape != present.shape or present.dtype != torch.bool:
        raise ValueError(f"logits and present must both be [B, M] (present bool), got "
                         f"{tuple(logits.shape)} and {tuple(present.shape)} {present.dtype}")
    logit = logits.masked_fill(~present, float("-inf"))
    logit = torch.where(present.any(1, keepdim=True), logit, torch.zeros_like(logit))
    return torch.softmax(logit, 1) * present.to(logit.dtype)
