"""RSC-MD (arXiv 2511.15433): representation space constrained learning with modality
decoupling, on a small two-backbone CenterNet-style detector. Method notes:
docs/methods/rscmd.md.

The paper's code was promised but never published and its equations were not retrievable,
so the RSC and MD mechanisms below are OUR rebuild of what its abstract states (marked
"ours"); the detection parts follow the public CenterNet code (xingyizhou/CenterNet, marked
"(reference code)").

The theory (our rebuild, verified numerically in notebook 06 and tests/test_rscmd.py): for a
binary logit z = sum_m w_m f_m + b with w, f >= 0 and y = 1, the fused gradient on f_m is
-(1 - sigma(z)) w_m and the gradient unimodal training would give is -(1 - sigma(z_m)) w_m with
z_m = w_m f_m + b, so the suppression ratio

    rho_m = (1 - sigma(z)) / (1 - sigma(z_m)) <= 1,                       (`logistic_toy_rho`)

smaller for the modality whose own logit z_m is smaller (the weak one), and it depends on the
partner through z (the coupling).

The model (every size ours, CPU-sized):

    f_m   = backbone_m(x_m)                  [B, 2w, S/4, S/4], one small CNN per modality
    F     = neck(concat_m f_m)  (or sum)     the fusion neck (3x3 conv + ReLU)
    heads = hm (C), wh (2), reg (2)           CenterNet heads (1x1 convs), decoded to boxes
    L_det = focal(hm) + 0.1 L1(wh) + 1 L1(reg)        (reference code weights)

RSC (``rsc=True``, ours after the paper's abstract): an auxiliary detector per modality
(the fused neck + heads' architecture on one backbone's features) adds
lambda_aux * sum_m L_det(aux_m(f_m)); the auxiliary heads are never used for the fused
prediction ("dropped at inference"). With ``rsc=False`` the same heads are trained on
*detached* features: probes that measure what each backbone alone supports (per-modality
mAP) without changing how the backbones learn.

MD (``md``, ours after the paper's abstract and the project spec):
- "A": stop-gradient on f_m where it enters the fusion neck: each backbone learns only from
  its auxiliary loss (so MD-A without RSC leaves the backbones at their initialisation),
  the neck and heads from detached features.
- "B" (gradient mapping): dL_fuse/df_m is replaced by the gradient the fused neck + heads
  give f_m with the partner modality zeroed (``md_partner="zero"``) or at its running mean
  (``"mean"``): a term ``map_<m>`` = L_det(head(neck(fuse(f_m, partner)))) whose neck/head
  parameters are detached, so it moves only backbone m; the neck and heads still learn from
  the fused loss on detached features.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_bool, check_choice, check_finite, check_int, check_number, check_weight
from ..data.batch import Batch
from ..nn import eval_mode
from .base import ModelConfig, MultimodalModel, Output

__all__ = ["RSCMDDetector", "RSCMDConfig", "logistic_toy_rho", "gaussian_radius", "encode_targets",
           "centernet_focal_loss", "reg_l1_loss", "decode_detections", "detection_loss"]


# ------------------------------------------------------------------------ the theory
def logistic_toy_rho(w, f, b: float = 0.0) -> Tensor:
    """The suppression ratio of the logistic toy (our rebuild of the paper's theory):
    rho_m = (1 - sigma(z)) / (1 - sigma(z_m)), z = sum_k w_k f_k + b, z_m = w_m f_m + b.

    ``w``, ``f``: [M] (one sample) or [N, M] (per sample); returns rho with the shape of ``f``."""
    w = torch.as_tensor(w, dtype=torch.float64)
    f = torch.as_tensor(f, dtype=torch.float64)
    check_finite("w", w)
    check_finite("f", f)
    b = check_number("b", b)
    if w.ndim != 1 or f.shape[-1] != w.shape[0]:
        raise ValueError(f"w must be [M] and f [..., M] with the same M, got {tuple(w.shape)} and {tuple(f.shape)}")
    z = (w * f).sum(-1, keepdim=True) + b
    zm = w * f + b
    return torch.sigmoid(-z) / torch.sigmoid(-zm)          # 1 - sigma(x) = sigma(-x), stable


# --------------------------------------------------------------- CenterNet pieces
def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's (reference code, utils/image.py) radius: the smallest of the three
    quadratic-equation radii within which a corner shift keeps IoU >= ``min_overlap``."""
    a1, b1, c1 = 1.0, h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 - math.sqrt(b1 ** 2 - 4 * a1 * c1)) / (2 * a1)
    a2, b2, c2 = 4.0, 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 - math.sqrt(b2 ** 2 - 4 * a2 * c2)) / (2 * a2)
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / (2 * a3)
    return min(r1, r2, r3)


