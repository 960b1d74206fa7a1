"""Procedural paired RGB + thermal scenes with boxes: the demo data of RSC-MD (notebook 06).

Every number here is ours (docs/methods/rscmd.md, "Demo data"): the paper trains on FLIR,
LLVIP, M3FD and MFAD, which we do not have and cannot download.

A scene is a ``size`` x ``size`` image pair with 1 to ``max_objects`` non-overlapping objects
of ``n_classes`` classes:

========  =========================  ===========================  ==========
class     shape (box aspect w/h)     RGB colour                   heat
========  =========================  ===========================  ==========
person    filled ellipse, tall       red                          1.00
car       rectangle, wide            blue                         0.55
animal    triangle, about square     green                        0.78
========  =========================  ===========================  ==========

- **RGB** (3 channels): a smooth coloured background with the objects painted in their class
  colour. "day": full contrast, pixel noise 0.03. "night": every value scaled by
  ``night_contrast`` (0.25) and Gaussian noise ``night_noise`` (0.12) added, so RGB is the
  weak modality at night.
- **thermal** (1 channel): the ambient temperature (0.35 by day, 0.2 at night, slowly varying)
  plus a *blurred heat blob* of each object: its shape mask times its class heat, blurred with
  a Gaussian. ``thermal_quality`` q in [0, 1] is the knob: blur sigma ``3 - 2q`` pixels (scaled
  with the image size), heat amplitude ``0.4 + 0.6q``, noise ``0.03 + 0.2(1 - q)``. At q = 1 the
  blobs are sharp and strong, at q = 0 they are wide, faint and noisy.
- **targets** in ``factors``: ``boxes`` [N, K, 4] (x1, y1, x2, y2 in pixels, exact: the shape's
  bounding box), ``labels`` [N, K] (class index, -1 for padding), ``count`` [N], and ``night``
  [N] (1 for a night scene). ``y`` [N] is the class of the largest object, so the `Batch`
  contract (one label per sample) holds and classification read-outs have a target.

Deterministic by ``seed`` (torch and numpy generators seeded from it); 2,000 scenes of
32 x 32 take about a second on one CPU core.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_boxes, check_int, check_number, check_probability
from .batch import MultimodalDataset

__all__ = ["make_scenes", "scenes_from_arrays", "CLASS_NAMES", "CLASS_HEAT", "CLASS_RGB", "scene_targets"]

CLASS_NAMES = ("person", "car", "animal")                            # ours
CLASS_HEAT = (1.00, 0.55, 0.78)                                      # ours: heat of each class (thermal)
CLASS_RGB = ((0.90, 0.20, 0.20), (0.20, 0.35, 0.90), (0.25, 0.80, 0.30))   # ours: colour of each class
_ASPECT = ((0.45, 0.7), (1.5, 2.2), (0.85, 1.2))                     # ours: w/h range per class


def _place(rng: np.random.Generator, size: int, n_obj: int, classes: np.ndarray, lo: float, hi: float,
           gap: int) -> list[tuple[int, int, int, int]]:
    """Integer boxes inside the image, pairwise separated by >= ``gap`` pixels (rejection sampling)."""
    boxes: list[tuple[int, int, int, int]] = []
    for c in classes[:n_obj]:
        for _ in range(200):
            big = rng.uniform(lo, hi) * size                    # the longer side, in pixels
            a = rng.uniform(*_ASPECT[c])                         # w / h
            w, h = (big, big / a) if a >= 1 else (big * a, big)
            w, h = max(3, int(round(w))), max(3, int(round(h)))
            x1 = int(rng.integers(1, size - w))
            y1 = int(rng.integers(1, size - h))
            b = (x1, y1, x1 + w, y1 + h)
            if all(b[0] >= o[2] + gap or o[0] >= b[2] + gap or b[1] >= o[3] + gap or o[1] >= b[3] + gap
                   for o in boxes):
                boxes.append(b)
                break
    return boxes


def _masks(boxes: Tensor, labels: Tensor, size: int) -> Tensor:
    """[N, K, H, W] float shape masks (pixel centres inside the shape); padding rows are 0."""
    N, K, _ = boxes.shape
    c = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = c.view(1, 1, size, 1), c.view(1, 1, 1, size)
    x1, y1, x2, y2 = (boxes[..., i].view(N, K, 1, 1) for i in range(4))
    inside = (xx >= x1) & (xx <= x2) & (yy >= y1) & (yy <= y2)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    rx, ry = ((x2 - x1) / 2).clamp_min(1e-6), ((y2 - y1) / 2).clamp_min(1e-6)
    ellipse = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    # triangle pointing up: apex at the top centre, base on the bottom edge
    t = ((yy - y1) / (y2 - y1).clamp_min(1e-6)).clamp(0, 1)
    triangle = inside & ((xx - cx).abs() <= rx * t + 0.5)
    lab = labels.view(N, K, 1, 1)
    m = torch.where(lab == 0, ellipse & inside, torch.where(lab == 1, inside, triangle))
    return (m & (lab >= 0)).float()


def _blur_matrix(size: int, sigma: float) -> Tensor:
    """[size, size] matrix B with (B v) = v blurred by a 1-D Gaussian of std ``sigma`` pixels
    (edges replicated), so a separable 2-D blur is B X B^T: two small matmuls, much faster on
    a CPU than a grouped convolution."""
    r = max(1, int(math.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = k / k.sum()
    B = torch.zeros(size, size)
    idx = torch.arange(size)
    for o, w in zip(range(-r, r + 1), k):
        B[idx, (idx + o).clamp(0, size - 1)] += w
    return B


def _blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of [N, C, H, W] (H = W), edges replicated."""
    if sigma <= 0:
        return x
    B = _blur_matrix(x.shape[-1], sigma).to(x.dtype)
    return B @ x @ B.t()


