"""TDN (Wang, Tong, Ji, Wu, CVPR 2021) and GC-TDN (GC paper, "the implementation of GC-TDN
follows GC-TSN"), built as a configuration of the one video ResNet.

Input layout. A TDN clip is ``(B, 3, 5*T, H, W)``: T segments of 5 consecutive frames, segment t
at frame indices 5t .. 5t+4 (``zoo.sampling.sample("tdn", n, T)`` samples them from a video). ``num_frames`` in
names and in the registry counts segments, so ``tdn_r50_ssv1_8f`` reads 40 frames.

The network (the authors' code, ops/tdn_net.py and ops/base_module.py of MCG-NJU/TDN, as copied
into the GC repository's ops_tdn/):

* Short-term difference module (stages 1-2). The RGB stream is the ResNet stem on the 3rd frame
  of each segment. The difference stream stacks the 4 differences of consecutive frames (12
  channels, difference-major), average-pools them 2x, and runs its own 7x7/2 conv (12 -> 64,
  no bias) + BN + ReLU + 3x3/2 max pool, then its own copy of layer1. Both are fused into the RGB
  stream by nearest-neighbour resizing: ``a*rgb + b*diff`` after the stem's max pool and again
  after layer1.
* Long-term difference module (stages 3-5 = layer2-4). Every bottleneck runs, after conv1 ->
  bn1 -> ReLU, the "mSE" motion excitation (:class:`MotionExcitation`, cross-segment feature
  differences as a gate) and a depthwise temporal conv initialised as a TSM shift
  (:class:`ShiftConv`), then conv2 as usual. In the zoo that is the ``mid`` slot.

Differences between the paper's text and the code, all following the code (checkpoints need it):

* Fusion weights. ``tdn_net`` sets a = b = 0.5 when the model is built for exactly 8 segments,
  and a = 0.75, b = 0.25 for every other count (16 included). ``fusion=None`` reproduces that
  from ``num_frames`` at build time (the weights were trained with it); pass ``fusion=(a, b)`` to
  choose. The input's T is otherwise free.
* Biased convs. The backbone is the Cadene "fbresnet" layout, whose stem, conv1-3 and
  downsample convs have a bias (``VideoResNet(conv_bias=True)``); the mSE, shift and
  difference-stem convs have none.
* An unused conv. The code keeps the second ResNet's stem conv as ``conv1_temp`` (7x7, 3 -> 64,
  with bias); it is in every checkpoint and in the parameter count (9,472 params) but never runs.
  It is kept here, uncalled, so checkpoints load strictly. The difference stem's conv is
  initialised from it (its weight averaged over RGB and repeated 12 times), as in the code.
* mSE. The reduction is 16; the "smallscale4" branch runs at full resolution (no pooling despite
  its name; the 4x pools exist but are never used and are not built here); the "smallscale2"
  branch average-pools 2x (floor for odd sizes) and resizes back with nearest. The forward and
  backward differences are ``conv2(f)[t+1] - f[t]`` and ``conv2(f)[t] - f[t+1]`` with a zero
  frame at the end / start; each goes through both branches and conv3 + bn3 separately, and the
  output is ``x * (1 + (sigmoid(fwd) - 0.5)/2 + (sigmoid(bwd) - 0.5)/2)``. An early version of the
  TDN code fed the forward full-resolution branch into the backward one (a bug fixed in later
  commits); the GC repository's copy, which the released GC-TDN checkpoints come from, has the fix.
* Input size. The mSE's 2x average pool needs maps of at least 2x2 in every layer2-4 block, so
  frames must be at least 33x33 px (``MIN_SIZE``; the code has the same limit); 112 and 224 are fine.
* Kinetics sampling. The TDN loader tests Kinetics with its training-style random positions per
  clip (10 clips x 3 crops); Something-Something uses the centred test positions.
* Counts. With 174 classes the code builds 24,420,046 (TDN) and 25,697,742 (GC-TDN) parameters
  and fvcore counts 35.89G / 36.59G FLOPs per 8-segment clip at 224 (both matched exactly here).
  The papers print 26.1M / 27.4M: the same networks with a 1000-class (ImageNet) head. The five
  frames of a segment do not run through the ResNet five times: the centre frame takes the RGB
  path (4.11G per segment, as TSN), the four differences one 12-channel stem conv at half
  resolution (0.12G) and the difference layer1 at quarter resolution (0.17G); with the mSE/shift
  modules a segment costs 4.49G.
* GC placement (GC-TDN). In layers 2-4 the GC module works on the bn1 output, before the ReLU,
  mSE and shift; in the plain layer1 blocks (RGB and difference stream alike) after conv2 + bn2.
  Both layer1 copies carry GC modules.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..convert import COMMON_RULES, rename
from ..registration import register_arch, register_converter
from .gc import CALIBRATORS, check_gc, gc_rules, gc_slot
from .ops import Conv1x1
from .resnet import DEPTHS, Bottleneck, Slots, VideoResNet, check_clip

__all__ = ["MotionExcitation", "ShiftConv", "MotionShift", "DifferenceStem", "TDNResNet", "tdn_slots",
           "tdn_fusion", "FRAMES_PER_SEGMENT"]

FRAMES_PER_SEGMENT = 5
MIN_SIZE = 33   # ceil(H / 32) >= 2: layer4's map must survive the mSE's 2x average pool


class ShiftConv(nn.Module):
    """Depthwise temporal conv (kernel 3, no bias) initialised as TSM's shift: the first
    C/fold_div channels read frame t+1, the next C/fold_div frame t-1, the rest frame t. The
    weights stay trainable (TDN's ShiftModule, mode 'shift')."""

    def __init__(self, channels: int, fold_div: int = 8):
        super().__init__()
        self.fold_div = fold_div
        self.weight = nn.Parameter(torch.empty(channels, 1, 3))
        self.init_weights()

    def init_weights(self) -> None:
        fold = self.weight.shape[0] // self.fold_div
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:fold, 0, 2] = 1
            self.weight[fold:2 * fold, 0, 0] = 1
            self.weight[2 * fold:, 0, 1] = 1

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        NT, C, H, W = x.shape
        # (N, C, T, H*W) as a view; a (3, 1) depthwise conv2d slides over T only
        v = x.view(NT // T, T, C, H * W).transpose(1, 2)
        out = F.conv2d(v, self.weight.unsqueeze(-1), padding=(1, 0), groups=C)
        return out.transpose(1, 2).reshape(NT, C, H, W)

    def extra_repr(self) -> str:
        return f"channels={self.weight.shape[0]}, fold_div={self.fold_div}"


class MotionExcitation(nn.Module):
    """TDN's long-term difference module ("mSE"): a gate from cross-segment feature differences.

    Squeeze C -> C/16 (1x1 conv + BN); the difference of the next segment's depthwise-3x3-conved
    features and this segment's features, forward and backward in time (zero at the clip ends);
    each difference is averaged with a 3x3 conv + BN of itself at full and at half resolution,
    expanded back to C (1x1 conv + BN) and turned into a sigmoid gate centred on 1."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        r = channels // reduction
        self.conv1 = Conv1x1(channels, r)
        self.bn1 = nn.BatchNorm2d(r)
        self.conv2 = nn.Conv2d(r, r, 3, padding=1, groups=r, bias=False)
        self.conv_half = nn.Conv2d(r, r, 3, padding=1, bias=False)
        self.bn_half = nn.BatchNorm2d(r)
        self.conv_full = nn.Conv2d(r, r, 3, padding=1, bias=False)
        self.bn_full = nn.BatchNorm2d(r)
        self.conv3 = Conv1x1(r, channels)
        self.bn3 = nn.BatchNorm2d(channels)

    def _gate(self, d: torch.Tensor) -> torch.Tensor:
        half = self.bn_half(self.conv_half(F.avg_pool2d(d, 2)))
        half = F.interpolate(half, size=d.shape[-2:])
        full = self.bn_full(self.conv_full(d))
        return torch.sigmoid(self.bn3(self.conv3((d + half + full) / 3)))

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        f = self.bn1(self.conv1(x))
        g = self.conv2(f)
        NT, r, H, W = f.shape
        f, g = f.view(NT // T, T, r, H, W), g.view(NT // T, T, r, H, W)
        # F.pad's last pair pads the time axis: a zero frame after (forward) or before (backward)
        fwd = F.pad(g[:, 1:] - f[:, :-1], (0, 0, 0, 0, 0, 0, 0, 1)).view(NT, r, H, W)
        bwd = F.pad(g[:, :-1] - f[:, 1:], (0, 0, 0, 0, 0, 0, 1, 0)).view(NT, r, H, W)
        # x + x * ((s_f - 0.5) / 2 + (s_b - 0.5) / 2) = x * (0.5 + (s_f + s_b) / 2)
        return x * (0.5 + 0.5 * (self._gate(fwd) + self._gate(bwd)))


class MotionShift(nn.Module):
    """The ``mid`` slot of TDN's layer2-4 bottlenecks: motion excitation, then the shift conv."""

    def __init__(self, channels: int, reduction: int = 16, fold_div: int = 8):
        super().__init__()
        self.mse = MotionExcitation(channels, reduction)
        self.shift = ShiftConv(channels, fold_div)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return self.shift(self.mse(x, T), T)


def tdn_fusion(num_frames: int, fusion: Optional[Sequence[float]] = None) -> tuple[float, float]:
    """The (rgb, difference) fusion weights: ``fusion`` if given, else the code's rule
    (0.5/0.5 for exactly 8 segments, 0.75/0.25 otherwise)."""
    if fusion is None:
        return (0.5, 0.5) if num_frames == 8 else (0.75, 0.25)
    if isinstance(fusion, (str, bytes)) or len(fusion) != 2:
        raise ValueError(f"fusion must be None or two numbers (a, b) for a*rgb + b*diff, got {fusion!r}")
    return float(fusion[0]), float(fusion[1])


def tdn_slots(calibrator=None, reduction: int = 16, fold_div: int = 8) -> Slots:
    """TDN's blocks: ``mid`` (motion excitation + shift conv) in layer2-4; a calibrator, if any,
    after bn1 in those blocks and after bn2 in the plain layer1 blocks (GC-TDN's placement).
    :class:`TDNResNet` fills the ``stem`` slot with :class:`DifferenceStem`."""
    return Slots(
        mid=lambda ctx: MotionShift(ctx.width, reduction, fold_div) if ctx.stage > 0 else None,
        calib=calibrator,
        calib_at=lambda ctx: "bn1" if ctx.stage > 0 else "bn2",
    )


def _init_fb(module: nn.Module) -> None:
    # the fbresnet init (normal with std sqrt(2 / (k*k*out)), i.e. Kaiming fan-out; BN 1/0),
    # then slot modules their own
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if m is not module and hasattr(m, "init_weights"):
            m.init_weights()


class DifferenceStem(nn.Module):
    """TDN's short-term difference module, the ResNet's ``stem`` slot.

    Takes the clip ``(B, 3, 5*T, H, W)``, runs the network's own stem on each segment's centre
    frame and ``conv1`` (12 -> 64, no bias) + ``bn1`` + the network's ReLU and max pool on the 4
    frame differences and fuses them (``a*rgb + b*diff``); the state entering layer1 is the pair
    (fused map, difference stream). Stage 1 (``stages = 1``) runs the network's ``layer1`` on the
    fused map and this module's copy ``layer1`` on the difference stream and fuses again.
    ``conv1_temp`` is the authors' unused conv, kept (never called) so that checkpoints load
    strictly; ``conv1`` is initialised from it (averaged over RGB, x12)."""

    stages = 1

    def __init__(self, net: nn.Module, fusion: tuple[float, float]):
        super().__init__()
        self.fusion = fusion
        self.conv1_temp = nn.Conv2d(3, 64, 7, 2, 3)
        self.conv1 = nn.Conv2d(4 * 3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = copy.deepcopy(net.layer1)
        _init_fb(self)
        with torch.no_grad():
            w = self.conv1_temp.weight.mean(1, keepdim=True)
            self.conv1.weight.copy_(w.expand_as(self.conv1.weight))

    def forward(self, x: torch.Tensor, net: nn.Module):
        """(B, 3, 5T, H, W) clip -> ((fused stem map (B*T, 64, h, w), difference stream), T)."""
        B, C, N, H, W = x.shape
        T = N // FRAMES_PER_SEGMENT
        x = x.view(B, C, T, FRAMES_PER_SEGMENT, H, W)
        rgb = x[:, :, :, 2].transpose(1, 2).reshape(B * T, C, H, W)
        # 4 consecutive differences, channels difference-major: (B*T, 4*3, H, W)
        d = (x[:, :, :, 1:] - x[:, :, :, :-1]).permute(0, 2, 3, 1, 4, 5).reshape(B * T, 4 * C, H, W)
        d = F.avg_pool2d(d, 2)
        d = net.maxpool(net.relu(self.bn1(self.conv1(d))))
        out = net.maxpool(net.relu(net.bn1(net.conv1(rgb))))
        return (self._fuse(out, d), d), T

    def forward_stage(self, i: int, state, T: int, net: nn.Module) -> torch.Tensor:
        """Stage 1: both streams' layer1, fused."""
        x, d = state
        for block in net.layer1:
            x = block(x, T)
        for block in self.layer1:
            d = block(d, T)
        return self._fuse(x, d)

    @staticmethod
    def stage_map(state) -> torch.Tensor:
        return state[0] if isinstance(state, tuple) else state

    def _fuse(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """a*x + b*d (d resized to x's size by nearest)."""
        a, b = self.fusion
        return a * x + b * F.interpolate(d, size=x.shape[-2:])

    def extra_repr(self) -> str:
        return f"fusion={self.fusion}"


class TDNResNet(VideoResNet):
    """The video ResNet with TDN's difference stem (the ``stem`` slot) and mid-block motion modules.

    Takes ``(B, 3, 5*T, H, W)``; feature maps are ``(B, C, T, h, w)``, one step per segment. Extra
    modules over :class:`VideoResNet`: ``stem`` (:class:`DifferenceStem`: ``stem.conv1``/``stem.bn1``
    the difference stem, ``stem.layer1`` the difference stream's layer1, built like ``layer1``, and
    ``stem.conv1_temp``, kept for checkpoint compatibility, never called). ``fusion``: see
    :func:`tdn_fusion`."""

    frames_per_segment = FRAMES_PER_SEGMENT

    def __init__(self, depth: int = 50, num_classes: int = 400, slots: Optional[Slots] = None,
                 dropout: float = 0.5, num_frames: int = 8,
                 fusion: Optional[Sequence[float]] = None):
        if depth not in DEPTHS or DEPTHS[depth][0] is not Bottleneck:
            raise ValueError(f"TDN is built on bottleneck ResNets: depth must be 50 or 101, got {depth}")
        weights = tdn_fusion(num_frames, fusion)
        slots = tdn_slots() if slots is None else slots
        if slots.stem is None:
            slots = dataclasses.replace(slots, stem=lambda net: DifferenceStem(net, weights))
        super().__init__(depth, num_classes, slots, dropout=dropout, num_frames=num_frames, conv_bias=True)

    @property
    def fusion(self) -> tuple[float, float]:
        return self.stem.fusion

    def check_input(self, x: torch.Tensor) -> None:
        what = "(B, 3, 5*T, H, W)"
        check_clip(x, what=what)
        if x.shape[2] % FRAMES_PER_SEGMENT:
            raise ValueError(
                f"TDN takes clips {what}: T segments of 5 consecutive frames, segment t at frame "
                f"indices 5t..5t+4 (zoo.sampling.sample('tdn', ...) samples them); got {x.shape[2]} "
                "frames, not a multiple of 5")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(
                f"TDN needs frames of at least {MIN_SIZE}x{MIN_SIZE} pixels (its motion excitation pools "
                f"layer4's H/32 x W/32 map 2x, so that map must be at least 2x2); got "
                f"{x.shape[-2]}x{x.shape[-1]}")

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True) -> list[int]:
        take = super().prune_intermediate_layers(indices, prune_norm, prune_head)
        if self.stages == 0:
            self.stem.layer1 = None
        return take

    def load_imagenet_state_dict(self, src: dict) -> dict:
        """ImageNet init as the code does it: both ResNets get the weights (so ``stem.layer1`` and
        ``stem.conv1_temp`` copy ``layer1`` and ``conv1``), and the difference stem's conv is ``conv1``
        averaged over RGB and repeated for the 12 difference channels. The code's file
        (resnet50-19c8e357.pth) is torchvision's ResNet-50, which has no conv biases: they keep
        their init. Returns {our key: source key}."""
        mapped = {k: k for k in src}
        mapped.update({"stem." + k: k for k in src if k.startswith("layer1.")})
        mapped["stem.conv1_temp.weight"] = "conv1.weight"
        own = self.state_dict()
        bad = [f"{k} <- {s} {tuple(src[s].shape)}" for k, s in mapped.items()
               if k not in own or own[k].shape != src[s].shape]
        if bad:
            raise ValueError(f"{len(bad)} ImageNet tensor(s) do not fit {type(self).__name__}: {bad[:8]}")
        with torch.no_grad():
            for k, s in mapped.items():
                own[k].copy_(src[s])
            w = self.stem.conv1_temp.weight.mean(1, keepdim=True)
            self.stem.conv1.weight.copy_(w.expand_as(self.stem.conv1.weight))
        mapped["stem.conv1.weight"] = "conv1.weight (mean over RGB, x12)"
        return mapped

    def extra_repr(self) -> str:
        return f"frames_per_segment={self.frames_per_segment}, fusion={self.fusion}"


# -- registry -------------------------------------------------------------------------------------


def _tdn(depth: int):
    def build(num_classes, num_frames, dropout=0.5, fusion=None):
        return TDNResNet(depth, num_classes, tdn_slots(), dropout=dropout, num_frames=num_frames,
                         fusion=fusion)
    build.__doc__ = f"""TDN with a ResNet-{depth} (fbresnet, biased convs) backbone. Input (B, 3, 5*T, H, W):
    T segments of 5 consecutive frames. Short-term difference stem fused after the stem and
    layer1; motion excitation + temporal shift conv in layer2-4. ``fusion`` = (a, b) for
    a*rgb + b*diff; None = the code's rule (0.5/0.5 at 8 segments, else 0.75/0.25)."""
    return build


def _gc_tdn(depth: int):
    def build(num_classes, num_frames, ratio=1.0, loop=False, calibrators=CALIBRATORS, dropout=0.5,
              fusion=None):
        check_gc(ratio, loop, calibrators)
        slots = tdn_slots(calibrator=gc_slot(ratio, loop, calibrators, bn=True, depth=depth))
        return TDNResNet(depth, num_classes, slots, dropout=dropout, num_frames=num_frames, fusion=fusion)
    build.__doc__ = f"""GC-TDN ResNet-{depth}: TDN with a GC module in every bottleneck of both layer1 copies
    (after bn2) and of layer2-4 (after bn1, before the ReLU, motion excitation and shift), as
    the GC authors' code places it. ``ratio`` = p, ``loop`` rotates the channel groups block by
    block (the difference stream's layer1 counts from 0 like the RGB stream's), ``calibrators``
    picks the ECals, ``fusion`` as for TDN."""
    return build


def _check(fusion=None, **kw):
    tdn_fusion(8, fusion)
    if "ratio" in kw:
        check_gc(**kw)


for _d in (50, 101):
    register_arch(f"tdn_r{_d}", family="tdn", sampling="tdn", check=_check)(_tdn(_d))
register_arch("gc_tdn_r50", family="tdn", sampling="tdn", check=_check)(_gc_tdn(50))


# -- the authors' checkpoints -----------------------------------------------------------------------

TDN_RULES = [
    (r"^layer(\d)_bak\.", r"layer\1."),
    (r"^resnext_layer1\.", "stem.layer1."),
    (r"^conv1_5\.0\.", "stem.conv1."),
    (r"^conv1_5\.1\.", "stem.bn1."),
    (r"^conv1_temp\.", "stem.conv1_temp."),
    (r"\.mse\.", ".mid.mse."),
    (r"\.mid\.mse\.conv3_smallscale2\.", ".mid.mse.conv_half."),
    (r"\.mid\.mse\.bn3_smallscale2\.", ".mid.mse.bn_half."),
    (r"\.mid\.mse\.conv3_smallscale4\.", ".mid.mse.conv_full."),
    (r"\.mid\.mse\.bn3_smallscale4\.", ".mid.mse.bn_full."),
    (r"\.shift\.conv\.weight$", ".mid.shift.weight"),
]


@register_converter("tdn")
def convert_tdn(sd: dict) -> dict:
    """TDN (MCG-NJU/TDN, or the GC repository's ops_tdn models_org) and GC-TDN (models_gc):
    ``base_model.`` prefix, ``layerN_bak`` -> ``layerN``, ``resnext_layer1`` -> ``stem.layer1``,
    ``conv1_5`` -> ``stem.conv1``/``stem.bn1``, ``conv1_temp`` -> ``stem.conv1_temp`` (kept),
    mSE/shift into the ``mid`` slot, GC's ``eft1..4`` as for GC-TSN. An early TDN_Net registered the same stem conv a second
    time as ``conv1_temp1``; that duplicate is dropped."""
    sd = {k: v for k, v in sd.items() if not re.match(r"^(base_model\.)?conv1_temp1\.", k)}
    return gc_rules(rename(sd, COMMON_RULES + TDN_RULES))