def encode_targets(boxes: Tensor, labels: Tensor, n_classes: int, out_size: int, stride: int) -> dict[str, Tensor]:
    """CenterNet targets (reference code: datasets/sample/ctdet.py) for pixel boxes.

    boxes [B, K, 4] (x1, y1, x2, y2, pixels), labels [B, K] (-1: padding). In output units
    (pixels / ``stride``): the centre ct, its cell ct_int = floor(ct), ``hm`` [B, C, h, w]
    the max over objects of a Gaussian of radius r = max(0, int(gaussian_radius(ceil(h),
    ceil(w)))) and sigma = (2r + 1) / 6 around ct_int (window |dx|, |dy| <= r), ``wh`` [B, K, 2]
    the size, ``reg`` [B, K, 2] = ct - ct_int, ``ind`` [B, K] = ct_int_y * w + ct_int_x,
    ``mask`` [B, K]. Ours: coordinates are clipped to the image extent [0, out_size] (the
    reference clips to out_size - 1, its pixel-index convention, which shrinks a box touching
    the right or bottom edge).
    """
    B, K = labels.shape
    dev = boxes.device
    valid = labels >= 0
    bx = (boxes.float() / stride).clamp(0, out_size)
    w = bx[..., 2] - bx[..., 0]
    h = bx[..., 3] - bx[..., 1]
    valid = valid & (w > 0) & (h > 0)
    ct = torch.stack([(bx[..., 0] + bx[..., 2]) / 2, (bx[..., 1] + bx[..., 3]) / 2], -1)
    ct_int = ct.floor().clamp(0, out_size - 1)
    # radius per object (python floats: the reference's scalar formula, int() truncation)
    hw = torch.stack([h, w], -1).ceil().cpu().tolist()
    vmask = valid.cpu().tolist()
    rad = torch.tensor([[max(0, int(gaussian_radius(*hw[i][k]))) if vmask[i][k] else 0 for k in range(K)]
                        for i in range(B)], dtype=torch.float32, device=dev)
    sigma = (2 * rad + 1) / 6
    grid = torch.arange(out_size, dtype=torch.float32, device=dev)
    dx = grid.view(1, 1, 1, -1) - ct_int[..., 0].view(B, K, 1, 1)
    dy = grid.view(1, 1, -1, 1) - ct_int[..., 1].view(B, K, 1, 1)
    r = rad.view(B, K, 1, 1)
    g = torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma.view(B, K, 1, 1) ** 2))
    g = torch.where((dx.abs() <= r) & (dy.abs() <= r), g, torch.zeros((), device=dev))
    g = torch.where(g < torch.finfo(torch.float64).eps, torch.zeros((), device=dev), g)   # reference: eps * max, max = 1
    g = g * valid.view(B, K, 1, 1)
    hm = torch.stack([(g * (labels == c).view(B, K, 1, 1)).amax(1) if K else
                      torch.zeros(B, out_size, out_size, device=dev) for c in range(n_classes)], 1)
    ind = (ct_int[..., 1] * out_size + ct_int[..., 0]).long() * valid
    return {"hm": hm, "wh": torch.stack([w, h], -1) * valid[..., None], "reg": (ct - ct_int) * valid[..., None],
            "ind": ind, "mask": valid}


def _clamped_sigmoid(x: Tensor) -> Tensor:
    """Reference code (models/utils.py `_sigmoid`): sigmoid clamped to [1e-4, 1 - 1e-4]."""
    return torch.sigmoid(x.float()).clamp(1e-4, 1 - 1e-4)


