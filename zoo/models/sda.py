"""SDA: Selective Dependency Aggregation (Tan et al., ACM MM 2021) on TSN/TSM ResNets.

The SDA module sits after conv2 -> bn2 of every bottleneck (``calib_at="bn2"``) and gates its
input with a full-size map:

1. channel reduction: 1x1 conv C -> r = max(C // reduction, 16), BN, ReLU;
2. M dependency branches, each "feature squeeze (average pool) -> dependency excitation
   (conv/linear, BN, ReLU)", whose maps are broadcast back to T x H x W;
3. aggregation of the M maps: their average ("avg"), or the query-structured attention ("sec"):
   a learnable query q (1 x r), keys k_i = global average of map i, weights softmax_i(k_i . q);
4. 1x1 conv r -> C, BN, sigmoid; output = input * gate.

Branches are data (``BRANCHES``): pool kernel (p_t, p_h, p_w) and excitation kernel
(c_t, c_h, c_w). Long-range: ``lst`` (T,H,W | linear), ``lt`` (T,1,1 | 1,3,3), ``ls``
(1,H,W | 3,1,1). Short-range (paper Sec. 3.1 and appendix Table 6): ``s222``, ``s333``
(3D pool, 1x1x1), ``s122``, ``s133``, ``s144``, ``s155`` (spatial pool, temporal 3x1x1 conv),
``p211c133`` (temporal pool, spatial conv), ``p211c311`` (temporal pool, temporal conv),
``p122c133`` (spatial pool, spatial conv); any ``p<pt><ph><pw>c<ct><ch><cw>`` is accepted.
The paper's final SDA is lst+lt+ls+s122 with "sec" and reduction 4.

Where the authors' code (ty-97/SDA, the spec their checkpoints follow) differs from the paper's
text, this module follows the code:

* The channel reduction has a BN before its ReLU, and the channel increase a BN before the
  sigmoid (the paper's Sec. 4.2 says a BN follows every conv/FC; Eq. 8 shows none).
* Branch activations are ReLU (the paper's Eq. 3), not sigmoids, and branches return the
  activation map only, which the aggregation broadcasts (they do not multiply the input).
* LST's excitation is a Linear r -> r + BN1d (the paper's 1x1x1 conv, same parameters).
* ``lt`` and ``ls`` are as the paper defines them by kernels: ``lt`` pools over T and applies a
  3x3 spatial conv (so it is the spatial branch despite its name), ``ls`` pools over H, W and
  applies a temporal conv of size 3 (the temporal branch). The paper's prose swaps the words.
* ``s122`` pools each frame adaptively to (max(H//2, 2), max(W//2, 2)), applies a (3,1,1) conv
  and goes back to H x W with adaptive average pooling. For even sizes this is a 2x2 average
  and an element copy (the paper's description); for odd sizes (7x7 in layer4 at 224 input)
  the windows overlap (7 -> 3 by rows 0-2, 2-4, 4-6) and the way back averages neighbours.
  This module does exactly that, so checkpoints reproduce.
* The "sec" softmax in the code adds 1e-8 to its denominator; this module uses torch.softmax
  (the sum is >= 1, so the difference is below 1e-8 relative).
* The code hard-codes 8 segments: at T=16 each clip is processed as two independent 8-frame
  chunks (pooling, keys, softmax and temporal convs never cross the chunk border). Here T is
  read from the input; ``chunk=8`` reproduces the authors' behaviour for their 16-frame models.

Choices where the paper is silent (no code for them in the authors' final module):
the other short-range branches generalise ``s122``'s code: adaptive average pooling to
(T // p_t, max(H // p_h, 2), max(W // p_w, 2)) (pooling kernel 1 keeps the axis), a conv with
kernel (c_t, c_h, c_w) and "same" zero padding, BN3d, ReLU, and adaptive pooling back.

Layout: the module works on the backbone's (B*T, C, H, W) frames without permuting the full
tensor: the 1x1x1 convs are 1x1 Conv2d (same weights reshaped, same FLOPs), pooled branches
are reductions over the needed axes of the (B, T, r, H, W) view, and their small maps are
broadcast in the weighted sum, never expanded. When H, W are multiples of a local branch's
pooled size (every even size), its map stays at the pooled size and is broadcast over
(H/h, W/w) blocks inside the sum: this is exactly the original's adaptive-pool upsampling
(an element copy there) without materialising it. ``zoo.deploy`` folds every BN into the
conv or linear before it and applies the gate in place.

Complexity: parameters equal the original's (25,768,702 for SDA-TSN/TSM R50, 174 classes).
fvcore counts the same operators (conv, batch_norm, linear, adaptive_avg_pool2d, mm) with the
same totals, except the upsampling pool that the broadcast replaces: fvcore counts one FLOP per
input element of adaptive_avg_pool2d, i.e. r*T*h*w per block with even H, W. At 8x224x224 that
is 652,288 FLOPs (layers 1-3; layer4's 7x7 still pools), so fvcore gives 33,926,672,160 here vs
33,927,324,448 on the original (-0.002%); at sizes where no map can be broadcast (odd H, W)
the counts are identical.
"""
from __future__ import annotations