def _smooth_field(g: torch.Generator, n: int, channels: int, size: int) -> Tensor:
    """Slowly varying random field in about [-1, 1]: 4x4 noise upsampled bilinearly."""
    coarse = torch.rand(n, channels, 4, 4, generator=g) * 2 - 1
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def _layouts(rng, n: int, size: int, K: int, n_classes: int, lo: float, hi: float):
    """Boxes [n, K, 4] and labels [n, K] (-1: no object) of n scenes with 1..K objects each."""
    boxes_np = np.zeros((n, K, 4), dtype=np.float32)
    labels_np = np.full((n, K), -1, dtype=np.int64)
    gap = max(1, size // 16)
    for i in range(n):
        k = int(rng.integers(1, K + 1))
        cls = rng.integers(0, n_classes, size=k)
        bs = _place(rng, size, k, cls, lo, hi, gap)
        if bs:
            boxes_np[i, :len(bs)] = bs
            labels_np[i, :len(bs)] = cls[:len(bs)]
    return torch.from_numpy(boxes_np), torch.from_numpy(labels_np)


def _render(g, boxes, labels, night, size: int, q: float, night_contrast: float, night_noise: float):
    """The RGB image (smooth background, painted objects; dark and noisy at night) and the
    thermal image (ambient plus blurred heat blobs; blur and noise fall with quality ``q``)."""
    n, K = labels.shape
    masks = _masks(boxes, labels, size)                                         # [N, K, H, W]
    lab = labels.clamp_min(0)
    # ---- RGB: smooth coloured background, objects painted over it
    bg = 0.5 + 0.15 * _smooth_field(g, n, 3, size) + 0.1 * (torch.rand(n, 3, 1, 1, generator=g) - 0.5)
    colour = torch.tensor(CLASS_RGB)[lab] + 0.08 * (torch.rand(n, K, 3, generator=g) - 0.5)   # [N, K, 3]
    cover = masks.sum(1, keepdim=True).clamp(max=1)                             # [N, 1, H, W]
    paint = torch.einsum("nkhw,nkc->nchw", masks, colour)
    rgb = bg * (1 - cover) + paint
    scale = torch.where(night, night_contrast, 1.0).view(n, 1, 1, 1)
    noise = torch.where(night, night_noise, 0.03).view(n, 1, 1, 1)
    rgb = rgb * scale + noise * torch.randn(rgb.shape, generator=g)
    # ---- thermal: ambient + blurred heat blobs
    ambient = torch.where(night, 0.2, 0.35).view(n, 1, 1, 1) + 0.05 * _smooth_field(g, n, 1, size)
    heat = torch.tensor(CLASS_HEAT)[lab] * (labels >= 0)                        # [N, K]
    blobs = (masks * heat.view(n, K, 1, 1)).amax(1, keepdim=True)               # [N, 1, H, W]
    sigma = (3.0 - 2.0 * q) * size / 64                                         # pixels, scaled with the image
    amp = 0.4 + 0.6 * q
    thermal = ambient + amp * _blur(blobs, sigma) + (0.03 + 0.2 * (1 - q)) * torch.randn(n, 1, size, size, generator=g)

    return rgb, thermal


def make_scenes(n: int = 1200, size: int = 32, night_fraction: float = 0.5, thermal_quality: float = 0.7,
                n_classes: int = 3, max_objects: int = 3, seed: int = 0, night_contrast: float = 0.25,
                night_noise: float = 0.12, object_scale: Sequence[float] = (0.22, 0.40)) -> MultimodalDataset:
    """``n`` paired RGB + thermal scenes with their boxes (module docstring: what is drawn).

    night_fraction:  share of night scenes (0: all day, 1: all night); which scenes are night
                     is drawn by ``seed``.
    thermal_quality: q in [0, 1], the thermal knob (blur, heat amplitude, noise).
    object_scale:    (min, max) of an object's longer side as a fraction of ``size``.
    Returns a `MultimodalDataset` with modalities "rgb" [N, 3, size, size] and "thermal"
    [N, 1, size, size], ``y`` = class of the largest object, targets in ``factors``.
    """
    n = check_int("n", n, 1)
    size = check_int("size", size, 16, 512)
    night_fraction = check_probability("night_fraction", night_fraction)
    q = check_probability("thermal_quality", thermal_quality)
    n_classes = check_int("n_classes", n_classes, 2, len(CLASS_NAMES))
    max_objects = check_int("max_objects", max_objects, 1, 3)
    seed = check_int("seed", seed)
    night_contrast = check_number("night_contrast", night_contrast, 0.0, 1.0, lo_open=True)
    night_noise = check_number("night_noise", night_noise, 0.0)
    try:
        lo, hi = (float(v) for v in object_scale)
    except (TypeError, ValueError):
        raise ValueError(f"object_scale must be a pair (min, max) of fractions of the image size, got {object_scale!r}") from None
    lo = check_number("object_scale[0]", lo, 0.1, 0.5)
    hi = check_number("object_scale[1]", hi, lo, 0.5)

    rng = np.random.default_rng(seed)
    g = torch.Generator().manual_seed(seed)
    K = max_objects
    boxes, labels = _layouts(rng, n, size, K, n_classes, lo, hi)
    count = (labels >= 0).sum(1)
    night = torch.from_numpy(rng.random(n) < night_fraction)

    rgb, thermal = _render(g, boxes, labels, night, size, q, night_contrast, night_noise)
    areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]) * (labels >= 0)
    y = labels.gather(1, areas.argmax(1, keepdim=True)).squeeze(1)
    desc = (f"procedural RGB+thermal scenes n={n} size={size} night_fraction={night_fraction:g} "
            f"thermal_quality={q:g} classes={n_classes} objects<={K} seed={seed}")
    return MultimodalDataset(
        {"rgb": rgb.float(), "thermal": thermal.float()}, y,
        factors={"boxes": boxes, "labels": labels, "count": count, "night": night.float()},
        name="scenes", class_names=list(CLASS_NAMES[:n_classes]),
        info={"description": desc, "size": size, "thermal_quality": q, "night_fraction": night_fraction,
              "max_objects": K, "seed": seed},
    )