def centernet_focal_loss(hm_logits: Tensor, target: Tensor) -> Tensor:
    """Penalty-reduced focal loss (CornerNet/CenterNet reference code, `_neg_loss`):
    p = clamped sigmoid; pos = log(p)(1-p)^2 at target == 1; neg = log(1-p) p^2 (1-target)^4
    elsewhere; loss = -(sum pos + sum neg) / num_pos (or -sum neg when there is no positive)."""
    p = _clamped_sigmoid(hm_logits)
    pos = target.eq(1).float()
    neg = target.lt(1).float()
    pos_loss = (torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - p) * p ** 2 * (1 - target) ** 4 * neg).sum()
    num_pos = pos.sum()
    return -neg_loss if num_pos == 0 else -(pos_loss + neg_loss) / num_pos


def _gather(feat: Tensor, ind: Tensor) -> Tensor:
    """[B, D, h, w] at flat cell indices [B, K] -> [B, K, D]."""
    B, D = feat.shape[:2]
    flat = feat.reshape(B, D, -1).permute(0, 2, 1)
    return flat.gather(1, ind.unsqueeze(2).expand(-1, -1, D))


def reg_l1_loss(pred: Tensor, mask: Tensor, ind: Tensor, target: Tensor) -> Tensor:
    """Reference code `RegL1Loss`: sum |pred - target| over the objects' centre cells divided
    by (number of masked entries + 1e-4), the mask expanded over the 2 coordinates."""
    p = _gather(pred.float(), ind)
    m = mask.unsqueeze(2).expand_as(p).float()
    return F.l1_loss(p * m, target * m, reduction="sum") / (m.sum() + 1e-4)


def detection_loss(head: dict[str, Tensor], t: dict[str, Tensor], hm_weight: float = 1.0, wh_weight: float = 0.1,
                   off_weight: float = 1.0) -> Tensor:
    """L_det = hm_weight focal + wh_weight L1(wh) + off_weight L1(reg) (reference code
    `CtdetLoss`, default weights 1, 0.1, 1)."""
    loss = hm_weight * centernet_focal_loss(head["hm"], t["hm"])
    if wh_weight:
        loss = loss + wh_weight * reg_l1_loss(head["wh"], t["mask"], t["ind"], t["wh"])
    if off_weight:
        loss = loss + off_weight * reg_l1_loss(head["reg"], t["mask"], t["ind"], t["reg"])
    return loss