import re
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..convert import COMMON_RULES, rename
from ..registration import register_arch, register_converter
from .ops import Conv1x1
from .resnet import Slots, VideoResNet
from .temporal import shift_slot

__all__ = ["SDA", "BRANCHES", "DEFAULT_DEPENDENCIES", "sda_slot", "parse_dependencies"]

ALL = 0  # a pooling kernel entry meaning "the whole axis" (T, H or W)

# name -> (pool kernel (p_t, p_h, p_w), excitation kernel (c_t, c_h, c_w))
BRANCHES = {
    "lst": ((ALL, ALL, ALL), (1, 1, 1)),
    "lt": ((ALL, 1, 1), (1, 3, 3)),
    "ls": ((1, ALL, ALL), (3, 1, 1)),
    "s222": ((2, 2, 2), (1, 1, 1)),
    "s333": ((3, 3, 3), (1, 1, 1)),
    "s122": ((1, 2, 2), (3, 1, 1)),
    "s133": ((1, 3, 3), (3, 1, 1)),
    "s144": ((1, 4, 4), (3, 1, 1)),
    "s155": ((1, 5, 5), (3, 1, 1)),
    "p211c133": ((2, 1, 1), (1, 3, 3)),
    "p211c311": ((2, 1, 1), (3, 1, 1)),
    "p122c133": ((1, 2, 2), (1, 3, 3)),
}
DEFAULT_DEPENDENCIES = ("lst", "lt", "ls", "s122")
_GENERIC = re.compile(r"p([1-9])([1-9])([1-9])c([1-9])([1-9])([1-9])")


def parse_dependencies(deps) -> tuple:
    """A tuple/list of branch names (case-insensitive) -> tuple of lowercase names, checked."""
    if isinstance(deps, str):
        deps = (deps,)
    if not isinstance(deps, (list, tuple)) or not deps:
        raise ValueError(f"dependencies must be a non-empty tuple of branch names, got {deps!r}")
    out = []
    for d in deps:
        name = str(d).lower()
        if name not in BRANCHES and not _GENERIC.fullmatch(name):
            raise ValueError(f"unknown SDA dependency {d!r}; known: {', '.join(BRANCHES)}, or "
                             "'p<pt><ph><pw>c<ct><ch><cw>' (pool and conv kernels, digits 1-9)")
        if name in out:
            raise ValueError(f"SDA dependency {name!r} given twice")
        out.append(name)
    return tuple(out)


def branch_kernels(name: str):
    if name in BRANCHES:
        return BRANCHES[name]
    d = [int(c) for c in _GENERIC.fullmatch(name).groups()]
    return tuple(d[:3]), tuple(d[3:])


class _Branch(nn.Module):
    """A branch: ``conv`` (a conv or linear) then ``bn``, which ``zoo.deploy`` folds into it."""


class GlobalBranch(_Branch):
    """LST: average over (T, H, W), Linear r -> r, BN1d, ReLU. Map (B, 1, r, 1, 1)."""

    def __init__(self, r: int):
        super().__init__()
        self.conv = nn.Linear(r, r, bias=False)
        self.bn = nn.BatchNorm1d(r)

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # y: (B, T, r, H, W)
        a = y.mean((1, 3, 4))
        return F.relu(self.bn(self.conv(a)))[:, None, :, None, None]

    def init_weights(self):
        nn.init.normal_(self.conv.weight, 0, 0.001)


class TimePooledBranch(_Branch):
    """LT: average over T, Conv2d (c_h, c_w), BN2d, ReLU. Map (B, 1, r, H, W)."""

    def __init__(self, r: int, kernel):
        super().__init__()
        kh, kw = kernel[1:]
        self.conv = nn.Conv2d(r, r, (kh, kw), padding=(kh // 2, kw // 2), bias=False)
        self.bn = nn.BatchNorm2d(r)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(y.mean(1)))).unsqueeze(1)