def scenes_from_arrays(rgb, thermal, boxes: Sequence, labels: Sequence, class_names: Sequence[str],
                       night=None, name: str = "scenes") -> MultimodalDataset:
    """Your own paired images as a detection data set of the same form as `make_scenes`.

    rgb [N, 3, H, W], thermal [N, 1, H, W] (square, same size); ``boxes[i]``: [k_i, 4] pixel
    boxes (x1, y1, x2, y2) of image i, ``labels[i]``: [k_i] class indices. A box with x2 <= x1
    or y2 <= y1, or reaching outside the image, is an error naming it.
    """
    rgb, thermal = torch.as_tensor(rgb, dtype=torch.float32), torch.as_tensor(thermal, dtype=torch.float32)
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise ValueError(f"rgb must have shape [N, 3, H, W], got {tuple(rgb.shape)}")
    if thermal.ndim != 4 or thermal.shape[1] != 1 or thermal.shape[0] != rgb.shape[0] \
            or thermal.shape[2:] != rgb.shape[2:]:
        raise ValueError(f"thermal must have shape [N, 1, H, W] matching rgb {tuple(rgb.shape)}, got {tuple(thermal.shape)}")
    N, _, H, W = rgb.shape
    if H != W:
        raise ValueError(f"images must be square, got H={H}, W={W}")
    if len(boxes) != N or len(labels) != N:
        raise ValueError(f"boxes and labels must hold one entry per image ({N}), got {len(boxes)} and {len(labels)}")
    C = len(class_names)
    if C < 2:
        raise ValueError(f"class_names must name >= 2 classes, got {list(class_names)}")
    K = max(1, max(len(b) for b in boxes))
    B = torch.zeros(N, K, 4)
    L = torch.full((N, K), -1, dtype=torch.long)
    count = torch.zeros(N, dtype=torch.long)
    for i, (b, l) in enumerate(zip(boxes, labels)):
        b = torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4)
        l = torch.as_tensor(l, dtype=torch.long).reshape(-1)
        if len(b) != len(l):
            raise ValueError(f"boxes[{i}] has {len(b)} boxes but labels[{i}] has {len(l)} labels")
        if len(b) == 0:
            raise ValueError(f"image {i} has no object; every scene needs at least one box")
        check_boxes(f"boxes[{i}]", b, W, H)
        if ((l < 0) | (l >= C)).any():
            raise ValueError(f"labels[{i}] must be class indices in [0, {C - 1}], got {l.tolist()}")
        B[i, :len(b)], L[i, :len(l)], count[i] = b, l, len(b)
    areas = (B[..., 2] - B[..., 0]) * (B[..., 3] - B[..., 1]) * (L >= 0)
    y = L.gather(1, areas.argmax(1, keepdim=True)).squeeze(1)
    night = torch.zeros(N) if night is None else torch.as_tensor(night, dtype=torch.float32).reshape(N)
    return MultimodalDataset({"rgb": rgb, "thermal": thermal}, y,
                             factors={"boxes": B, "labels": L, "count": count, "night": night},
                             name=name, class_names=list(class_names),
                             info={"description": f"{name} n={N} size={H}", "size": H, "max_objects": K})


def scene_targets(factors: dict, index: int) -> tuple[Tensor, Tensor]:
    """(boxes [k, 4], labels [k]) of one image from a batch's / data set's ``factors``."""
    k = int(factors["count"][index])
    return factors["boxes"][index, :k], factors["labels"][index, :k]
