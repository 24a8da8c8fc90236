"""One video ResNet with slots.

Every network in the zoo is this ResNet with up to three per-block slots filled:

* ``temporal``  - applied to the block input on the residual branch only, before ``conv1``
  (TSM's "blockres" shift).
* ``conv2``     - replaces the middle 3x3 conv (GST's split conv, STC's S_T/T_S, C3D, P3D, ...).
* ``calibrator`` - a feature re-weighting module (GC, AIA, SDA, comparators) placed at ``calib_at``:
  ``"bn2"`` after conv2+bn2 (GC/AIA/SDA on TSN/TSM), ``"conv2"`` directly after the middle conv
  and before bn2 (GC-GST), ``"bn1"`` after conv1+bn1 (GC-TDN's shift blocks), ``"bn3"`` at the
  end of the residual branch, before the addition (SE/GE/CBAM-ResNet's place; channels
  ``out_channels``), or ``"out"`` on the block output after the final ReLU (TSM's non-local
  blocks, which carry their own residual). ``calib_at`` may also be a function of the block's
  ``BlockCtx`` when the position differs between blocks.
* ``mid``       - applied after the ReLU that follows bn1, before ``conv2`` (TDN's motion
  excitation and temporal conv shift).

Frames are folded into the batch: activations are (B*T, C, H, W) with frame index b*T + t, and
every slot receives ``T`` at call time, so no module bakes in the number of frames. Parameter
names follow torchvision/timm (``conv1``, ``bn1``, ``layerN.M.conv1``, ..., ``fc``), so ImageNet
ResNet weights map 1:1 onto the 2D parts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["BlockCtx", "Slots", "CALIB_AT", "Bottleneck", "BasicBlock", "VideoResNet", "DEPTHS", "check_clip",
           "add_conv_bias"]


@dataclass(frozen=True)
class BlockCtx:
    """What a slot factory knows about the block it builds for."""

    stage: int          # 0..3 for layer1..layer4
    index: int          # block index inside the stage
    position: int       # block index over the whole network (0..15 for R50)
    blocks: int         # number of blocks in this stage
    in_channels: int    # block input channels
    width: int          # channels of the middle conv (planes)
    out_channels: int   # block output channels
    stride: int         # spatial stride of the block


Factory = Callable[[BlockCtx], Optional[nn.Module]]
CALIB_AT = ("bn1", "conv2", "bn2", "bn3", "out")


@dataclass(frozen=True)
class Slots:
    """Per-block factories; each returns a module (forward(x, T)) or None for "nothing here"."""

    temporal: Optional[Factory] = None
    conv2: Optional[Factory] = None
    calibrator: Optional[Factory] = None
    calib_at: Union[str, Callable[[BlockCtx], str]] = "bn2"
    mid: Optional[Factory] = None

    def __post_init__(self):
        if not callable(self.calib_at):
            _check_calib_at(self.calib_at)

    def calib_position(self, ctx: BlockCtx) -> str:
        return _check_calib_at(self.calib_at(ctx)) if callable(self.calib_at) else self.calib_at


def _check_calib_at(at):
    if at not in CALIB_AT:
        raise ValueError(f"calib_at must be one of {CALIB_AT}, got {at!r}")
    return at


def _make(factory: Optional[Factory], ctx: BlockCtx) -> Optional[nn.Module]:
    return factory(ctx) if factory is not None else None


class _Block(nn.Module):
    """What both block kinds share: the calibrator at its position, and the residual join."""

    def _shifted(self, x: torch.Tensor, T: int, conv: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``conv`` of the temporal slot's output (``x`` itself when the slot is empty); a slot
        with ``around`` (zoo.deploy's TSM shift) computes ``conv(shift(x))`` its own way."""
        if self.shift is None:
            return conv(x)
        around = getattr(self.shift, "around", None)
        return around(x, T, conv) if around is not None else conv(self.shift(x, T))

    def _calib(self, out: torch.Tensor, T: int, *where: str) -> torch.Tensor:
        return self.calib(out, T) if self.calib is not None and self.calib_at in where else out

    def _join(self, out: torch.Tensor, identity: torch.Tensor, T: int) -> torch.Tensor:
        out += identity  # in place, as torchvision: one less full-size tensor per block
        return self._calib(self.relu(out), T, "out")


