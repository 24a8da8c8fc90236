"""Group Contextualization (Hao et al., CVPR 2022): GC-TSN, GC-TSM, GC-GST and the single-ECal
ablations.

GC splits a feature group of C channels: a share p of them is calibrated in four equal groups of
p*C/4 channels, each by one element-wise calibrator (ECal), and the other (1-p)*C channels pass
through unchanged. Every ECal multiplies its group by a sigmoid gate computed from a different
axial context:

* ECal-L (``l``, the code's ``eft1``): a temporal (3, 1, 1) Conv3d on the full (T, H, W) tensor,
  so the gate has the full size.
* ECal-T (``t``, ``eft2``): mean over (H, W), Conv1d over time (kernel 3), gate (C, T).
* ECal-S (``s``, ``eft3``): mean over T, 3x3 Conv2d over space, gate (C, H, W).
* ECal-G (``g``, ``eft4``): mean over (T, H, W), a bias-free Linear, per-channel gate.

Differences between the paper's text and the authors' code, all following the code so that the
released checkpoints load and reproduce:

* **Group order.** The paper concatenates (G, S, T, L); the code calibrates channel group 0 with
  ECal-L, 1 with ECal-T, 2 with ECal-S and 3 with ECal-G. We use the code's order.
* **ECal-S kernel.** The paper says a 3x3 convolution; the code's is 3x3 with **dilation 2**
  (padding 2).
* **ECal-S BatchNorm.** The paper adds a BN after every conv/FC of the ECals for TSN/TSM/TDN. The
  code does so for ECal-L/T/G, but its ECal-S applies none: the BN (``s.bn``) exists, holds
  parameters and buffers (they are in the checkpoints and in the parameter counts) and never runs.
  We keep it, unused, so checkpoints load strictly and the counts match.
* **GC-GST** uses calibrators with no BN at all (the code's Calibrator3D), placed directly on
  the [spatial | temporal] output of GST's split conv, before bn2 (the paper's Figure 4 shows
  it after the conv too; for TSN/TSM it sits after bn2, before the ReLU).
* **Loop version.** Block k (counting only blocks that have a GC module, over the whole network,
  not reset per stage) gives calibrator slot i (L, T, S, G = 0..3) the channel group
  (k + i) mod n, with n = 4/p groups of p*C/4 channels.
* **ResNet-101.** As in the code, a stage with 23 or more blocks (R101's layer3) gets a GC module
  only in its even-indexed blocks; the loop counter counts only blocks that have one.

Choices where the paper is silent:

* ``calibrators`` picks a subset of the ECals (the single-ECal ablations of Table 2). The chosen
  ones keep the code's order and take consecutive groups starting at group 0 (at group k in the
  loop version), each of p*C/4 channels; the rest of the channels pass through. With one
  calibrator this is the code's ECal_TSN ablation (its calibrator works on the first
  ``planes // cdiv`` channels, cdiv = 4/p).
* ``ratio`` may be any p with 4/p a whole number (the paper uses 1/2 and 1).

* ``gc_gst_r50`` defaults to ``loop=True`` (the paper's GC-GST is the loop version; the authors'
  train_gst.sh passes --loop); GC-TSN/GC-TSM default to the standard version, as their scripts.
* Dropout 0.5 for all three, as the GC scripts (GST's own default is 0.3).

Implementation: the block's (B*T, C, H, W) activations are viewed as (B, T, C, H, W); each ECal
works on a channel slice of that view (pools are reductions over the needed dims, gates are
broadcast). The calibrated and untouched slices are joined by a single ``torch.cat`` (no
zero-filled output and slice assignment as in the original); ``zoo.deploy`` turns GC into its
inference form (BNs folded, each group gated in place, no join). ECal-T pools with
``adaptive_avg_pool2d`` (as the original) rather than ``mean``: fvcore counts the former, so our
FLOPs equal the authors' to the unit (GC-TSN R50: 25,129,582 params, 33,312,715,104 FLOPs).

Checkpoints: :func:`convert_gc` maps ``eft1..4`` to ``calib.l/t/s/g`` (``eft4.conv`` is a Linear,
ours ``calib.g.fc``; ``bn1`` -> ``bn``), the single-ECal file's ``eft`` by the rank of its
weight, and GC-GST checkpoints (``Tconv`` keys) through the GST converter.
"""
from __future__ import annotations

import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..convert import COMMON_RULES, ConversionError, rename
from ..registration import register_arch, register_converter
from .conv3d import FrameConv3d
from .gst import convert_gst, gst_slots
from .resnet import DEPTHS, BlockCtx, Slots, VideoResNet
from .temporal import shift_slot

