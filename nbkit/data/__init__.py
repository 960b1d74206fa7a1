"""Data: the `Batch` type, datasets with known structure, bundled avdigits, corruption."""
from .batch import Batch, MultimodalDataset
from .corrupt import add_noise, drop_modalities
from .synthetic import make_synthetic

__all__ = ["Batch", "MultimodalDataset", "make_synthetic", "drop_modalities", "add_noise", "load_avdigits",
           "make_paired_embeddings", "mapping_order", "sequences", "make_scenes", "scenes_from_arrays"]

# ---- CDDS (notebook 07): paired embeddings with a known cross-dimension mapping
from .paired import make_paired_embeddings, mapping_order  # noqa: E402


def __getattr__(name):
    # avdigits / oulad import lazily (file reading, pandas)
    # importlib, not "from . import x": that form calls this __getattr__ again (recursion)
    import importlib
    if name in ("load_avdigits", "avdigits"):
        avdigits = importlib.import_module(f"{__name__}.avdigits")
        return avdigits.load_avdigits if name == "load_avdigits" else avdigits
    if name == "oulad":
        return importlib.import_module(f"{__name__}.oulad")
    raise AttributeError(name)

# ---- SRCID (issue 9): data with a time axis (nbkit.data.sequences, imported lazily) ----
_lazy_srcid = ("sequences",)
_getattr_before_srcid = __getattr__


def __getattr__(name):  # noqa: F811 - extends the lazy loader above
    import importlib
    if name in _lazy_srcid:
        return importlib.import_module(f"{__name__}.{name}")
    return _getattr_before_srcid(name)

# ---- RSC-MD (notebook 06): procedural paired RGB + thermal scenes with boxes -------------
from .scenes import make_scenes, scenes_from_arrays

