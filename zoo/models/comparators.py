"""The comparator calibrators of the GC and AIA ablations (GC Table 2, AIA Table I).

Video versions of existing re-weighting modules, plugged into TSN/TSM through the
``calibrator`` kwarg of their builders (``create_model("tsn_r50", calibrator="se3d")``):

=============  ===========  ==========================================================
name           ``calib_at`` what
=============  ===========  ==========================================================
``se3d``       bn3          SE with spatio-temporal pooling, reduction 16, no FC bias
``ge3d_g``     bn3          gather-excite, global pooling, no parameters (GE-theta^-)
``ge3d_dw133`` bn3          gather-excite, three 1x3x3 depthwise stride-2 convs (GE-theta)
``ge3d_dw333`` bn3          the same with 3x3x3 convs; GC's "GE3D-C" (alias ``ge3d_c``)
``s3d_g``      bn2          S3D-G feature gating: full CxC FC with bias on the pooled clip
``cbam3d_177`` bn3          CBAM channel gate (r=16) then spatial gate, 1x7x7 conv
``cbam3d_377`` bn3          the same with a 3x7x7 conv
``nln``        out          TSM's non-local blocks (embedded Gaussian, 5 in R50)
=============  ===========  ==========================================================

Sources: SE (Hu et al., CVPR 2018), GE (Hu et al., NeurIPS 2018), S3D-G (Xie et al., ECCV
2018), CBAM (Woo et al., ECCV 2018), non-local networks (Wang et al., CVPR 2018) and TSM's
non-local version (Lin et al., ICCV 2019, its ``ops/non_local.py``). Their video versions are
described in the GC appendix (Fig. 7) and AIA Sec. IV-C / Fig. 4; the figures are not in our
text copies, so the settings below were chosen from the original papers and checked against
the tables' parameter counts (the tables print 0.01M, which pins them down):

* **Where.** The GC/AIA text says the comparators replace their module, but the counts only
  work out with SE3D, GE3D and CBAM3D where their own papers put them - at the end of the
  residual branch, after conv3+bn3 and before the addition, on the block's 4x-wider output
  (``calib_at="bn3"``). E.g. SE3D with r=16 there adds sum(2*(4p)^2/16) = 2,514,944 params
  (26.38M, the table's); GE3D-DW333's three depthwise convs + BNs there add 1,314,048
  (25.18M); on the middle conv's p channels they would give 24.19M. S3D-G's CxC gate only
  fits on the middle conv's output (after bn2, like GC/AIA's own modules): 1,257,472 weights +
  3,776 biases (25.13M); on the 4p output it would be 20M params.
* **Pooling** is a spatio-temporal mean: a per-frame ``adaptive_avg_pool2d`` followed by the
  mean over T. fvcore counts the first (one op per input element), and the papers' FLOPs
  include exactly that: GE3D-G, which has no parameters, is printed at 32.92G = TSN + the
  44.15M elements it pools.
* **Gates** are computed on pooled tensors and broadcast over the frames/positions they
  cover; GE's nearest-neighbour upsampling is a broadcast over the (integer) block factor
  when the sizes divide (all the standard input sizes) and ``F.interpolate`` otherwise.

T is read from the input; nothing here depends on the frame count.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..convert import COMMON_RULES, rename
from ..registration import register_converter
from .calibrators import register_calibrator
from .resnet import BlockCtx

__all__ = ["SE3D", "GE3DG", "GE3DDW", "S3DG", "CBAM3D", "NonLocal", "clip_pool", "frame_gate"]


def clip_pool(x: torch.Tensor, T: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, C): the mean over T, H and W of each clip."""
    N, C = x.shape[:2]
    return F.adaptive_avg_pool2d(x, 1).view(N // T, T, C).mean(1)


def clip_max(x: torch.Tensor, T: int) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, C): the max over T, H and W of each clip."""
    N, C = x.shape[:2]
    return F.adaptive_max_pool2d(x, 1).view(N // T, T, C).amax(1)


def frame_gate(g: torch.Tensor, T: int) -> torch.Tensor:
    """A per-clip gate (B, C) as a per-frame one (B*T, C, 1, 1) that broadcasts over H, W."""
    B, C = g.shape
    return g.unsqueeze(1).expand(B, T, C).reshape(B * T, C, 1, 1)


def _upsample_mul(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """x * nearest-upsampled g, for g (N, C, h, w) and x (N, C, H, W)."""
    N, C, H, W = x.shape
    h, w = g.shape[2:]
    if H % h == 0 and W % w == 0 and x.is_contiguous():
        # nearest upsampling by an integer factor is a block broadcast: no full-size gate
        kh, kw = H // h, W // w
        return (x.view(N, C, h, kh, w, kw) * g.view(N, C, h, 1, w, 1)).view(N, C, H, W)
    return x * F.interpolate(g, size=(H, W), mode="nearest")


class SE3D(nn.Module):
    """SE3D: squeeze-and-excitation (Hu et al., CVPR 2018) with a spatio-temporal squeeze.

    GC Table 2 / AIA Table I "SE3D". Squeeze = mean over (T, H, W) of the clip; excitation =
    FC(C -> C/r), ReLU, FC(C/r -> C), sigmoid; the output is x times the per-channel gate.
    Settings: r = 16 as in SE; placed at the end of the residual branch as in SE-ResNet
    (``calib_at="bn3"``). The FCs have **no bias**: the SE paper's FCs have one, but AIA's
    26.38M (26,379,502 here) only comes out without (with biases: 26.40M).
    FLOPs: 32.925G with TSN R50 at 8x224 (the (T,H,W) pool 44.15M, the FCs 2.51M); AIA prints
    32.94G, which is what FCs run on every frame would give (32.943G) - a per-frame 2D SE, not
    the spatio-temporal squeeze both papers describe, so we keep the latter.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        g = torch.sigmoid(self.fc2(F.relu(self.fc1(clip_pool(x, T)))))
        return x * frame_gate(g, T)