__all__ = ["ECalL", "ECalT", "ECalS", "ECalG", "GC", "gc_slot", "gc_index", "has_gc", "check_gc", "CALIBRATORS"]

CODE_ORDER = "ltsg"     # the code's channel-group order: eft1..eft4
CALIBRATORS = "gstl"    # the public default: all four


class _ECal(nn.Module):
    """What the four calibrators share: ``forward`` = x * gate(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ECalL(_ECal):
    """Local calibrator: gate = sigmoid(BN(Conv3d (3,1,1)(x))) over the full (T, H, W) tensor."""

    def __init__(self, c: int, bn: bool = True):
        super().__init__()
        # a Conv3d (same weight) run as one 1x1 conv2d over its three taps + a shifted sum:
        # PyTorch's CPU conv3d takes its slow path here
        self.conv = FrameConv3d(c, c, (3, 1, 1))
        self.bn = nn.BatchNorm3d(c) if bn else None

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, T, c, H, W), a channel slice; frames (B*T, c, H, W) are a view of it. BN3d over
        # (B*T, c, 1, H, W) has the same per-channel statistics as over (B, c, T, H, W).
        B, T, c, H, W = x.shape
        y = self.conv(x.reshape(B * T, c, H, W), T)
        if self.bn is not None:
            y = self.bn(y.view(B * T, c, 1, H, W))
        return torch.sigmoid(y).view(B, T, c, H, W)


class ECalT(_ECal):
    """Temporal calibrator: mean over (H, W), Conv1d over T (kernel 3), BN, sigmoid; gate (c, T)."""

    def __init__(self, c: int, bn: bool = True):
        super().__init__()
        self.conv = nn.Conv1d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(c) if bn else None

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        B, T, c = x.shape[:3]
        # adaptive_avg_pool2d rather than mean: the same reduction, and fvcore counts it (the
        # authors' module uses it too), so FLOPs agree with theirs to the unit
        y = F.adaptive_avg_pool2d(x.flatten(0, 1), 1).view(B, T, c)
        y = self.conv(y.transpose(1, 2))                    # (B, c, T)
        if self.bn is not None:
            y = self.bn(y)
        return torch.sigmoid(y).transpose(1, 2)[..., None, None]


class ECalS(_ECal):
    """Spatial calibrator: mean over T, 3x3 Conv2d with dilation 2, sigmoid; gate (c, H, W).

    ``bn`` creates the BatchNorm the authors' module holds but never applies (see the module
    docstring); it is kept only so that checkpoints load and parameter counts match."""

    def __init__(self, c: int, bn: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=2, dilation=2, bias=False)
        self.bn = nn.BatchNorm2d(c) if bn else None  # dead, as in the original

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x.mean(1))).unsqueeze(1)


class ECalG(_ECal):
    """Global calibrator: mean over (T, H, W), bias-free Linear, BN, sigmoid; gate per channel."""

    def __init__(self, c: int, bn: bool = True):
        super().__init__()
        self.fc = nn.Linear(c, c, bias=False)
        self.bn = nn.BatchNorm1d(c) if bn else None

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x.mean((1, 3, 4)))                      # (B, c)
        if self.bn is not None:
            y = self.bn(y)
        return torch.sigmoid(y)[:, None, :, None, None]

_ECALS = {"l": ECalL, "t": ECalT, "s": ECalS, "g": ECalG}


def _groups(ratio: float) -> int:
    n = 4 / ratio if ratio > 0 else 0
    if not (0 < ratio <= 1) or abs(n - round(n)) > 1e-9:
        raise ValueError(f"ratio (p) must be in (0, 1] with 4/p a whole number (e.g. 1.0 or 0.5), got {ratio!r}")
    return round(n)


def _kinds(calibrators: str) -> str:
    if not isinstance(calibrators, str) or not calibrators or set(calibrators) - set(CODE_ORDER) \
            or len(set(calibrators)) != len(calibrators):
        raise ValueError(f"calibrators must be a non-empty subset of 'gstl' without repeats "
                         f"(e.g. 'gstl', 't'), got {calibrators!r}")
    return "".join(k for k in CODE_ORDER if k in calibrators)


class GC(nn.Module):
    """Group contextualization of a (B*T, C, H, W) feature: ECals on groups of p*C/4 channels.

    ``group_offset`` is the loop version's rotation (0 for the standard version): calibrator
    i (in the code's order L, T, S, G among the chosen ones) takes group (group_offset + i) mod 4/p.
    ``bn=False`` gives GC-GST's calibrators (no BatchNorm anywhere)."""

    def __init__(self, channels: int, ratio: float = 1.0, calibrators: str = CALIBRATORS, group_offset: int = 0,
                 bn: bool = True):
        super().__init__()
        n = _groups(ratio)
        kinds = _kinds(calibrators)
        if channels % n:
            raise ValueError(f"GC needs channels divisible by 4/p = {n}, got {channels}")
        c = channels // n
        self.channels, self.ratio, self.calibrators, self.group_offset, self.groups = channels, ratio, kinds, group_offset % n, n
        for k in kinds:
            self.add_module(k, _ECALS[k](c, bn))
        owner = {(self.group_offset + i) % n: k for i, k in enumerate(kinds)}
        # static plan: (calibrator or "" for pass-through, first channel, end channel), in
        # channel order, neighbouring pass-through groups merged into one slice
        plan: list[tuple[str, int, int]] = []
        for gi in range(n):
            k = owner.get(gi, "")
            if not k and plan and not plan[-1][0]:
                plan[-1] = ("", plan[-1][1], (gi + 1) * c)
            else:
                plan.append((k, gi * c, (gi + 1) * c))
        self.plan = tuple(plan)
        # each chosen calibrator's channels, in self.calibrators' order
        self.slices = tuple(next((a, b) for k2, a, b in plan if k2 == k) for k in kinds)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        N, C, H, W = x.shape
        v = x.view(N // T, T, C, H, W)
        parts = [getattr(self, k)(v[:, :, a:b]) if k else v[:, :, a:b] for k, a, b in self.plan]
        return torch.cat(parts, 2).view(N, C, H, W)

    def init_weights(self) -> None:
        # the authors' init: calibrator convs xavier_normal, the ECal-G linear N(0, 0.001), BN 1/0
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                nn.init.xavier_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.001)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, ratio={self.ratio}, calibrators={self.calibrators!r}, "
                f"group_offset={self.group_offset}, plan={self.plan}")


