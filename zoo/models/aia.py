"""Attention in Attention (AIA): axial-context gates on TSN/TSM ResNet-50.

Hao et al., "Attention in Attention: Modeling Context Correlation for Efficient Video
Classification", IEEE TCSVT 2022. A video feature (B, C, T, H, W) is squeezed along one axis at a
time by max and average pooling (a 2-"channel" context); a 3x3x3 Conv3d (2 -> 1, no bias), a
BatchNorm3d and a sigmoid turn the context into a gate that is broadcast back over the squeezed
axis. Units:

* ``c``  - squeeze C: gate over (T, H, W).
* ``st`` - squeeze T, H and W separately; the gate is the mean of the three.
* ``cinst`` - the C gate refines x first; the ST gates are computed from x * gate_C, and the
  output is x * gate_ST (the C gate reaches the output only through the ST contexts).
* ``stinc`` - the mirror: the C gate is computed from x * gate_ST, the output is x * gate_C.

Combinations (Table I): ``a>b`` applies b to a's output (the paper's a -> b), ``a+b`` averages
a(x) and b(x). ``cinst>stinc`` is the paper's final AIA. The module sits after conv2 + bn2 of
every bottleneck, before the ReLU (our ``calibrator`` slot at ``"bn2"``).

Where the authors' code (haoyanbin918/Attention-in-Attention) differs from the paper's text, this
follows the code, so that their checkpoints load and reproduce:

* The context stacks **max first, then mean** (the paper's Eqs. 1-4 write AvgPool first).
* Each squeezed context is convolved with the remaining axes in the code's order: the C context
  over (T, H, W); the T context over (C, H, W), i.e. the kernel's depth axis is the **channel
  axis**, so the T gate mixes neighbouring channels; the H context over (T, C, W); the W context
  over (T, H, C).
* Every conv is followed by a BatchNorm3d(1) (the paper mentions it only in Sec. IV-B).
* ``cinst+stinc`` is the code's STinCplusCinST: its first part (``eft1``) is the STinC module,
  its second (``eft2``) the CinST module. The output 0.5*STinC(x) + 0.5*CinST(x) is symmetric,
  but the order decides which checkpoint weights go where.
* Initialisation: C and ST convs kaiming-normal (fan_out); STinC's C conv xavier-normal and its
  T/H/W convs kaiming-normal; CinST's C conv kaiming-normal, T and H convs xavier-normal and its
  W conv left at PyTorch's default Conv3d init (the code initialises H twice and W never). Gate
  BNs weight 1, bias 0.

Implementation: the (B*T, C, H, W) activation is viewed as (B, T, C, H, W) and every context is a
reduction (``amax`` / ``mean``) over one dim of that view, stacked on a new dim 2, which is the
(B, depth, 2, H, W) layout the gate conv takes for C, T and H; only the small W context is
transposed. The gate conv keeps the Conv3d weights but runs as one Conv2d over the depth slices
(:class:`DepthConv`), avoiding PyTorch's slow reference Conv3d kernel for 2 -> 1 channels; the
fvcore count is unchanged (54 MACs per gate element). Gates stay at their pooled size and
broadcast in the product with x; the ST gate's 1/3 is applied to the small gates before their
sum (the one full-size intermediate an ST gate needs); ``a+b`` sums the two gates and multiplies
x once.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..convert import COMMON_RULES, rename
from ..registration import register_arch, register_converter
from .resnet import Slots, VideoResNet
from .temporal import shift_slot

__all__ = ["ATTENTIONS", "DepthConv", "AxialGate", "AIAUnit", "AIACombo", "aia_slot", "parse_attention"]

UNITS = ("c", "st", "cinst", "stinc")
# public names -> (parts, how they combine); parts are listed in the original eft1, eft2 order
ATTENTIONS = {
    "c": (("c",), ""),
    "st": (("st",), ""),
    "c>st": (("c", "st"), ">"),
    "st>c": (("st", "c"), ">"),
    "c+st": (("c", "st"), "+"),
    "cinst": (("cinst",), ""),
    "stinc": (("stinc",), ""),
    "cinst>stinc": (("cinst", "stinc"), ">"),
    "stinc>cinst": (("stinc", "cinst"), ">"),
    "cinst+stinc": (("stinc", "cinst"), "+"),   # the code's STinCplusCinST
}
# the original --net variant names (C2D_<name>_BN / TSM_<name>_BN) are accepted as aliases
ORIGINAL_NAMES = {"c": "c", "st": "st", "c2st": "c>st", "st2c": "st>c", "cplusst": "c+st",
                  "cinst": "cinst", "stinc": "stinc", "cinst2stinc": "cinst>stinc",
                  "stinc2cinst": "stinc>cinst", "stincpluscinst": "cinst+stinc"}


def parse_attention(name: str) -> str:
    """A public ``attention`` value (or an original net name such as "CinST2STinC") -> its key."""
    if not isinstance(name, str):
        raise TypeError(f"attention must be a string, one of {list(ATTENTIONS)}, got {name!r}")
    key = name.strip().lower().replace("->", ">").replace("\u2192", ">").replace(" ", "")
    key = ORIGINAL_NAMES.get(key, key)
    if key not in ATTENTIONS:
        raise ValueError(f"unknown attention {name!r}; choose one of {list(ATTENTIONS)} "
                         "(or an original net name such as 'CinST2STinC')")
    return key


# fp32 lanes of one vector of the instruction set inductor compiles for on this CPU: it follows
# ATen's dispatch level (the CPU's best, or ATEN_CPU_CAPABILITY) unless its cpp.simdlen is set
_LANES = {"AVX512": 16, "AVX2": 8, "SVE256": 8}.get(torch.backends.cpu.get_cpu_capability(), 4)


def _context(v: torch.Tensor, dim: int) -> torch.Tensor:
    """Max and mean over ``dim`` of v, stacked max-first on a new dim 2: (B, D, 2, ...) is the
    layout :class:`DepthConv` takes (dim 1 is the conv's depth axis)."""
    if dim < 4 and v.shape[4] < _LANES and v.device.type == "cpu" and torch.compiler.is_compiling():
        return _context_3d(v, dim)
    return torch.stack((v.amax(dim), v.mean(dim)), 2)


def _context_3d(v: torch.Tensor, dim: int) -> torch.Tensor:
    """:func:`_context` as a reduction over the middle axis of v viewed as (before, dim, after):
    what ``torch.compile`` traces on CPU when W is narrower than one vector (16 floats with
    AVX-512, 8 with AVX2). Inductor
    (2.14) vectorises a reduction's innermost kept axis (W, contiguous); a loop of fewer
    elements than one vector counts as zero steps in its parallel-depth rule, which then splits
    the reduction itself across threads, one parallel region per (C, H) row. Reducing T over
    (1, 8, 256, 14, 14) took 1.5-2.9 ms that way, 0.04 ms in this form; compiled AIA-TSN ran
    2.6x compiled TSN (AVX-512 EPYC, 2 threads). Merged, the kept inner axis is H*W (or C*H*W)
    wide. Same values."""
    s = v.shape
    before, after = 1, 1
    for n in s[:dim]:
        before *= n
    for n in s[dim + 1:]:
        after *= n
    w = v.reshape(before, s[dim], after)
    ctx = torch.stack((w.amax(1), w.mean(1)), 1)                # (before, 2, after)
    return ctx.view(*s[:dim], 2, *s[dim + 1:]).movedim(dim, 2)


class DepthConv(nn.Conv3d):
    """The gates' Conv3d(2 -> 1, 3x3x3, padding 1, no bias), computed as one Conv2d.

    Input (B, D, 2, H, W), output (B, 1, D, H, W). The three depth taps of the kernel become three
    output channels of a 2D conv over the B*D slices, and output slice d sums tap 0 of slice d-1,
    tap 1 of slice d and tap 2 of slice d+1 (zero beyond the ends, as the 3D conv's padding).
    Same weights, same result and the same fvcore count (54 MACs per output) as the Conv3d, but
    no permuted copy of the context and no im2col: PyTorch runs a 2->1 channel Conv3d at batch 1
    through its slow reference kernel, which made it the single largest cost of the module."""

    def __init__(self):
        super().__init__(2, 1, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, D, _, H, W = x.shape
        o = F.conv2d(x.reshape(B * D, 2, H, W), self.weight[0].transpose(0, 1), padding=1).view(B, D, 3, H, W)
        out = o[:, :, 1] + F.pad(o[:, :-1, 0], (0, 0, 0, 0, 1, 0)) + F.pad(o[:, 1:, 2], (0, 0, 0, 0, 0, 1))
        if self.bias is not None:  # a BN folded in by zoo.deploy
            out = out + self.bias
        return out.unsqueeze(1)


class AxialGate(nn.Module):
    """Conv3d(2 -> 1, 3x3x3, padding 1, no bias) + BatchNorm3d(1) + sigmoid on a squeezed context
    (B, D, 2, H, W); returns the gate (B, D, H, W)."""

    def __init__(self):
        super().__init__()
        self.conv = DepthConv()
        self.bn = nn.BatchNorm3d(1)

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.bn(self.conv(ctx)))[:, 0]


class AIAUnit(nn.Module):
    """One attention unit (``c`` or ``st``) or AIA module (``cinst`` or ``stinc``).

    ``gate(v)`` takes the (B, T, C, H, W) view and returns a gate that broadcasts against it;
    ``forward`` returns x * gate. Gates: ``c`` (C squeezed), ``t``, ``h``, ``w``."""

    def __init__(self, kind: str):
        super().__init__()
        if kind not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {kind!r}")
        self.kind = kind
        self.c = AxialGate() if kind != "st" else None
        if kind != "c":
            self.t, self.h, self.w = AxialGate(), AxialGate(), AxialGate()
        else:
            self.t = self.h = self.w = None

    def init_weights(self) -> None:
        for g in (self.c, self.t, self.h, self.w):
            if g is not None:
                nn.init.kaiming_normal_(g.conv.weight, mode="fan_out", nonlinearity="relu")
                nn.init.ones_(g.bn.weight)
                nn.init.zeros_(g.bn.bias)
        if self.kind == "stinc":
            nn.init.xavier_normal_(self.c.conv.weight)
        elif self.kind == "cinst":
            nn.init.xavier_normal_(self.t.conv.weight)
            nn.init.xavier_normal_(self.h.conv.weight)
            self.w.conv.reset_parameters()  # never initialised by the authors' code

    def context(self, v: torch.Tensor, dim: int) -> torch.Tensor:
        """:func:`_context` of v over ``dim`` (a method: zoo.deploy's form picks how the max runs)."""
        return _context(v, dim)

    def c_gate(self, v: torch.Tensor) -> torch.Tensor:
        # conv over (T, H, W): (B, T, H, W) -> broadcast over C
        return self.c(self.context(v, 2)).unsqueeze(2)

    def st_gate(self, v: torch.Tensor) -> torch.Tensor:
        t = self.t(self.context(v, 1)).unsqueeze(1)             # conv over (C, H, W): (B, 1, C, H, W)
        h = self.h(self.context(v, 3)).unsqueeze(3)             # conv over (T, C, W): (B, T, C, 1, W)
        w = self.w(self.context(v, 4).transpose(3, 4))          # conv over (T, H, C): (B, T, H, C)
        w = w.transpose(2, 3).unsqueeze(4)                      # (B, T, C, H, 1)
        g = (t * (1 / 3)) + (h * (1 / 3))                       # the one full-size intermediate
        return g.add_(w * (1 / 3))

    def gate(self, v: torch.Tensor) -> torch.Tensor:
        if self.kind == "c":
            return self.c_gate(v)
        if self.kind == "st":
            return self.st_gate(v)
        if self.kind == "cinst":
            return self.st_gate(v * self.c_gate(v))
        return self.c_gate(v * self.st_gate(v))

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        N, C, H, W = x.shape
        v = x.view(N // T, T, C, H, W)
        return (v * self.gate(v)).view(N, C, H, W)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class AIACombo(nn.Module):
    """Two units: ``">"`` runs ``second`` on ``first``'s output, ``"+"`` averages them on x.

    Keys ``first`` / ``second`` are the original ``eft1`` / ``eft2``."""

    def __init__(self, first: str, second: str, how: str):
        super().__init__()
        if how not in (">", "+"):
            raise ValueError(f"how must be '>' or '+', got {how!r}")
        self.how = how
        self.first, self.second = AIAUnit(first), AIAUnit(second)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.how == ">":
            return self.second(self.first(x, T), T)
        N, C, H, W = x.shape
        v = x.view(N // T, T, C, H, W)
        # 0.5*a(x) + 0.5*b(x) = x * 0.5*(gate_a + gate_b): one full-size product instead of two
        g = self.first.gate(v) + self.second.gate(v)
        return (v * g.mul_(0.5)).view(N, C, H, W)

    def extra_repr(self) -> str:
        return f"how={self.how!r}"


def aia_slot(attention: str = "cinst>stinc"):
    """Calibrator factory: the ``attention`` configuration in every bottleneck."""
    parts, how = ATTENTIONS[parse_attention(attention)]
    if len(parts) == 1:
        return lambda ctx: AIAUnit(parts[0])
    return lambda ctx: AIACombo(parts[0], parts[1], how)


def _check(attention="cinst>stinc", **_):
    parse_attention(attention)


def _build(temporal):
    def build(num_classes, num_frames, attention="cinst>stinc", dropout=0.5):
        slots = Slots(shift=temporal, calib=aia_slot(attention), calib_at="bn2")
        return VideoResNet(50, num_classes, slots, dropout=dropout, num_frames=num_frames)
    return build


@register_arch("aia_tsn_r50", family="aia", check=_check)
def aia_tsn_r50(num_classes, num_frames, attention="cinst>stinc", dropout=0.5):
    """AIA(TSN): ResNet-50 TSN with an AIA module after bn2 of every bottleneck.

    ``attention``: one of "c", "st", "c>st", "st>c", "c+st", "cinst", "stinc", "cinst>stinc"
    (default, the paper's final AIA), "stinc>cinst", "cinst+stinc"; the original net names
    ("C2ST", "CinST2STinC", "STinCplusCinST", ...) are accepted too."""
    return _build(None)(num_classes, num_frames, attention=attention, dropout=dropout)


@register_arch("aia_tsm_r50", family="aia", check=_check)
def aia_tsm_r50(num_classes, num_frames, attention="cinst>stinc", dropout=0.5):
    """AIA(TSM): ResNet-50 TSM (residual shift of 1/8 of the channels each way, as the AIA code
    hard-codes) with an AIA module after bn2 of every bottleneck.

    ``attention``: as for aia_tsn_r50; default "cinst>stinc", the paper's final AIA."""
    return _build(shift_slot(8))(num_classes, num_frames, attention=attention, dropout=dropout)


_GATE = {"C": "c", "T": "t", "H": "h", "W": "w"}


@register_converter("aia")
def convert_aia(sd: dict) -> dict:
    """AIA repo (every C2D_*_BN / TSM_*_BN net): ``eft`` -> ``calib``, ``eft1``/``eft2`` ->
    ``calib.first``/``calib.second``, ``X_conv``/``X_bn`` -> ``x.conv``/``x.bn``."""
    rules = COMMON_RULES + [
        (r"\.eft1\.", ".calib.first."),
        (r"\.eft2\.", ".calib.second."),
        (r"\.eft\.", ".calib."),
        (r"\.calib\.((?:first\.|second\.)?)([CTHW])_(conv|bn)\.",
         lambda m: f".calib.{m.group(1)}{_GATE[m.group(2)]}.{m.group(3)}."),
    ]
    return rename(sd, rules)