def decode_detections(hm_logits: Tensor, wh: Tensor, reg: Tensor, stride: int, k: int = 20,
                      image_size: float | None = None) -> list[dict[str, Tensor]]:
    """Reference code `ctdet_decode`: sigmoid, 3x3 max-pool "NMS" (keep cells equal to their
    neighbourhood max), the top ``k`` scores over classes and cells, centre = cell + reg,
    box = centre -+ wh / 2, times ``stride`` back to pixels. Ours: a negative predicted size is
    set to 0 and boxes are clipped to [0, image_size] when given; ``k`` 20 (reference 100: our images hold <= 3 objects).
    Returns one dict per image: boxes [k, 4], scores [k], labels [k]."""
    B, C, h, w = hm_logits.shape
    heat = torch.sigmoid(hm_logits.float())
    keep = (F.max_pool2d(heat, 3, stride=1, padding=1) == heat).float()
    heat = heat * keep
    k = min(int(k), C * h * w)
    scores, idx = heat.reshape(B, -1).topk(k)
    cls = idx // (h * w)
    cell = idx % (h * w)
    ys, xs = (cell // w).float(), (cell % w).float()
    r = _gather(reg.float(), cell)
    s = _gather(wh.float(), cell).clamp_min(0)          # ours: a negative predicted size becomes 0
    cx, cy = xs + r[..., 0], ys + r[..., 1]
    boxes = torch.stack([cx - s[..., 0] / 2, cy - s[..., 1] / 2, cx + s[..., 0] / 2, cy + s[..., 1] / 2], -1) * stride
    if image_size is not None:
        boxes = boxes.clamp(0, float(image_size))
    return [{"boxes": boxes[i], "scores": scores[i], "labels": cls[i]} for i in range(B)]


# ----------------------------------------------------------------------- the model
@dataclass
class RSCMDConfig(ModelConfig):
    width: int = 16                 # backbone base channels; features have 2*width (ours)
    depth: int = 0                  # stride-1 3x3 convs after the downsampling (ours; 1 was worse and slower)
    stride: int = 4                 # output stride (reference code: down_ratio 4)
    fusion: str = "concat"          # "concat" | "add" (spec: additive or concat; ours: concat)
    head_conv: int = 16             # neck channels (reference code: head_conv 64 for ResNets; ours 16)
    rsc: bool = False               # auxiliary unimodal detection losses flow into the backbones
    md: str = "none"                # "none" | "A" (stop-gradient) | "B" (gradient mapping)
    md_partner: str = "zero"        # MD-B: the partner modality "zero" or at its running "mean"
    lambda_aux: float = 1.0         # RSC: weight of the summed auxiliary losses (spec: l = 1)
    hm_weight: float = 1.0          # inside L_det (reference code: hm_weight 1)
    wh_weight: float = 0.1          # inside L_det (reference code: wh_weight 0.1)
    off_weight: float = 1.0         # inside L_det (reference code: off_weight 1)
    max_detections: int = 20        # decoded boxes per image (reference code K = 100; ours 20)
    mean_momentum: float = 0.1      # MD-B "mean": EMA momentum of the running feature mean (ours)

    def __post_init__(self):
        super().__post_init__()
        self.width = check_int("width", self.width, 1)
        self.depth = check_int("depth", self.depth, 0)
        self.stride = check_choice("stride", self.stride, (2, 4))
        self.fusion = check_choice("fusion", self.fusion, ("concat", "add"))
        self.head_conv = check_int("head_conv", self.head_conv, 1)
        self.rsc = check_bool("rsc", self.rsc)
        self.md = check_choice("md", self.md, ("none", "A", "B"))
        self.md_partner = check_choice("md_partner", self.md_partner, ("zero", "mean"))
        for name in ("lambda_aux", "hm_weight", "wh_weight", "off_weight"):
            setattr(self, name, check_weight(name, getattr(self, name)))
        self.max_detections = check_int("max_detections", self.max_detections, 1)
        self.mean_momentum = check_number("mean_momentum", self.mean_momentum, 0.0, 1.0, lo_open=True)


def _backbone(c_in: int, width: int, stride: int, depth: int) -> nn.Sequential:
    """A small CNN (ours): stride-2 3x3 convs (+ ReLU) down to ``stride`` (channels width,
    then 2 width), then ``depth`` stride-1 3x3 convs at 2 width."""
    layers, c = [], c_in
    outs = [width, 2 * width] if stride == 4 else [2 * width]
    for co in outs:
        layers += [nn.Conv2d(c, co, 3, stride=2, padding=1), nn.ReLU()]
        c = co
    for _ in range(depth):
        layers += [nn.Conv2d(c, 2 * width, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers)


class DetHead(nn.Module):
    """Neck + CenterNet heads: 3x3 conv + ReLU, then 1x1 convs to hm (C), wh (2), reg (2).
    The hm bias starts at -2.19 (reference code: prior probability 0.1)."""

    def __init__(self, c_in: int, head_conv: int, n_classes: int):
        super().__init__()
        self.neck = nn.Sequential(nn.Conv2d(c_in, head_conv, 3, padding=1), nn.ReLU())
        self.hm = nn.Conv2d(head_conv, n_classes, 1)
        self.wh = nn.Conv2d(head_conv, 2, 1)
        self.reg = nn.Conv2d(head_conv, 2, 1)
        nn.init.constant_(self.hm.bias, -2.19)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        z = self.neck(x)
        return {"hm": self.hm(z), "wh": self.wh(z), "reg": self.reg(z)}


class RSCMDDetector(MultimodalModel):
    """Two (or more) CNN backbones, a fusion neck, CenterNet heads; RSC and MD as config
    options (module docstring). Works with a single modality too (a unimodal detector).

    Batch contract: ``x[m]`` images [B, C_m, S, S]; targets in ``factors`` (``boxes``,
    ``labels``, ``count``, see `nbkit.data.make_scenes`). Output: ``logits`` [B, C] the
    image-level class read-out (spatial max of the fused heatmap logits), ``unimodal_logits``
    the same read-out of each auxiliary head (OGM-GE / RedReg read these),
    ``features`` the backbone maps, ``extras["det"]`` the fused heads, ``extras["aux"][m]``
    each auxiliary head, ``extras["map"][m]`` the MD-B mapped heads.
    """

    Config = RSCMDConfig

    def __init__(self, dims, n_classes, config=None, **overrides):
        # the base class builds vector/sequence encoders; images get CNN backbones, so it is
        # given a placeholder shape and the backbones replace its encoders below
        if not isinstance(dims, dict) or not dims:
            raise ValueError("dims must name at least one modality: {name: (channels, S, S)}")
        sizes = set()
        for m, s in dims.items():
            s = tuple(s)
            if len(s) != 3 or s[1] != s[2] or min(s) < 1:
                raise ValueError(f"RSCMDDetector needs square images per modality, shape (C, S, S); "
                                 f"dims[{m!r}] is {s}")
            sizes.add(s[1])
        super().__init__({m: (1,) for m in dims}, n_classes, config, **overrides)
        self.dims = {m: tuple(s) for m, s in dims.items()}
        c = self.config
        if len(sizes) != 1:
            raise ValueError(f"all modalities must have the same image size, got {sorted(sizes)}")
        self.image_size = sizes.pop()
        if self.image_size % c.stride:
            raise ValueError(f"image size {self.image_size} must be divisible by stride={c.stride}")
        self.out_size = self.image_size // c.stride
        feat = 2 * c.width
        # named `encoders` so regulators find each modality's parameters
        self.encoders = nn.ModuleDict({m: _backbone(s[0], c.width, c.stride, c.depth) for m, s in self.dims.items()})
        M = len(self.modalities)
        self.head = DetHead(feat * (M if c.fusion == "concat" else 1), c.head_conv, self.n_classes)
        self.aux = nn.ModuleDict({m: DetHead(feat, c.head_conv, self.n_classes) for m in self.modalities}) \
            if M > 1 else nn.ModuleDict()
        if c.md == "B" and c.md_partner == "mean":
            for m in self.modalities:
                self.register_buffer(f"mean_{m}", torch.zeros(feat, self.out_size, self.out_size))

    # -- pieces ----------------------------------------------------------------------
    def fuse(self, feats: dict[str, Tensor]) -> Tensor:
        """concat (or sum) of the per-modality feature maps, in the model's modality order."""
        fs = [feats[m] for m in self.modalities]
        return torch.cat(fs, 1) if self.config.fusion == "concat" else torch.stack(fs).sum(0)

    def backbone_features(self, batch: Batch) -> dict[str, Tensor]:
        """f_m per modality, zero where the sample lacks the modality (its input is zeroed
        before the backbone, so NaN there cannot leak)."""
        self.check_batch(batch)
        out = {}
        for m in self.modalities:
            x = batch.x[m]
            check_finite(f"batch.x[{m!r}]", x)
            mk = batch.mask(m).view(-1, 1, 1, 1)
            x = torch.where(mk, x, torch.zeros((), dtype=x.dtype, device=x.device))
            out[m] = self.encoders[m](x) * mk.to(x.dtype)
        return out

    def _frozen_head(self, x: Tensor) -> dict[str, Tensor]:
        """The fused neck + heads with their parameters detached (MD-B: moves only the input)."""
        params = {k: v.detach() for k, v in self.head.named_parameters()}
        return torch.func.functional_call(self.head, params, (x,))

    # -- forward -----------------------------------------------------------------------
    def forward(self, batch: Batch) -> Output:
        c = self.config
        f = self.backbone_features(batch)
        into_fusion = {m: v.detach() for m, v in f.items()} if c.md in ("A", "B") else f
        det = self.head(self.fuse(into_fusion))
        extras: dict = {"det": det}
        uni = {}
        if len(self.aux):
            aux_in = f if c.rsc else {m: v.detach() for m, v in f.items()}
            extras["aux"] = {m: self.aux[m](aux_in[m]) for m in self.modalities}
            uni = {m: h["hm"].amax((2, 3)) for m, h in extras["aux"].items()}
        if c.md == "B" and self.training:
            if c.md_partner == "mean":
                with torch.no_grad():
                    for m in self.modalities:
                        buf = getattr(self, f"mean_{m}")
                        buf.mul_(1 - c.mean_momentum).add_(f[m].detach().float().mean(0), alpha=c.mean_momentum)
            extras["map"] = {}
            for m in self.modalities:
                parts = {}
                for k in self.modalities:
                    if k == m:
                        parts[k] = f[m]
                    elif c.md_partner == "zero":
                        parts[k] = torch.zeros_like(f[k])
                    else:
                        parts[k] = getattr(self, f"mean_{k}").to(f[k].dtype).expand_as(f[k])
                extras["map"][m] = self._frozen_head(self.fuse(parts))
        return Output(logits=det["hm"].amax((2, 3)), features=f, unimodal_logits=uni, extras=extras)

    # -- losses ------------------------------------------------------------------------
    def targets(self, batch: Batch) -> dict[str, Tensor]:
        missing = [k for k in ("boxes", "labels") if k not in batch.factors]
        if missing:
            raise KeyError(f"{type(self).__name__} needs the detection targets {missing} in batch.factors "
                           f"(make_scenes / scenes_from_arrays put them there)")
        return encode_targets(batch.factors["boxes"], batch.factors["labels"], self.n_classes, self.out_size,
                              self.config.stride)

    def det_loss(self, head: dict[str, Tensor], t: dict[str, Tensor]) -> Tensor:
        c = self.config
        return detection_loss(head, t, c.hm_weight, c.wh_weight, c.off_weight)

    def loss_terms(self, batch: Batch, out: Output) -> dict[str, Tensor]:
        """UNWEIGHTED terms: ``task`` = L_det of the fused heads; ``aux`` (RSC) or ``probe``
        (detached auxiliary heads) = sum_m L_det(aux_m); ``map_<m>`` (MD-B) the mapped loss."""
        t = self.targets(batch)
        terms = {"task": self.det_loss(out.extras["det"], t)}
        if "aux" in out.extras:
            aux = sum(self.det_loss(h, t) for h in out.extras["aux"].values())
            terms["aux" if self.config.rsc else "probe"] = aux
        for m, h in out.extras.get("map", {}).items():
            terms[f"map_{m}"] = self.det_loss(h, t)
        return terms

    def loss_weights(self) -> dict[str, float]:
        w = self.config.loss_weights()            # task 1, aux = lambda_aux
        w["probe"] = 1.0
        w.update({f"map_{m}": 1.0 for m in self.modalities})   # MD-B: replaces the task gradient, same weight
        return w

    # -- hooks for the RSC regulator (nbkit.regulate.RSC) ----------------------------------
    def make_aux_head(self, m: str) -> DetHead:
        """A fresh auxiliary detection head for modality ``m`` (the fused head's architecture
        on one backbone's features), for `nbkit.regulate.RSC`."""
        check_choice("m", m, self.modalities)
        return DetHead(2 * self.config.width, self.config.head_conv, self.n_classes)

    def aux_loss(self, m: str, pred: dict[str, Tensor], batch: Batch) -> Tensor:
        """L_det of an auxiliary head's output on ``batch``'s boxes."""
        return self.det_loss(pred, self.targets(batch))

    # -- inference ---------------------------------------------------------------------
    @property
    def heads(self) -> tuple[str, ...]:
        """What `predict` can decode: "fused", then each modality's auxiliary head."""
        return ("fused",) + tuple(self.aux.keys())

    @torch.no_grad()
    def predict(self, batch: Batch, head="fused"):
        """Decoded boxes per image (one dict per image: boxes, scores, labels) from the fused
        heads (``head="fused"``) or one modality's auxiliary head (``head=<modality>``); a
        list/tuple of heads gives {head: detections} from one forward pass. Runs in eval
        mode and restores the mode after."""
        many = isinstance(head, (list, tuple))
        names = [check_choice("head", h, self.heads) for h in (head if many else [head])]
        with eval_mode(self):
            out = self(batch)
        res = {}
        for name in names:
            h = out.extras["det"] if name == "fused" else out.extras["aux"][name]
            res[name] = decode_detections(h["hm"], h["wh"], h["reg"], self.config.stride,
                                          self.config.max_detections, image_size=self.image_size)
        return res if many else res[names[0]]