def has_gc(index: int, blocks: int) -> bool:
    """The authors' rule: every block, but only even-indexed ones in stages of >= 23 blocks."""
    return blocks < 23 or index % 2 == 0


def gc_index(ctx: BlockCtx, counts) -> int:
    """How many blocks before this one carry a GC module (the loop version's counter)."""
    counts = tuple(counts)
    if counts[ctx.stage] != ctx.blocks or sum(counts[:ctx.stage]) + ctx.index != ctx.position:
        raise ValueError(f"block {ctx.position} (stage {ctx.stage} of {ctx.blocks} blocks) does not fit the "
                         f"blocks per stage {counts} the GC slot was given: "
                         "pass the backbone's depth (or blocks per stage) to gc_slot")
    before = sum(sum(has_gc(i, n) for i in range(n)) for n in counts[:ctx.stage])
    return before + sum(has_gc(i, ctx.blocks) for i in range(ctx.index))


def gc_slot(ratio: float = 1.0, loop: bool = False, calibrators: str = CALIBRATORS, bn: bool = True,
            depth: int = 50, counts=None, offset: int = 0):
    """Slot factory for a GC module on the block's middle width (``ctx.width``).

    ``loop``: the loop version (group offset = number of GC blocks before this one, + ``offset``).
    ``depth`` (or explicit ``counts``, blocks per stage) tells the loop counter how many GC blocks
    the earlier stages hold. ``bn=False``: GC-GST's BN-free calibrators. Checks arguments at once."""
    _groups(ratio)
    _kinds(calibrators)
    counts = tuple(counts) if counts is not None else DEPTHS[depth][1]

    def make(ctx: BlockCtx):
        if not has_gc(ctx.index, ctx.blocks):
            return None
        group_offset = gc_index(ctx, counts) + offset if loop else 0
        return GC(ctx.width, ratio, calibrators, group_offset=group_offset, bn=bn)

    return make


# -- architectures ---------------------------------------------------------------------------------

def check_gc(ratio=1.0, loop=False, calibrators=CALIBRATORS, **_):
    """Refuse GC kwargs a builder cannot use (eagerly, for the registry tables as for builders)."""
    _groups(ratio)
    _kinds(calibrators)
    if not isinstance(loop, bool):
        raise TypeError(f"loop must be True or False, got {loop!r}")


