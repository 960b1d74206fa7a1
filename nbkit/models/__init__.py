"""Models: one paper, one file. Every model maps a `Batch` to an `Output`."""
from .base import ModelConfig, MultimodalModel, Output
from .baselines import EarlyFusion, LateFusion, Unimodal
from .baselines import CoAttention, GatedFusion
from .dsrsd import DSRSD, DSRSDConfig

__all__ = ["Output", "ModelConfig", "MultimodalModel", "Unimodal", "EarlyFusion", "LateFusion", "DSRSD",
           "DSRSDConfig", "GatedFusion", "CoAttention", "SRCID", "SRCIDConfig", "RSCMDDetector",
           "RSCMDConfig", "CDDS", "CDDSConfig", "InfoNCERetrieval", "InfoNCEConfig"]

# ---- SRCID (issue 9) ------------------------------------------------------------------
from .srcid import SRCID, SRCIDConfig  # noqa: E402


# ---- RSC-MD (notebook 06): the two-backbone CenterNet-style detector ---------------------
from .rscmd import RSCMDConfig, RSCMDDetector


# ---- CDDS (notebook 07): decoupling + distribution sampling, and the InfoNCE retrieval baseline
from .cdds import CDDS, CDDSConfig, InfoNCEConfig, InfoNCERetrieval  # noqa: E402

