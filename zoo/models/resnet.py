"""One video ResNet with slots.

Every network in the zoo is this ResNet with some of its slots filled. A slot is named after
the attribute its module lands in (so ``Slots.calib`` fills ``layerN.M.calib``). Per block:

* ``shift``     - applied to the block input on the residual branch only, before ``conv1``
  (TSM's "blockres" shift).
* ``conv2``     - replaces the middle 3x3 conv (GST's split conv, STC's S_T/T_S, C3D, P3D, ...).
* ``calib``     - a feature re-weighting module (GC, AIA, SDA, comparators) placed at ``calib_at``:
  ``"bn2"`` after conv2+bn2 (GC/AIA/SDA on TSN/TSM), ``"conv2"`` directly after the middle conv
  and before bn2 (GC-GST), ``"bn1"`` after conv1+bn1 (GC-TDN's shift blocks), ``"bn3"`` at the
  end of the residual branch, before the addition (SE/GE/CBAM-ResNet's place; channels
  ``out_channels``), or ``"out"`` on the block output after the final ReLU (TSM's non-local
  blocks, which carry their own residual). ``calib_at`` may also be a function of the block's
  ``BlockCtx`` when the position differs between blocks.
* ``mid``       - applied after the ReLU that follows bn1, before ``conv2`` (TDN's motion
  excitation and temporal conv shift).

Once per network:

* ``stem``      - a module that turns the clip (B, 3, T', H, W) into the state entering layer1
  and the number of segments: ``stem(x, net) -> (state, T)``. A stem that carries a second
  stream through the first stages (TDN's difference stream, fused after the stem and after
  layer1) runs those stages itself: ``stem.stages`` of them, through
  ``stem.forward_stage(i, state, T, net)``, and ``stem.stage_map(state)`` is the map a state
  holds. Empty: frames are folded into the batch and run through ``conv1`` ... ``maxpool``.

Frames are folded into the batch: activations are (B*T, C, H, W) with frame index b*T + t, and
every slot receives ``T`` at call time, so no module bakes in the number of frames. Parameter
names follow torchvision/timm (``conv1``, ``bn1``, ``layerN.M.conv1``, ..., ``fc``), so ImageNet
ResNet weights map 1:1 onto the 2D parts.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registration import CALIB_AT
from .layers import DropPath, FeatureInfo, FrozenNormStats

__all__ = ["BlockCtx", "Slots", "CALIB_AT", "Bottleneck", "BasicBlock", "VideoResNet", "DEPTHS", "check_clip",
           "add_conv_bias", "DropPath", "FeatureInfo"]


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


@dataclass(frozen=True)
class Slots:
    """Per-block factories; each returns a module (forward(x, T)) or None for "nothing here".
    ``stem`` is called once with the network (its stages built) and returns the stem module."""

    shift: Optional[Factory] = None
    conv2: Optional[Factory] = None
    calib: Optional[Factory] = None
    calib_at: Union[str, Callable[[BlockCtx], str]] = "bn2"
    mid: Optional[Factory] = None
    stem: Optional[Callable[[nn.Module], nn.Module]] = None

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

    def __init__(self):
        super().__init__()
        self.drop_path = None  # stochastic depth on the residual branch (VideoResNet.set_drop_path)

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
        if self.drop_path is not None:
            out = self.drop_path(out, T)
        out += identity  # in place, as torchvision: one less full-size tensor per block
        return self._calib(self.relu(out), T, "out")


class Bottleneck(_Block):
    expansion = 4

    def __init__(self, ctx: BlockCtx, slots: Slots):
        super().__init__()
        w = ctx.width
        self.shift = _make(slots.shift, ctx)
        self.conv1 = nn.Conv2d(ctx.in_channels, w, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.mid = _make(slots.mid, ctx)
        mid = _make(slots.conv2, ctx)
        self.conv2 = mid if mid is not None else nn.Conv2d(w, w, 3, ctx.stride, 1, bias=False)
        # plain convs take x only; slot convs also take T
        self._conv2_takes_t = mid is not None
        self.bn2 = nn.BatchNorm2d(w)
        self.calib = _make(slots.calib, ctx)
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
        return self._join(self._after_conv1(self._shifted(x, T, self.conv1), T), identity, T)

    def _after_conv1(self, out: torch.Tensor, T: int) -> torch.Tensor:
        """The residual branch from conv1's output on (zoo.deploy may produce conv1's output its own way)."""
        out = self.relu(self._calib(self.bn1(out), T, "bn1"))
        if self.mid is not None:
            out = self.mid(out, T)
        out = self.conv2(out, T) if self._conv2_takes_t else self.conv2(out)
        out = self._calib(self.bn2(self._calib(out, T, "conv2")), T, "bn2")
        return self._calib(self.bn3(self.conv3(self._relu2(out))), T, "bn3")

    def _relu2(self, out: torch.Tensor) -> torch.Tensor:
        """The ReLU after bn2 (zoo.deploy's forms may apply it in the pass before)."""
        return self.relu(out)


class BasicBlock(_Block):
    """Two 3x3 convs (R18/R34). The ``conv2`` slot replaces the first 3x3 conv, the one that
    carries the stride, which is where GST puts its split conv in basic blocks."""

    expansion = 1

    def __init__(self, ctx: BlockCtx, slots: Slots):
        super().__init__()
        w = ctx.width
        self.shift = _make(slots.shift, ctx)
        mid = _make(slots.conv2, ctx)
        self.conv1 = mid if mid is not None else nn.Conv2d(ctx.in_channels, w, 3, ctx.stride, 1, bias=False)
        self._conv1_takes_t = mid is not None
        self.bn1 = nn.BatchNorm2d(w)
        self.mid = _make(slots.mid, ctx)
        self.conv2 = nn.Conv2d(w, w, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w)
        self.calib = _make(slots.calib, ctx)
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

    The timm interface: ``forward_features`` (last stage map), ``forward_head(x, pre_logits)``,
    ``forward_intermediates`` and ``feature_info`` (5 maps: the stem after its max pool, then
    layer1-4; every map is laid out (B, C, T', h, w) with T' segments), ``get_classifier`` /
    ``reset_classifier`` (0 classes: the head returns pooled features), ``set_grad_checkpointing``
    (per stage), ``drop_rate`` (the classifier's dropout) and ``set_drop_path`` (stochastic depth).
    """

    def __init__(self, depth: int = 50, num_classes: int = 400, slots: Slots = Slots(),
                 dropout: float = 0.5, num_frames: int = 8, zero_init_residual: bool = False,
                 conv_bias: bool = False, drop_path_rate: float = 0.0):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"depth must be one of {sorted(DEPTHS)}, got {depth}")
        block, counts = DEPTHS[depth]
        self.depth = depth
        self.num_frames = num_frames  # what the model was configured/trained with; T comes from input
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=conv_bias)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch, position = 64, 0
        info = [dict(num_chs=64, reduction=4, module="maxpool", index=0)]
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
            info.append(dict(num_chs=in_ch, reduction=4 * 2 ** stage, module=f"layer{stage + 1}", index=stage + 1))
        self.feature_info = FeatureInfo(info)
        self.out_indices: Optional[tuple] = None   # set by to_features_only(): forward returns the maps
        self.stages = 4                            # stages kept (prune_intermediate_layers drops the rest)
        self.grad_checkpointing = False
        self.num_features = in_ch
        self.drop_rate = dropout
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_ch, num_classes) if num_classes else nn.Identity()
        self._init_weights(zero_init_residual)
        # a stem slot may copy the initialised stages and initialises itself
        self.stem = slots.stem(self) if slots.stem is not None else None
        self.set_drop_path(drop_path_rate)

    def _init_weights(self, zero_init_residual: bool) -> None:
        # Backbone init as torchvision; slot modules then re-initialise themselves the way
        # their authors do (they define init_weights()).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._init_fc()
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)
        for m in self.modules():
            if m is not self and hasattr(m, "init_weights"):
                m.init_weights()

    def _init_fc(self) -> None:
        if isinstance(self.fc, nn.Linear):
            nn.init.normal_(self.fc.weight, 0, 0.001)  # the papers' new_fc init
            nn.init.zeros_(self.fc.bias)

    # -- stages -------------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> None:
        check_clip(x)

    def to_frames(self, x: torch.Tensor):
        """(B, 3, T, H, W) -> ((B*T, 3, H, W), T)."""
        B, C, T, H, W = x.shape
        return x.transpose(1, 2).reshape(B * T, C, H, W), T

    def forward_stem(self, x: torch.Tensor):
        """Clip batch (B, 3, T', H, W) -> (the state entering layer1, T segments)."""
        if self.stem is not None:
            return self.stem(x, self)
        frames, T = self.to_frames(x)
        return self.maxpool(self.relu(self.bn1(self.conv1(frames)))), T

    def forward_stage(self, i: int, x, T: int):
        """Stage ``i`` (1-4: layer1-4) on the state the previous stage left."""
        if i <= getattr(self.stem, "stages", 0):
            return self.stem.forward_stage(i, x, T, self)
        layer = getattr(self, f"layer{i}")
        if layer is None:
            raise RuntimeError(f"layer{i} was pruned (features_only / prune_intermediate_layers)")
        for block in layer:
            x = block(x, T)
        return x

    def stage_map(self, state) -> torch.Tensor:
        """The (B*T, C, h, w) feature map a stage's state holds."""
        return self.stem.stage_map(state) if hasattr(self.stem, "stage_map") else state

    def _stage(self, i: int, state, T: int):
        if self.grad_checkpointing and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint

            return checkpoint(self.forward_stage, i, state, T, use_reentrant=False,
                              context_fn=lambda: (contextlib.nullcontext(), FrozenNormStats(self)))
        return self.forward_stage(i, state, T)

    def forward_stages(self, x, T: int):
        for i in range(1, self.stages + 1):
            x = self._stage(i, x, T)
        return x

    @staticmethod
    def _clip_map(f: torch.Tensor, B: int) -> torch.Tensor:
        # (B*T, C, h, w) -> (B, C, T, h, w) view
        return f.view(B, f.shape[0] // B, *f.shape[1:]).transpose(1, 2)

    def _empty(self, fn, x: torch.Tensor):
        """``fn`` of a zero-size batch: the shapes of one clip, sliced to none (eval, no grad,
        so that no statistics move)."""
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                out = fn(x.new_zeros((1,) + x.shape[1:]))
        finally:
            self.train(was)
        return torch.utils._pytree.tree_map(lambda t: t[:0], out)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip batch (B, 3, T, H, W) -> the last stage's feature map (B, C, T', H/32, W/32), a
        view of the frame-batched activations (``.contiguous()`` for a copy).

        T' is the number of segments (T for every family but TDN, whose segments span
        several frames). ``forward_head(f, pre_logits=True)`` pools it to (B, C)."""
        self.check_input(x)
        if x.shape[0] == 0:
            return self._empty(self.forward_features, x)
        state, T = self.forward_stem(x)
        return self._clip_map(self.stage_map(self.forward_stages(state, T)), x.shape[0])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(B, C, T, h, w) maps (or per-frame pooled features (B, T, C)) -> (B, num_classes).

        TSN's head: spatial average pool, dropout, the classifier on every frame and the mean
        over T (the consensus). ``pre_logits=True`` returns the mean of the dropped-out features
        instead, (B, num_features): the classifier is linear, so ``fc`` of it gives the logits."""
        if x.dim() == 5:
            # back to the frame batch (a view for forward_features' output) for the 2D pool
            B, C, T = x.shape[:3]
            x = F.adaptive_avg_pool2d(x.transpose(1, 2).flatten(0, 1), 1).view(B, T, C)
        x = self.dropout(x)
        # per frame, then the mean: the papers' FLOPs count the classifier once per frame
        return x.mean(1) if pre_logits else self.fc(x).mean(1)

    def forward(self, x: torch.Tensor):
        if self.out_indices is not None:
            return self.forward_intermediates(x, self.out_indices, stop_early=True, intermediates_only=True)
        self.check_input(x)
        if x.shape[0] == 0:
            return x.new_zeros((0, self.num_classes or self.num_features))
        return self.forward_head(self.forward_features(x))

    # -- feature maps (timm's forward_intermediates / features_only) ----------------------
    def _take_indices(self, indices) -> list[int]:
        n = 5
        if indices is None:
            take = list(range(n))
        elif isinstance(indices, int) and not isinstance(indices, bool):
            if not 1 <= indices <= n:
                raise ValueError(f"indices={indices}: an int takes the last N of the {n} feature maps, 1..{n}")
            take = list(range(n - indices, n))
        else:
            take = []
            for i in indices:
                if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
                    raise ValueError(f"feature indices must be ints in 0..{n - 1} (0: stem, 1-4: layer1-4) "
                                     f"or negative from the end, got {tuple(indices)}")
                take.append(i % n)
            if not take:
                raise ValueError("feature indices must name at least one map (0: stem, 1-4: layer1-4)")
        if max(take) > self.stages:
            raise ValueError(f"feature map {max(take)} was pruned: this model keeps stages 0..{self.stages}")
        return sorted(set(take))

    def forward_intermediates(self, x: torch.Tensor, indices=None, norm: bool = False, stop_early: bool = False,
                              output_fmt: str = "NCTHW", intermediates_only: bool = False):
        """Per-stage feature maps, each (B, C, T', h, w): ``indices`` None = all five (0: stem
        after max pool, 1-4: layer1-4), an int = the last N, or a sequence of indices. Returns
        ``(final, maps)`` (``final`` as ``forward_features``), or just ``maps`` with
        ``intermediates_only``; ``stop_early`` skips the stages after the last map asked for.
        timm's signature; ``norm`` has nothing to do (a ResNet has no final norm)."""
        if output_fmt != "NCTHW":
            raise ValueError(f"output_fmt must be 'NCTHW' (maps are (B, C, T, H, W)), got {output_fmt!r}")
        take = self._take_indices(indices)
        self.check_input(x)
        if x.shape[0] == 0:
            return self._empty(lambda y: self.forward_intermediates(y, take, stop_early=stop_early,
                                                                    intermediates_only=intermediates_only), x)
        B = x.shape[0]
        last = max(take) if stop_early or intermediates_only else self.stages

        def keep(i, state):
            m = self._clip_map(self.stage_map(state), B)
            return self._kept_map(m) if i < last else m

        state, T = self.forward_stem(x)
        maps = [keep(0, state)] if 0 in take else []
        for i in range(1, last + 1):
            state = self._stage(i, state, T)
            if i in take:
                maps.append(keep(i, state))
        return maps if intermediates_only else (self._clip_map(self.stage_map(state), B), maps)

    def _kept_map(self, m: torch.Tensor) -> torch.Tensor:
        """A stage map returned while later stages still run (zoo.deploy's form keeps a copy:
        its blocks may change their input, the previous stage's map, in place)."""
        return m

    def prune_intermediate_layers(self, indices=1, prune_norm: bool = False, prune_head: bool = True) -> list[int]:
        """Drop the stages after the last map in ``indices`` (and the classifier with
        ``prune_head``); returns the kept indices, as timm."""
        take = self._take_indices(indices)
        for i in range(max(take) + 1, self.stages + 1):
            setattr(self, f"layer{i}", None)
        self.stages = max(take)
        if prune_head:
            self.reset_classifier(0)
        return take

    def to_features_only(self, out_indices=(0, 1, 2, 3, 4)) -> "VideoResNet":
        """timm's ``features_only``: ``forward`` returns the maps ``out_indices`` as a list of
        (B, C, T', h, w) tensors; later stages and the head are removed; ``feature_info``
        describes the maps returned."""
        take = self.prune_intermediate_layers(out_indices, prune_head=True)
        self.feature_info = FeatureInfo(d for d in self.feature_info if d["index"] in take)
        self.out_indices = tuple(take)
        return self

    # -- training -------------------------------------------------------------------------
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage (layer1-4) in the backward pass instead of storing its
        activations; outputs, gradients and BN statistics stay those of the plain model."""
        self.grad_checkpointing = bool(enable)

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth on every block's residual branch, the rate rising linearly from 0 at
        the first block to ``rate`` at the last (timm's schedule); 0 removes it."""
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise ValueError(f"drop_path_rate must be a number in [0, 1), got {rate!r}")
        counts = DEPTHS[self.depth][1]
        starts = [sum(counts[:s]) for s in range(4)]
        n = sum(counts)
        for name, m in self.named_modules():
            if isinstance(m, _Block):
                # layerS.I, or a copy of a stage such as TDN's stem.layer1.I
                stage, index = (int(v) for v in name.rsplit("layer", 1)[1].split("."))
                p = rate * (starts[stage - 1] + index) / max(n - 1, 1)
                m.drop_path = DropPath(p) if p > 0 else None
        self.drop_path_rate = float(rate)

    def to(self, *args, **kwargs):
        """As ``nn.Module.to``; ``memory_format=torch.channels_last`` converts the 4-D tensors
        (2D conv weights) and leaves the 3D/1D ones of temporal modules as they are, where torch
        would raise on the first 5-D weight."""
        fmt = torch._C._nn._parse_to(*args, **kwargs)[3]
        if fmt != torch.channels_last:
            return super().to(*args, **kwargs)
        args = tuple(a for a in args if not isinstance(a, torch.memory_format))
        kwargs = {k: v for k, v in kwargs.items() if k != "memory_format"}
        model = super().to(*args, **kwargs) if args or kwargs else self
        return model._apply(lambda t: t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t)

    # -- classifier ----------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return self.fc.out_features if isinstance(self.fc, nn.Linear) else 0

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, dropout: Optional[float] = None) -> None:
        """Swap the head for a freshly initialised one with ``num_classes`` outputs; 0 removes
        the classifier, so that ``forward`` returns the pooled features (B, num_features)."""
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0 (0: no classifier), got {num_classes!r}")
        if dropout is not None:
            self.drop_rate = dropout
            self.dropout = nn.Dropout(dropout)
        p = self.conv1.weight
        self.fc = (nn.Linear(self.num_features, num_classes, device=p.device, dtype=p.dtype)
                   if num_classes else nn.Identity())
        self._init_fc()