def _gc_tsn(depth: int, shift: bool):
    def build(num_classes, num_frames, ratio=1.0, loop=False, calibrators=CALIBRATORS, dropout=0.5):
        check_gc(ratio, loop, calibrators)
        slots = Slots(shift=shift_slot(8) if shift else None,
                      calib=gc_slot(ratio, loop, calibrators, bn=True, depth=depth), calib_at="bn2")
        return VideoResNet(depth, num_classes, slots, dropout=dropout, num_frames=num_frames)

    base = "TSM (residual shift of 1/8 of the channels each way)" if shift else "TSN"
    build.__doc__ = f"""GC-{'TSM' if shift else 'TSN'} ResNet-{depth}: {base} with a GC module after bn2 (before
    the ReLU) of every bottleneck{' (even blocks of layer3)' if depth == 101 else ''}. ``ratio`` = p (share of
    channels calibrated, in four groups of p*C/4), ``loop`` rotates the groups block by block,
    ``calibrators`` picks the ECals ("gstl" = GC; one letter = the single-ECal ablations)."""
    return build


for _d in (50, 101):
    register_arch(f"gc_tsn_r{_d}", family="gc", check=check_gc)(_gc_tsn(_d, False))
    register_arch(f"gc_tsm_r{_d}", family="gc", check=check_gc)(_gc_tsn(_d, True))


def _gc_gst(depth: int):
    def build(num_classes, num_frames, ratio=1.0, loop=True, calibrators=CALIBRATORS, dropout=0.5):
        check_gc(ratio, loop, calibrators)
        slots = gst_slots(0.25, 0.5, calib=gc_slot(ratio, loop, calibrators, bn=False, depth=depth),
                          calib_at="conv2")
        return VideoResNet(depth, num_classes, slots, dropout=dropout, num_frames=num_frames)

    build.__doc__ = f"""GC-GST ResNet-{depth}: GST (alpha 1/4, beta 1/2) with a BN-free GC module on the
    [spatial | temporal] output of every block's split conv, before bn2. ``loop`` defaults to True:
    the paper's GC-GST is the loop version (the authors' train_gst.sh passes --loop). Dropout 0.5
    as the GC scripts (GST's own default is 0.3)."""
    return build


register_arch("gc_gst_r50", family="gc", check=check_gc)(_gc_gst(50))


# -- converter -------------------------------------------------------------------------------------

_EFT = re.compile(r"^(?P<pre>.*\.)eft(?P<i>[1-4])?\.(?P<mod>conv|bn1)\.(?P<rest>.+)$")
_KIND_BY_NDIM = {5: "l", 3: "t", 4: "s", 2: "g"}


def gc_rules(sd: dict) -> dict:
    """Map the calibrators' keys: ``eft1..4`` (L, T, S, G) -> ``calib.l/t/s/g``; ``conv`` ->
    ``conv`` (``fc`` for ECal-G), ``bn1`` -> ``bn``. The single-ECal ablation file names its one
    calibrator ``eft``; its kind is read from the rank of its conv weight."""
    kind_of = {}
    for k, v in sd.items():
        m = _EFT.match(k)
        if m and m["i"] is None and m["mod"] == "conv" and m["rest"] == "weight":
            kind_of[m["pre"]] = _KIND_BY_NDIM.get(v.dim())
    out = {}
    for k, v in sd.items():
        m = _EFT.match(k)
        if m:
            kind = CODE_ORDER[int(m["i"]) - 1] if m["i"] else kind_of.get(m["pre"])
            if kind is None:
                raise ConversionError(f"cannot tell which calibrator {k!r} belongs to")
            mod = "bn" if m["mod"] == "bn1" else ("fc" if kind == "g" else "conv")
            k = f"{m['pre']}calib.{kind}.{mod}.{m['rest']}"
        out[k] = v
    return out


@register_converter("gc")
def convert_gc(sd: dict) -> dict:
    """GC-TSN / GC-TSM / single-ECal TSN from haoyanbin918/Group-Contextualization; a GC-GST
    checkpoint (recognised by its ``Tconv`` keys) goes through :func:`convert_gc_gst`."""
    if any(".Tconv." in k for k in sd):
        return convert_gc_gst(sd)
    return gc_rules(rename(sd, COMMON_RULES))


@register_converter("gc_gst")
def convert_gc_gst(sd: dict) -> dict:
    """GC-GST from haoyanbin918/Group-Contextualization (nets/GC_GST.py): the GST layout (3D
    weights squeezed, ``Tconv`` -> ``conv2.temporal``) plus the calibrators' ``eft1..4``."""
    return gc_rules(convert_gst(sd))