class GE3DG(nn.Module):
    """GE3D-G: parameter-free gather-excite with a global extent (GE-theta^-; Hu et al.,
    NeurIPS 2018), gathering over the whole clip.

    GC Table 2 / AIA Table I "GE3D-G". Gather = mean over (T, H, W); excite = x * sigmoid(gather).
    Placed where GE-ResNet places it, at the end of the residual branch (``calib_at="bn3"``).
    No parameters (23.86M, as printed).
    """

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return x * frame_gate(torch.sigmoid(clip_pool(x, T)), T)


class GE3DDW(nn.Module):
    """GE3D-DW: parametric gather-excite (GE-theta; Hu et al., NeurIPS 2018) whose gather is a
    chain of depthwise convolutions, in 3D.

    AIA Table I "GE3D-DW133" (``kt=1``, 1x3x3 kernels) and "GE3D-DW333" (``kt=3``, 3x3x3
    kernels); GC Table 2's "GE3D-C" ("three 3D depthwise convolution layers") is DW333.
    Settings: ``layers`` = 3 depthwise convs of stride (1, 2, 2) - GE's extent 8, the
    "three layers" of GC - each followed by BN, with a ReLU between them (not after the last,
    as in GE's chains); no temporal stride (the FLOPs confirm it: the 3x3x3 minus 1x3x3 gap of
    0.27G is 18 MACs on each output of spatial-only strides). Excite = x * nearest-upsampled
    sigmoid(gather). Placed at the end of the residual branch (``calib_at="bn3"``), which is
    what the parameter counts require: 24,362,990 (24.36M) and 25,178,606 (25.18M).
    The 1x3x3 version runs as per-frame 2D convs (weights (C, 1, 3, 3)); the 3x3x3 one as Conv3d
    on the (B, C, T, h, w) view.
    """

    def __init__(self, channels: int, kt: int = 3, layers: int = 3):
        super().__init__()
        if kt not in (1, 3):
            raise ValueError(f"GE3DDW kt must be 1 (1x3x3 kernels) or 3 (3x3x3), got {kt}")
        self.kt = kt
        mods = []
        for i in range(layers):
            if kt == 1:
                mods += [nn.Conv2d(channels, channels, 3, 2, 1, groups=channels, bias=False),
                         nn.BatchNorm2d(channels)]
            else:
                mods += [nn.Conv3d(channels, channels, 3, (1, 2, 2), 1, groups=channels, bias=False),
                         nn.BatchNorm3d(channels)]
            if i < layers - 1:
                mods.append(nn.ReLU(inplace=True))
        self.gather = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        N, C, H, W = x.shape
        if self.kt == 1:
            g = self.gather(x)
        else:
            g = self.gather(x.view(N // T, T, C, H, W).transpose(1, 2))
            g = g.transpose(1, 2).reshape(N, C, g.shape[3], g.shape[4])
        return _upsample_mul(x, torch.sigmoid(g))


class S3DG(nn.Module):
    """S3D-G feature gating (Xie et al., ECCV 2018): y = sigmoid(W pool(x) + b) * x.

    GC Table 2 / AIA Table I "S3D-G". pool = mean over the clip's (T, H, W); W is a full
    C x C matrix with a bias b, as in S3D-G. Placed after the middle conv and bn2
    (``calib_at="bn2"``, the slot of GC/AIA's own modules); S3D-G gates after its temporal
    convs, and only this place gives the printed 25.13M (25,125,806 here).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return x * frame_gate(torch.sigmoid(self.fc(clip_pool(x, T))), T)


class CBAM3D(nn.Module):
    """CBAM3D: the convolutional block attention module (Woo et al., ECCV 2018) in 3D.

    AIA Table I "CBAM3D177" (``kt=1``) and "CBAM3D377" (``kt=3``). A channel gate and then a
    spatial gate, in sequence, as in CBAM:

    * channel: the clip's (T, H, W) mean and max each go through a shared MLP
      C -> C/16 -> C (ReLU, with biases, as in CBAM); gate = sigmoid(sum); y = x * gate.
    * spatial: per position, the max and the mean over channels (in that order) -> a
      (kt x 7 x 7) conv 2 -> 1 (no bias, padding to keep the size) -> BN -> sigmoid;
      out = y * gate, broadcast over channels.

    Placed at the end of the residual branch as in CBAM-ResNet (``calib_at="bn3"``).
    Params 26,397,150 / 26,400,286 (R50, 174 classes): AIA prints 26.39M / 26.40M, so CBAM3D177's
    count is truncated rather than rounded there; dropping the MLP biases gives 26.38M for both,
    which misses CBAM3D377's 26.40M instead, so we keep CBAM's biases. FLOPs match (32.94G /
    32.96G): the average pool is counted, the max pools are not (fvcore).
    The 1x7x7 conv runs per frame as a 2D conv (weights (1, 2, 7, 7)).
    """

    def __init__(self, channels: int, kt: int = 1, reduction: int = 16, kernel: int = 7):
        super().__init__()
        if kt not in (1, 3):
            raise ValueError(f"CBAM3D kt must be 1 (1x7x7 conv) or 3 (3x7x7), got {kt}")
        hidden = max(channels // reduction, 1)
        self.kt = kt
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))
        p = kernel // 2
        if kt == 1:
            self.conv = nn.Conv2d(2, 1, kernel, 1, p, bias=False)
            self.bn = nn.BatchNorm2d(1)
        else:
            self.conv = nn.Conv3d(2, 1, (kt, kernel, kernel), 1, (kt // 2, p, p), bias=False)
            self.bn = nn.BatchNorm3d(1)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        N, C, H, W = x.shape
        g = torch.sigmoid(self.mlp(clip_pool(x, T)) + self.mlp(clip_max(x, T)))
        y = x * frame_gate(g, T)
        m = torch.cat((y.amax(1, keepdim=True), y.mean(1, keepdim=True)), 1)  # (N, 2, H, W)
        if self.kt == 1:
            s = self.bn(self.conv(m))
        else:
            s = self.bn(self.conv(m.view(N // T, T, 2, H, W).transpose(1, 2)))
            s = s.transpose(1, 2).reshape(N, 1, H, W)
        return y * torch.sigmoid(s)


class NonLocal(nn.Module):
    """Non-local block (Wang et al., CVPR 2018), embedded-Gaussian version, as TSM's
    non-local networks use it (Lin et al., ICCV 2019; GC's "NLN ... follows [26]").

    z = x + BN(W y),  y_i = sum_j softmax_j(theta(x_i) . phi(x_j)) g(x_j)  over all T*H*W
    positions of the clip. theta, phi, g: 1x1x1 convs C -> C/2 with bias; phi and g are
    followed by a (1, 2, 2) max pool (the paper's subsampling); W: 1x1x1 conv C/2 -> C with
    bias, then BN whose weight and bias start at zero, so a new block is the identity.
    1x1x1 convs and (1,2,2) pools act per frame, so they run as 2D ops on (B*T, C, H, W)
    (weights (C', C, 1, 1)); only the affinity spans the frames. Convs keep PyTorch's default
    init, as in TSM (the blocks are added after the backbone is built).

    Placed on the output of every other block of layer2 and layer3 (indices 0, 2, ...), which
    for ResNet-50 is TSM's ``make_non_local``: layer2.0/2 and layer3.0/2/4 (5 blocks, 512 and
    1024 channels; ``calib_at="out"``); for other depths the same rule is our extension (TSM
    builds R50 only). Params 31,223,022 (31.2M, as printed). FLOPs: fvcore counts the two
    attention matmuls (11.96G at 8x224) and gives 61.30G; GC prints 49.4G, the count without
    them (49.34G; 49.37G with the convs' bias adds, as thop counts them).
    """

    def __init__(self, channels: int):
        super().__init__()
        inter = max(channels // 2, 1)
        self.inter = inter
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.W = nn.Conv2d(inter, channels, 1)
        self.bn = nn.BatchNorm2d(channels)

    def init_weights(self) -> None:
        for m in (self.theta, self.phi, self.g, self.W):
            m.reset_parameters()
        nn.init.zeros_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        N, C, H, W = x.shape
        B, Ci = N // T, self.inter
        q = self.theta(x).view(B, T, Ci, H * W).transpose(2, 3).reshape(B, T * H * W, Ci)
        k = F.max_pool2d(self.phi(x), 2)
        v = F.max_pool2d(self.g(x), 2)
        M = k.shape[2] * k.shape[3]
        k = k.view(B, T, Ci, M).transpose(1, 2).reshape(B, Ci, T * M)
        v = v.view(B, T, Ci, M).transpose(2, 3).reshape(B, T * M, Ci)
        y = torch.softmax(torch.matmul(q, k), dim=-1).matmul(v)          # (B, T*H*W, Ci)
        y = y.view(B, T, H * W, Ci).transpose(2, 3).reshape(N, Ci, H, W)
        return x + self.bn(self.W(y))


# -- slot factories and registration --------------------------------------------------------

def _nl_factory(ctx: BlockCtx):
    if ctx.stage in (1, 2) and ctx.index % 2 == 0:
        return NonLocal(ctx.out_channels)
    return None


_KINDS = {
    # name: (factory, calib_at, one line)
    "se3d": (lambda ctx: SE3D(ctx.out_channels), "bn3", "SE3D: SE with (T,H,W) pooling, r=16, end of the residual branch"),
    "ge3d_g": (lambda ctx: GE3DG(), "bn3", "GE3D-G: parameter-free global gather-excite"),
    "ge3d_dw133": (lambda ctx: GE3DDW(ctx.out_channels, kt=1), "bn3",
                   "GE3D-DW133: gather-excite, three 1x3x3 depthwise stride-2 convs"),
    "ge3d_dw333": (lambda ctx: GE3DDW(ctx.out_channels, kt=3), "bn3",
                   "GE3D-DW333: gather-excite, three 3x3x3 depthwise stride-2 convs"),
    "ge3d_c": (lambda ctx: GE3DDW(ctx.out_channels, kt=3), "bn3", "GE3D-C (GC's name for GE3D-DW333)"),
    "s3d_g": (lambda ctx: S3DG(ctx.width), "bn2", "S3D-G feature gating after the middle conv"),
    "cbam3d_177": (lambda ctx: CBAM3D(ctx.out_channels, kt=1), "bn3", "CBAM3D with a 1x7x7 spatial conv"),
    "cbam3d_377": (lambda ctx: CBAM3D(ctx.out_channels, kt=3), "bn3", "CBAM3D with a 3x7x7 spatial conv"),
    "nln": (_nl_factory, "out", "non-local blocks after layer2.0/2 and layer3.0/2/4 (TSM's NL placement)"),
}

for _name, (_factory, _at, _doc) in _KINDS.items():
    register_calibrator(_name, _factory, at=_at, doc=_doc)


# -- TSM's non-local checkpoints --------------------------------------------------------------

# TSM's make_non_local wraps a block as NL3DWrapper(block) -> keys layerN.M.block.* and
# layerN.M.nl.{theta, g.0, phi.0, W.0, W.1}.* (the pooled convs sit in Sequentials with the pool).
_NL_RULES = [
    (r"^(layer\d+\.\d+)\.block\.", r"\1."),
    (r"\.nl\.theta\.", ".calib.theta."),
    (r"\.nl\.phi\.0\.", ".calib.phi."),
    (r"\.nl\.g\.0\.", ".calib.g."),
    (r"\.nl\.W\.0\.", ".calib.W."),
    (r"\.nl\.W\.1\.", ".calib.bn."),
]


@register_converter("tsm_nl")
def convert_tsm_nl(sd: dict) -> dict:
    """TSM with non-local blocks from the TSM authors' repo (``..._dense_nl.pth``) -> tsm_r50
    with ``calibrator="nln"``: unwrap the blocks, rename the NL parts, and drop the unit
    temporal axis of the 1x1x1 Conv3d weights (ours are per-frame 1x1 Conv2d)."""
    out = rename(sd, COMMON_RULES + _NL_RULES)
    return {k: (v.squeeze(2) if ".calib." in k and v.dim() == 5 else v) for k, v in out.items()}