class SpacePooledBranch(_Branch):
    """LS: average over (H, W), Conv1d over T (c_t), BN1d, ReLU. Map (B, T, r, 1, 1)."""

    def __init__(self, r: int, kernel):
        super().__init__()
        kt = kernel[0]
        self.conv = nn.Conv1d(r, r, kt, padding=kt // 2, bias=False)
        self.bn = nn.BatchNorm1d(r)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        B, T, r, H, W = y.shape
        # adaptive_avg_pool2d (not mean) so fvcore counts what it counts on the original
        a = F.adaptive_avg_pool2d(y.view(B * T, r, H, W), 1).view(B, T, r).transpose(1, 2)
        return F.relu(self.bn(self.conv(a))).transpose(1, 2)[..., None, None]


def _pool_matrix(n_in: int, n_out: int) -> list:
    """Rows of adaptive average pooling from n_in to n_out positions (up or down)."""
    rows = []
    for i in range(n_out):
        s, e = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        rows.append([1.0 / (e - s) if s <= j < e else 0.0 for j in range(n_in)])
    return rows


def adaptive_avg_pool2d(x: torch.Tensor, size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d``; during ONNX export, the same averages as two products with
    constant pooling matrices, since ONNX has no adaptive pooling to sizes that do not divide
    the input (the branch pools 7 -> 3, and back up 3 -> 7 or 8 -> 16). Eager and fvcore unchanged."""
    H, W = int(x.shape[-2]), int(x.shape[-1])
    h, w = size
    if torch.onnx.is_in_onnx_export():
        a = torch.tensor(_pool_matrix(H, h), dtype=x.dtype, device=x.device)
        b = torch.tensor(_pool_matrix(W, w), dtype=x.dtype, device=x.device)
        return torch.matmul(torch.matmul(a, x), b.t())
    return F.adaptive_avg_pool2d(x, size)


class LocalBranch(_Branch):
    """Short-range: adaptive average pool to (T//p_t, max(H//p_h, 2), max(W//p_w, 2)), Conv3d
    (c_t, c_h, c_w) with same padding, BN3d, ReLU, temporal adaptive pool back to T.
    Map (B, T, r, h, w): the spatial way back (``upsample``) is left to the aggregation, which
    broadcasts it when H, W are multiples of h, w."""

    def __init__(self, r: int, pool, kernel):
        super().__init__()
        self.pool = tuple(pool)
        self.conv = nn.Conv3d(r, r, kernel, padding=tuple(k // 2 for k in kernel), bias=False)
        self.bn = nn.BatchNorm3d(r)
        self.temporal_only = tuple(kernel[1:]) == (1, 1)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        m = self._conv(self._pool(y), self.conv.weight, self.conv.bias)
        return self._back(F.relu(self.bn(m)), y.shape[1])

    def _size(self, H: int, W: int) -> tuple:
        ph, pw = self.pool[1:]
        return (max(H // ph, 2) if ph > 1 else H), (max(W // pw, 2) if pw > 1 else W)

    def _pool(self, y: torch.Tensor) -> torch.Tensor:
        """(B, T, r, H, W) -> (B, r, T', h, w), a small tensor."""
        B, T, r, H, W = y.shape
        pt = self.pool[0]
        h, w = self._size(H, W)
        a = y.reshape(B * T, r, H, W)
        if (h, w) != (H, W):
            a = adaptive_avg_pool2d(a, (h, w))
        a = a.view(B, T, r, h, w).transpose(1, 2)
        if pt > 1:
            a = F.adaptive_avg_pool3d(a, (max(T // pt, 1), h, w))
        return a

    def _conv(self, a: torch.Tensor, k: torch.Tensor, bias) -> torch.Tensor:
        if not self.temporal_only:
            return F.conv3d(a, k, bias, padding=self.conv.padding)
        # a (c_t, 1, 1) conv is a (c_t, 1) Conv2d over (T, h*w): same MACs, a faster kernel
        b, r, t, h, w = a.shape
        m = F.conv2d(a.reshape(b, r, t, h * w), k.flatten(3), bias, padding=(k.shape[2] // 2, 0))
        return m.view(b, -1, t, h, w)

    def _back(self, m: torch.Tensor, T: int) -> torch.Tensor:
        if self.pool[0] > 1:
            m = F.adaptive_avg_pool3d(m, (T, *m.shape[-2:]))
        return m.transpose(1, 2)

    @staticmethod
    def upsample(m: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """(B, T, r, h, w) -> (B, T, r, H, W) by adaptive average pooling, as the authors' code
        (an element copy when H, W are multiples of h, w; overlapping windows otherwise)."""
        B, T, r, h, w = m.shape
        return adaptive_avg_pool2d(m.reshape(B * T, r, h, w), (H, W)).view(B, T, r, H, W)


def make_branch(name: str, r: int) -> nn.Module:
    pool, kernel = branch_kernels(name)
    if pool == (ALL, ALL, ALL):
        return GlobalBranch(r)
    if pool == (ALL, 1, 1):
        return TimePooledBranch(r, kernel)
    if pool == (1, ALL, ALL):
        return SpacePooledBranch(r, kernel)
    return LocalBranch(r, pool, kernel)


class SDA(nn.Module):
    """The SDA calibrator: x (B*T, C, H, W) -> x * sigmoid(BN(up(aggregate(branches(down(x))))))."""

    broadcast_up = True  # False materialises every upsampled map as the original does (tests)

    def __init__(self, channels: int, dependencies: Sequence[str] = DEFAULT_DEPENDENCIES,
                 aggregation: str = "sec", reduction: int = 4, chunk: Optional[int] = None,
                 min_channels: int = 16):
        super().__init__()
        if aggregation not in ("sec", "avg"):
            raise ValueError(f"aggregation must be 'sec' or 'avg', got {aggregation!r}")
        if not isinstance(reduction, int) or isinstance(reduction, bool) or reduction < 1:
            raise ValueError(f"reduction must be a positive int, got {reduction!r}")
        if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
            raise ValueError(f"chunk must be None or a positive int, got {chunk!r}")
        self.dependencies = parse_dependencies(dependencies)
        self.aggregation = aggregation
        self.chunk = chunk
        r = max(channels // reduction, min_channels)
        self.down = Conv1x1(channels, r)
        self.bn1 = nn.BatchNorm2d(r)
        self.branches = nn.ModuleList(make_branch(d, r) for d in self.dependencies)
        kinds = {type(b) for b in self.branches}
        # maps without spatial extent (per channel / per frame) join the coarse map at low resolution
        self._pointwise = [isinstance(b, (GlobalBranch, SpacePooledBranch)) for b in self.branches]
        # the weighted sum is full-size when a map varies over T and over H, W; otherwise
        # (single long-range ablations) it is expanded before the 1x1 conv, as the original does
        self._full = LocalBranch in kinds or {TimePooledBranch, SpacePooledBranch} <= kinds
        self.query = nn.Parameter(torch.zeros(1, r)) if aggregation == "sec" else None
        self.up = Conv1x1(r, channels)
        self.bn2 = nn.BatchNorm2d(channels)

    def init_weights(self) -> None:
        # the authors' init: down kaiming (fan_out), up xavier, branch convs kaiming (fan_out),
        # LST linear N(0, 0.001), BNs 1/0, query U(-0.1, 0.1)
        nn.init.kaiming_normal_(self.down.weight, mode="fan_out", nonlinearity="relu")
        nn.init.xavier_normal_(self.up.weight)
        for b in self.branches:
            if isinstance(b.conv, nn.Linear):
                nn.init.normal_(b.conv.weight, 0, 0.001)
            else:
                nn.init.kaiming_normal_(b.conv.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if self.query is not None:
            nn.init.uniform_(self.query, -0.1, 0.1)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.chunk is not None:
            if T % self.chunk:
                raise ValueError(f"T={T} is not a multiple of {self.chunk}: this SDA works on chunks of "
                                 f"{self.chunk} frames (the authors' hard-coded segments)")
            T = self.chunk  # frames b*T + t: consecutive chunks are already separate "clips"
        N, C, H, W = x.shape
        B = N // T
        y = F.relu(self.bn1(self.down(x)), inplace=True).view(B, T, -1, H, W)
        agg = self._aggregate([b(y) for b in self.branches], B, T, H, W).reshape(N, -1, H, W)
        return self.excite(x, agg)

    def excite(self, x: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        """x * the gate computed from the aggregated map."""
        return x * torch.sigmoid(self.bn2(self.up(agg)))

    def _aggregate(self, maps: list, B: int, T: int, H: int, W: int) -> torch.Tensor:
        """The weighted sum of the branch maps, (B, T, r, H, W) (possibly a broadcast view)."""
        r = maps[0].shape[2]
        # Local maps come at (h, w). The first whose size divides (H, W) stays coarse and is
        # broadcast in the sum below (the original's adaptive-pool upsampling is then an
        # element copy); the others are upsampled as in the original.
        coarse = None
        for i, (b, m) in enumerate(zip(self.branches, maps)):
            if isinstance(b, LocalBranch):
                h, w = m.shape[-2:]
                if self.broadcast_up and coarse is None and H % h == 0 and W % w == 0:
                    coarse = i
                elif (h, w) != (H, W):
                    maps[i] = b.upsample(m, H, W)
        M = len(maps)
        if self.query is None:
            maps = [m * (1.0 / M) for m in maps]
        else:
            keys = torch.stack([m.mean((1, 3, 4)) for m in maps], 1)  # (B, M, r): pooled maps
            scores = torch.mm(keys.reshape(B * M, r), self.query.t()).view(B, M)
            w = torch.softmax(scores, 1)
            maps = [m * w[:, i, None, None, None, None] for i, m in enumerate(maps)]
        if coarse is None:
            # small broadcast maps first; the first full-size tensor is the sum itself
            maps.sort(key=lambda m: m.numel())
            agg = maps[0]
            for m in maps[1:]:
                agg = agg + m
            return agg if self._full else agg.expand(B, T, r, H, W)
        low = maps[coarse]
        h, w = low.shape[-2:]
        full = []
        for i, m in enumerate(maps):
            if i != coarse:
                if self._pointwise[i]:
                    low = low + m  # per-channel/per-frame maps join at low resolution
                else:
                    full.append(m)
        fh, fw = H // h, W // w
        agg = low.view(B, T, r, h, 1, w, 1)
        for m in full:
            agg = agg + m.view(B, -1, r, h, fh, w, fw)
        if not full:
            agg = agg.expand(B, T, r, h, fh, w, fw)
        return agg

    def extra_repr(self) -> str:
        return (f"dependencies={self.dependencies}, aggregation={self.aggregation!r}"
                + (f", chunk={self.chunk}" if self.chunk else ""))


def sda_slot(dependencies=DEFAULT_DEPENDENCIES, aggregation="sec", reduction=4, chunk=None):
    """Slot factory: an SDA on the conv2 output of every block."""
    deps = parse_dependencies(dependencies)
    return lambda ctx: SDA(ctx.width, deps, aggregation, reduction, chunk)


def _sda_builder(temporal: bool):
    def build(num_classes, num_frames, dropout=0.5, dependencies=DEFAULT_DEPENDENCIES,
              aggregation="sec", reduction=4, chunk=None):
        slots = Slots(shift=shift_slot(8) if temporal else None,
                      calib=sda_slot(dependencies, aggregation, reduction, chunk), calib_at="bn2")
        return VideoResNet(50, num_classes, slots, dropout=dropout, num_frames=num_frames)

    base = "TSM (residual shift of 1/8 of the channels each way)" if temporal else "TSN"
    build.__doc__ = f"""SDA-{'TSM' if temporal else 'TSN'} R50: {base} ResNet-50 with an SDA module after
    conv2+bn2 of every bottleneck. ``dependencies``: branch names (lst, lt, ls, s222, s333, s122,
    s133, s144, s155, p211c133, p211c311, p122c133 or p<pool>c<conv>); ``aggregation``: "sec"
    (query attention) or "avg"; ``reduction``: r_c, the branches' width is max(C // r_c, 16);
    ``chunk``: None (SDA sees all T frames) or 8 to reproduce the authors' code, which runs SDA
    on independent 8-frame chunks (their 16-frame checkpoints need it)."""
    return build


register_arch("sda_tsn_r50", family="sda")(_sda_builder(False))
register_arch("sda_tsm_r50", family="sda")(_sda_builder(True))


_RULES = COMMON_RULES + [
    (r"\.sda\.channel_down\.", ".calib.down."),
    (r"\.sda\.channel_up\.", ".calib.up."),
    (r"\.sda\.bn([12])\.", r".calib.bn\1."),
    (r"\.sda\.mdm\.", ".calib.branches."),
    (r"\.sda\.agg\.qVec$", ".calib.query"),
]


@register_converter("sda")
def convert_sda(sd: dict) -> dict:
    """SDA-TSN/SDA-TSM from ty-97/SDA: ``base_model.layerN.M.sda.*`` -> ``layerN.M.calib.*``;
    the 1x1x1 Conv3d weights of channel_down/channel_up become 1x1 Conv2d weights."""
    out = rename(sd, _RULES)
    for k, v in out.items():
        if (k.endswith(".calib.down.weight") or k.endswith(".calib.up.weight")) and v.dim() == 5:
            out[k] = v.flatten(2)[..., None]
    return out