class Bottleneck(_Block):
    expansion = 4

    def __init__(self, ctx: BlockCtx, slots: Slots):
        super().__init__()
        w = ctx.width
        self.shift = _make(slots.temporal, ctx)
        self.conv1 = nn.Conv2d(ctx.in_channels, w, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.mid = _make(slots.mid, ctx)
        mid = _make(slots.conv2, ctx)
        self.conv2 = mid if mid is not None else nn.Conv2d(w, w, 3, ctx.stride, 1, bias=False)
        # plain convs take x only; slot convs also take T
        self._conv2_takes_t = mid is not None
        self.bn2 = nn.BatchNorm2d(w)
        self.calib = _make(slots.calibrator, ctx)
        self.calib_at = slots.calib_position(ctx)
        self.conv3 = nn.Conv2d(w, ctx.out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ctx.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if ctx.stride != 1 or ctx.in_channels != ctx.out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(ctx.in_channels, ctx.out_channels, 1, ctx.stride, bias=False),
                nn.BatchNorm2d(ctx.out_channels),
            )

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self._calib(self.bn1(self._shifted(x, T, self.conv1)), T, "bn1"))
        if self.mid is not None:
            out = self.mid(out, T)
        out = self.conv2(out, T) if self._conv2_takes_t else self.conv2(out)
        out = self._calib(self.bn2(self._calib(out, T, "conv2")), T, "bn2")
        out = self._calib(self.bn3(self.conv3(self.relu(out))), T, "bn3")
        return self._join(out, identity, T)


class BasicBlock(_Block):
    """Two 3x3 convs (R18/R34). The ``conv2`` slot replaces the first 3x3 conv, the one that
    carries the stride, which is where GST puts its split conv in basic blocks."""

    expansion = 1

    def __init__(self, ctx: BlockCtx, slots: Slots):
        super().__init__()
        w = ctx.width
        self.shift = _make(slots.temporal, ctx)
        mid = _make(slots.conv2, ctx)
        self.conv1 = mid if mid is not None else nn.Conv2d(ctx.in_channels, w, 3, ctx.stride, 1, bias=False)
        self._conv1_takes_t = mid is not None
        self.bn1 = nn.BatchNorm2d(w)
        self.mid = _make(slots.mid, ctx)
        self.conv2 = nn.Conv2d(w, w, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w)
        self.calib = _make(slots.calibrator, ctx)
        self.calib_at = slots.calib_position(ctx)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if ctx.stride != 1 or ctx.in_channels != ctx.out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(ctx.in_channels, ctx.out_channels, 1, ctx.stride, bias=False),
                nn.BatchNorm2d(ctx.out_channels),
            )

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self._shifted(x, T, (lambda y: self.conv1(y, T)) if self._conv1_takes_t else self.conv1)
        out = self.relu(self._calib(self.bn1(self._calib(out, T, "conv2")), T, "bn1"))
        if self.mid is not None:
            out = self.mid(out, T)
        # bn2 ends a basic block's residual branch, so "bn3" lands here too
        out = self._calib(self.bn2(self.conv2(out)), T, "bn2", "bn3")
        return self._join(out, identity, T)


# depth -> (block, blocks per stage)
DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


def add_conv_bias(block: nn.Module) -> None:
    """Give a block's own plain convs (conv1-3, downsample) a zero-initialised bias, as in the
    Cadene "fbresnet" layout that TDN builds on; slot modules keep their own convs as they are."""
    convs = [getattr(block, n, None) for n in ("conv1", "conv2", "conv3")]
    if block.downsample is not None:
        convs.append(block.downsample[0])
    for c in convs:
        if type(c) is nn.Conv2d and c.bias is None:
            c.bias = nn.Parameter(torch.zeros(c.out_channels))


