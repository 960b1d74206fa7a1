"""Data: the `Batch` type, datasets with known structure, bundled avdigits, corruption."""
from .batch import Batch, MultimodalDataset
from .corrupt import add_noise, drop_modalities
from .synthetic import make_synthetic

__all__ = ["Batch", "MultimodalDataset", "make_synthetic", "drop_modalities", "add_noise",
           "load_avdigits"]


def __getattr__(name):
    # avdigits / oulad import lazily (file reading, pandas)
    if name in ("load_avdigits", "avdigits"):
        from . import avdigits
        return avdigits.load_avdigits if name == "load_avdigits" else avdigits
    if name == "oulad":
        from . import oulad
        return oulad
    raise AttributeError(name)