def check_clip(x: torch.Tensor, frames_multiple: int = 1, what: str = "(B, 3, T, H, W)") -> None:
    """Raise a ValueError naming the expected layout when ``x`` is not a clip batch."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor clip batch of shape {what}, got {type(x).__name__}")
    if x.dim() != 5 or x.shape[1] != 3:
        hint = ""
        if x.dim() == 5 and x.shape[2] == 3:
            hint = " It looks like (B, T, 3, H, W): pass x.permute(0, 2, 1, 3, 4)."
        elif x.dim() == 4 and x.shape[0] == 3:
            hint = " It looks like a single clip (3, T, H, W): pass x.unsqueeze(0)."
        raise ValueError(
            f"expected a clip batch of shape {what} with 3 colour channels, got {tuple(x.shape)}.{hint}"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"expected a floating-point clip batch {what}, got dtype {x.dtype}; "
            "convert and normalise first (e.g. x.float() / 255, then the model's mean/std)"
        )
    if frames_multiple > 1 and x.shape[2] % frames_multiple:
        raise ValueError(
            f"expected the frame axis of {what} to be a multiple of {frames_multiple}, got T={x.shape[2]}"
        )


class VideoResNet(nn.Module):
    """ResNet-18/34/50/101 over clips (B, 3, T, H, W) -> logits (B, num_classes).

    Frames are processed as a batch of images; slots add the temporal modelling. The head is
    TSN's: spatial average pool, dropout, a linear classifier on every frame, and the average
    over T (average consensus). ``conv_bias=True`` gives the stem and every block's own convs a
    bias (the Cadene "fbresnet" layout TDN's checkpoints use).
    """

    def __init__(self, depth: int = 50, num_classes: int = 400, slots: Slots = Slots(),
                 dropout: float = 0.5, num_frames: int = 8, zero_init_residual: bool = False,
                 conv_bias: bool = False):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
        block, counts = DEPTHS[depth]
        self.depth = depth
        self.num_frames = num_frames  # what the model was configured/trained with; T comes from input
        self.slots = slots
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch, position = 64, 0
        for stage, (n, width) in enumerate(zip(counts, (64, 128, 256, 512))):
            blocks = []
            for i in range(n):
                ctx = BlockCtx(stage=stage, index=i, position=position, blocks=n, in_channels=in_ch,
                               width=width, out_channels=width * block.expansion,
                               stride=2 if (i == 0 and stage > 0) else 1)
                blocks.append(block(ctx, slots))
                if conv_bias:
                    add_conv_bias(blocks[-1])
                in_ch, position = ctx.out_channels, position + 1
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.num_features = in_ch
        self.drop_rate = dropout
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # Backbone init as torchvision; slot modules then re-initialise themselves the way
        # their authors do (they define init_weights()).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.fc.weight, 0, 0.001)  # the papers' new_fc init
        nn.init.zeros_(self.fc.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
        for m in self.modules():
            if m is not self and hasattr(m, "init_weights"):
                m.init_weights()

    # -- stages -------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        check_clip(x)

    def to_frames(self, x: torch.Tensor):
        """(B, 3, T, H, W) -> ((B*T, 3, H, W), T)."""
        B, C, T, H, W = x.shape
        return x.transpose(1, 2).reshape(B * T, C, H, W), T

    def forward_stem(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_stages(self, x: torch.Tensor, T: int) -> torch.Tensor:
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in layer:
                x = block(x, T)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip batch (B, 3, T, H, W) -> spatially pooled per-frame features (B, T', C).

        T' is the number of segments (T for every family but TDN, whose segments span
        several frames). Average over dim 1 for one clip embedding."""
        self.check_input(x)
        B = x.shape[0]
        frames, T = self.to_frames(x)
        f = self.forward_stages(self.forward_stem(frames, T), T)
        f = F.adaptive_avg_pool2d(f, 1).flatten(1)
        return f.view(B, T, -1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, T, C) per-frame features -> (B, num_classes): classifier per frame, then the mean."""
        return self.fc(self.dropout(features)).mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # -- classifier ----------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, dropout: Optional[float] = None) -> None:
        """Swap the head for a freshly initialised one with ``num_classes`` outputs."""
        if dropout is not None:
            self.drop_rate = dropout
            self.dropout = nn.Dropout(dropout)
        p = self.fc.weight
        self.fc = nn.Linear(self.num_features, num_classes, device=p.device, dtype=p.dtype)
        nn.init.normal_(self.fc.weight, 0, 0.001)
        nn.init.zeros_(self.fc.bias)
