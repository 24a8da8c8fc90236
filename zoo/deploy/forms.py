"""The deployed forms of the family modules: TSM's shift met by the next conv in one of three
ways, the in-place gates (GC, AIA, SDA) and their compiled forms (``Native*``), and the kernels
whose fastest implementation :mod:`zoo.deploy` times at conversion (1x1 conv, frame-wise 3D conv,
AIA's gate, TDN's shift conv). Each falls back to the plain module's forward where its shapes or
tracing rule it out."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models.aia import AIACombo, AIAUnit, AxialGate, DepthConv
from ..models.conv3d import FrameConv3d
from ..models.gc import GC, ECalS
from ..models.gst import GSTConv
from ..models.ops import Conv1x1
from ..models.resnet import BasicBlock, Bottleneck, VideoResNet
from ..models.sda import SDA, GlobalBranch, LocalBranch, SpacePooledBranch, TimePooledBranch
from ..models.stc import STCConv
from ..models.tdn import ShiftConv, TDNResNet
from ..models.temporal import TemporalShift, temporal_shift
from . import library, native
from .fold import fold_bn


def _functional() -> bool:
    """Being traced, exported to ONNX or compiled: the in-place forms and the kernel choices
    give way to the plain ops there. TorchScript's ONNX exporter can turn writes into slices
    into constants; inductor fuses the plain ops itself and compiles in-place writes and
    hand-picked products badly (deployed, then compiled, TSM ran 1.33x compiled TSN with them,
    against 1.06x for the compiled plain model, AVX-512 EPYC). The compiled kernels' forms are
    the exception under ``torch.compile`` (:func:`_exporting`)."""
    return torch.compiler.is_compiling() or _exporting()


def _exporting() -> bool:
    """Being traced or exported (``torch.jit.trace``, ``torch.export``, ONNX): the compiled
    kernels' forms give way to the plain ops there too, since an exported graph must run
    without this process. ``torch.compile`` calls them as custom operators (:mod:`.library`),
    and the ReLU they take over stays theirs."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


# -- TSM's shift ------------------------------------------------------------------------------

def shift_conv1x1(x: torch.Tensor, T: int, conv: nn.Conv2d, fold_div: int = 8) -> torch.Tensor:
    """``conv(temporal_shift(x, T))`` for a 1x1 ``conv`` without moving any data: the unshifted
    channels' product with every frame, plus the shifted channels' products added into the
    neighbouring frames' outputs (GEMMs accumulating in place, reading ``x`` where it lies).
    Same multiply-adds as the conv; x is (B*T, C, H, W) with a unit W stride."""
    N, C, H, W = x.shape
    f = C // fold_div
    w = conv.weight.view(conv.out_channels, C)
    O, B = w.shape[0], N // T
    xv = x.reshape(N, C, H * W)
    y = torch.bmm(w[:, 2 * f:].expand(N, O, C - 2 * f), xv[:, 2 * f:])
    if f and T > 1:
        wf, wb = w[:, :f].expand(T - 1, O, f), w[:, f:2 * f].expand(T - 1, O, f)
        for b in range(B):  # clips: no product crosses a clip border
            xb, yb = xv[b * T:(b + 1) * T], y[b * T:(b + 1) * T]
            yb[:-1].baddbmm_(wf, xb[1:, :f])          # frame t takes channels [0, f) of t + 1
            yb[1:].baddbmm_(wb, xb[:-1, f:2 * f])     # and channels [f, 2f) of t - 1
    y = y.view(N, O, H, W)
    return y if conv.bias is None else y + conv.bias.view(1, O, 1, 1)


def _dense(x: torch.Tensor) -> bool:
    """Frames (B*T, C, H, W) that view as (B, T, C, H, W): contiguous or channels-last (GPUs)."""
    return x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)


def shift_(x: torch.Tensor, T: int, fold_div: int = 8) -> torch.Tensor:
    """:func:`temporal_shift` in place on contiguous or channels-last (B*T, C, H, W) frames; returns the
    original shifted channels, which :func:`unshift_` puts back. Moves the 2/fold_div shifted
    channels only (out, shifted in, and back) instead of a copy of the whole tensor."""
    N, C, H, W = x.shape
    f = C // fold_div
    v = x.view(N // T, T, C, H, W)
    kept = v[:, :, :2 * f].clone()
    v[:, :-1, :f].copy_(kept[:, 1:, :f])
    v[:, -1, :f].zero_()
    v[:, 1:, f:2 * f].copy_(kept[:, :-1, f:])
    v[:, 0, f:2 * f].zero_()
    return kept


def unshift_(x: torch.Tensor, T: int, kept: torch.Tensor, fold_div: int = 8) -> None:
    """Undo :func:`shift_` in place."""
    N, C, H, W = x.shape
    x.view(N // T, T, C, H, W)[:, :, :2 * (C // fold_div)].copy_(kept)


class _Form:
    """A compiled form's registration: a key under which ``torch.compile`` finds it
    (:func:`library.register`), and for some the addresses of their weights, cached for the
    kernels' calls (``_derived``, set by ``_bind``). A copy (``copy.deepcopy``, pickling) binds
    its own key and addresses: with the original's it ran the original's weights, or read freed
    memory once the original was gone."""

    _derived: tuple = ()

    def _bind(self) -> None:
        self.key = library.register(self)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "key" and k not in self._derived}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._bind()


class NativeShift(_Form):
    """TSM's shifted copy of fp32 channels-last frames in one pass (STC's shift kernel over every
    channel), for ``torch.compile``: there, with the block's BNs folded, inductor computed each
    block's output (add, ReLU) inside the next block's shift kernel, once for every frame that
    reads it, three times in all; deployed and compiled, TSM ran +16.6 % over TSN (AVX-512 EPYC).
    As one opaque call the block output is written once, as it must be for the residual anyway,
    and read once."""

    def __init__(self, fold_div: int):
        self.fold_div = fold_div
        self._bind()

    def out_shape(self, shape: tuple) -> tuple:
        return shape

    def __call__(self, x: torch.Tensor, T: int) -> torch.Tensor:
        N, C, H, W = x.shape
        out = torch.empty_like(x, memory_format=torch.channels_last)
        native.load().stc_shift(x.data_ptr(), N // T, T, H * W, C, C, C // self.fold_div, out.data_ptr())
        return out


class ShiftedConv(_Form):
    """A block's shift and the conv after it as one call, run as eager runs them (the mode the
    conversion timed), for ``torch.compile``: inductor cannot shift in place around a conv, and
    its own shift computed the folded block output inside the shift kernel (see
    :class:`NativeShift`). The frames are shifted in place and back within the call."""

    def __init__(self, shift: DeployedShift, conv: nn.Conv2d):
        self.shift, self.conv = shift, conv
        self._bind()

    def out_shape(self, shape: tuple) -> tuple:
        return (shape[0], self.conv.out_channels, *_conv_hw(self.conv, *shape[2:]))

    def __call__(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return self.shift._around(x, T, self.conv).contiguous(memory_format=torch.channels_last)


def _plain_1x1(conv) -> bool:
    return type(conv) in (nn.Conv2d, Conv1x1) and conv.kernel_size == (1, 1) \
        and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.groups == 1


class DeployedShift(TemporalShift):
    """TSM's shift with the way it meets the next conv fixed at conversion (``around``):
    ``"copy"`` (the plain shifted copy, then the conv), ``"inplace"`` (the block input shifted
    in place for the conv and shifted back: the block owns it while conv1 runs) or
    ``"fused"`` (:func:`shift_conv1x1`, for a 1x1 conv) or ``"lent"`` (:class:`DeployedBottleneck`
    shifts its input with the compiled kernel and reads it back at the join; where the block
    cannot, as ``"inplace"``). Under ``torch.compile``: the shift and its conv as one call in the
    mode timed (``conv_form``, a :class:`ShiftedConv` set by the conversion; ``"lent"`` there
    runs as ``"inplace"``), or else the shifted copy by the compiled kernel (``native``)."""

    conv_form: Optional["ShiftedConv"] = None

    MODES = ("copy", "inplace", "fused", "lent")

    def __init__(self, fold_div: int, mode: str):
        super().__init__(fold_div)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.native = NativeShift(fold_div) if native.load() is not None else None

    def around(self, x: torch.Tensor, T: int, conv: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if _functional():
            if not _exporting() and _takes(x, T):
                if self.conv_form is not None and conv is self.conv_form.conv:
                    return library.run(self.conv_form, x, T)
                if self.native is not None:
                    return conv(library.run(self.native, x, T))
            return conv(temporal_shift(x, T, self.fold_div))
        return self._around(x, T, conv)

    def _around(self, x: torch.Tensor, T: int, conv: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.mode == "fused" and _plain_1x1(conv) and x.stride(-1) == 1:
            return shift_conv1x1(x, T, conv, self.fold_div)
        # "lent" here: the block did not lend its input (see DeployedBottleneck)
        if self.mode in ("inplace", "lent") and _dense(x):
            kept = shift_(x, T, self.fold_div)
            try:
                return conv(x)
            finally:
                unshift_(x, T, kept, self.fold_div)
        return conv(temporal_shift(x, T, self.fold_div))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode!r}"


# -- in-place gates ---------------------------------------------------------------------------

class _WeightsTaken:
    """A module whose compiled form (``native``) runs on copies of the module's weights taken
    at conversion: weights loaded into the module afterwards would not reach the form, so such a
    load is refused, with what to do instead."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if getattr(self, "native", None) is not None and any(k.startswith(prefix) for k in state_dict):
            raise RuntimeError(f"zoo.deploy: {prefix.rstrip('.') or type(self).__name__} runs compiled kernels on "
                               "copies of its weights taken at conversion; load the weights into the plain model, "
                               "then deploy it again")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class _ReLUAfter:
    """An in-place gate that may also apply the block's ReLU that follows it (``relu_after``, set
    by the conversion; its compiled form does it in its last pass): the block then skips its own
    (:class:`_OwnReLU`). Traced, the block's ReLU runs instead."""

    relu_after = False

    def _relu(self, x: torch.Tensor) -> torch.Tensor:
        return x.relu_() if self.relu_after and not _exporting() else x


def _takes(x: torch.Tensor, T: int) -> bool:
    """Frames the compiled kernels take: fp32 channels-last (B*T, C, H, W) on the CPU, no grad."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and x.shape[0] % T == 0 \
        and x.is_contiguous(memory_format=torch.channels_last) and not (x.requires_grad and torch.is_grad_enabled())


def _bn_affine(bn: nn.BatchNorm2d) -> tuple:
    """An eval BatchNorm as per-channel (scale, shift), fp32, for a kernel to apply."""
    scale, shift = fold_bn(bn.running_mean.new_ones(bn.num_features), bn)
    return scale.detach().float().contiguous(), shift.detach().float().contiguous()


def _eval_bn(bn) -> bool:
    return type(bn) is nn.BatchNorm2d and not bn.training and bn.running_mean is not None and bn.affine


def _taps3x3(conv: nn.Conv2d) -> Optional[torch.Tensor]:
    """``conv``'s weights as the kernels' conv3x3 reads them ([tap][in][out]), where it can run
    ``conv``: 3x3, c -> c, stride 1, zero padding equal to the dilation; else None."""
    w = conv.weight
    if not (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.groups == 1 and w.shape[0] == w.shape[1]
            and conv.dilation[0] == conv.dilation[1] == conv.padding[0] == conv.padding[1]
            and conv.padding_mode == "zeros" and w.dtype == torch.float32):
        return None
    return w.detach().permute(2, 3, 1, 0).reshape(9, w.shape[1], w.shape[0]).contiguous()


def conv_modes(taps: Optional[torch.Tensor]) -> list:
    """The ways of running a compiled form's small conv here: PyTorch's ("library"), oneDNN's
    called directly where PyTorch would take its own path ("onednn"), the kernels' conv3x3
    ("native", with its ``taps``)."""
    onednn = hasattr(torch, "mkldnn_convolution") and torch.backends.mkldnn.is_available()
    return ["library"] + ["onednn"] * onednn + ["native"] * (taps is not None)


def small_conv(conv: nn.Conv2d, taps: Optional[torch.Tensor], mode: str, s: torch.Tensor) -> torch.Tensor:
    """``conv`` (a compiled form's small conv) of ``s`` (B, H, W, c) in ``mode``, as (B, H, W, c)."""
    if mode == "native":
        B, H, W, c = s.shape
        z = s.new_empty(s.shape)
        if native.load().conv3x3(s.data_ptr(), B, H, W, c, conv.dilation[0], taps.data_ptr(), _ptr(conv.bias),
                                 z.data_ptr()):
            raise MemoryError("a compiled kernel could not allocate its scratch memory")
        return z
    m = s.permute(0, 3, 1, 2)
    if mode == "onednn":
        z = torch.mkldnn_convolution(m, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, conv.groups)
    else:
        z = F.conv2d(m, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return z.permute(0, 2, 3, 1).contiguous()


class InplaceGC(_WeightsTaken, _ReLUAfter, GC):
    """GC multiplying each calibrated group where it lies (the input is a block temporary);
    ``native`` (a :class:`NativeGC`, set by the conversion where it timed faster): all four
    calibrators in the compiled kernels' two passes, for the frames those take."""

    native: Optional["NativeGC"] = None
    # bn_after (a submodule, absent by default): the block's BN after GC, moved here with the
    # kernels (GC-GST), applied after the gates (in the kernels' pass when they run)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.native is not None and not _exporting() and self.native.takes(x, T):
            return library.run_(self.native, x, T)  # the BN after, if any, and the ReLU applied in the same pass
        if _functional():
            x = super().forward(x, T)
        else:
            N, C, H, W = x.shape
            v = x.view(N // T, T, C, H, W)
            for k, (a, b) in zip(self.calibrators, self.slices):
                g = v[:, :, a:b]
                g.mul_(getattr(self, k).gate(g))
        after = getattr(self, "bn_after", None)
        return self._relu(x if after is None else after(x))


class NativeGC(_Form):
    """GC's calibrators (all four: L, T, S, G) as :mod:`zoo.deploy.native`'s kernels run them on
    fp32 channels-last frames, in place: one pass for the T, S and G groups' means, their gates
    (ECal-S's dilated conv PyTorch's, oneDNN's or the kernels', as timed at conversion), one
    pass that gates every group, with ECal-L's temporal conv computed in registers on the way.
    The kernels' weight layouts are taken from the module's (folded) weights at conversion."""

    def __init__(self, gc: GC):
        c = gc.channels // gc.groups
        self.c, self.channels = c, gc.channels
        self.offsets = {k: a for k, a, _ in gc.plan if k}
        conv = gc.l.conv
        self.wL = conv.weight.detach().reshape(c, c, 3).permute(2, 1, 0).contiguous()  # [tap][in][out]
        self.bL = conv.bias.detach().contiguous() if conv.bias is not None else conv.weight.new_zeros(c)
        self.wT, self.bT = gc.t.conv.weight.detach().permute(2, 0, 1).contiguous(), _detached(gc.t.conv.bias)
        self.wG, self.bG = gc.g.fc.weight.detach().contiguous(), _detached(gc.g.fc.bias)
        self.s = gc.s.conv
        self.s_mode = "library"  # ECal-S's conv: one of conv_modes(self.s), timed at conversion
        self.wS = _taps3x3(self.s)
        self.scale = self.shift = None
        self.relu = False  # the block's ReLU after, in the gating pass
        self._bind()

    def s_conv(self, sS: torch.Tensor) -> torch.Tensor:
        """ECal-S's conv (before its sigmoid) of the means ``sS`` (B, H, W, c), as (B, H, W, c)."""
        return small_conv(self.s, self.wS, self.s_mode, sS)

    def take_bn(self, bn: nn.BatchNorm2d) -> None:
        """Apply the eval BatchNorm ``bn`` (channels of the whole feature) after the gates, in
        the same pass."""
        self.scale, self.shift = _bn_affine(bn)

    @staticmethod
    def supports(gc: GC) -> bool:
        """All four calibrators, their BNs folded, groups a whole number of the kernels' vectors."""
        if set(gc.calibrators) != set("ltsg"):
            return False
        vw, c, conv = native.vector_width(), gc.channels // gc.groups, gc.l.conv
        folded = all(getattr(gc, k).bn is None or isinstance(getattr(gc, k).bn, nn.Identity) for k in "ltg")
        weights = (conv.weight, gc.t.conv.weight, gc.g.fc.weight, gc.s.conv.weight)
        return bool(vw) and c % vw == 0 and folded and isinstance(conv, FrameConv3d) \
            and conv.kernel_size == (3, 1, 1) and conv.stride == (1, 1, 1) and conv.groups == 1 \
            and gc.s.conv.stride == (1, 1) and all(w.dtype == torch.float32 for w in weights)

    def takes(self, x: torch.Tensor, T: int) -> bool:
        return _takes(x, T) and x.shape[1] == self.channels

    def __call__(self, x: torch.Tensor, T: int) -> torch.Tensor:
        lib = native.load()
        N, C, H, W = x.shape
        B, HW, c, o = N // T, H * W, self.c, self.offsets
        sT, sS, sG = x.new_empty(B, T, c), x.new_empty(B, H, W, c), x.new_empty(B, c)
        lib.gc_pool(x.data_ptr(), B, T, HW, C, o["t"], o["s"], o["g"], c, sT.data_ptr(), sS.data_ptr(), sG.data_ptr())
        zS = self.s_conv(sS)
        gT, gG = x.new_empty(B, T, c), x.new_empty(B, c)
        lib.gc_gates(B, T, HW, c, sT.data_ptr(), sG.data_ptr(), zS.data_ptr(), self.wT.data_ptr(), _ptr(self.bT),
                     self.wG.data_ptr(), _ptr(self.bG), gT.data_ptr(), gG.data_ptr())
        if lib.gc_apply(x.data_ptr(), B, T, HW, C, o["l"], o["t"], o["s"], o["g"], c, gT.data_ptr(), zS.data_ptr(),
                        gG.data_ptr(), self.wL.data_ptr(), self.bL.data_ptr(), _ptr(self.scale), _ptr(self.shift),
                        int(self.relu)):
            raise MemoryError("GC's compiled kernel could not allocate its scratch memory")
        return x


def _detached(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.detach().contiguous()


def _ptr(t: Optional[torch.Tensor]):
    return None if t is None else t.data_ptr()


def tree_max(v: torch.Tensor, dim: int) -> torch.Tensor:
    """``v.amax(dim)`` as element-wise maxima of halves (exact). torch's max reduction over a
    middle axis (H, W of AIA's contexts) ran 3-5x slower than its mean over the same axis
    (AVX-512 EPYC); the maxima of halves are plain vectorised passes."""
    m = v
    while m.shape[dim] > 1:
        n = m.shape[dim]
        h = n // 2
        half = torch.maximum(m.narrow(dim, 0, h), m.narrow(dim, h, h))
        if n % 2:
            first = half.narrow(dim, 0, 1)
            torch.maximum(first, m.narrow(dim, n - 1, 1), out=first)
        m = half
    return m.squeeze(dim)


class InplaceAIAUnit(_WeightsTaken, _ReLUAfter, AIAUnit):
    """AIA gating the block temporary in place; ``tree``: the context axes whose max runs as
    :func:`tree_max` (timed at conversion)."""

    tree: frozenset = frozenset()
    native: Optional["NativeAIA"] = None  # the compiled form, where timed faster

    def context(self, v: torch.Tensor, dim: int) -> torch.Tensor:
        if dim not in self.tree or _functional():
            return super().context(v, dim)
        return torch.stack((tree_max(v, dim), v.mean(dim)), 2)

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.native is not None and not _exporting() and self.native.takes(x, T):
            return library.run_(self.native, x, T)
        if _functional():
            return self._relu(super().forward(x, T))
        N, C, H, W = x.shape
        v = x.view(N // T, T, C, H, W)
        v.mul_(self.gate(v))
        return self._relu(x)


class NativeAIA(_Form):
    """AIA's units (C, ST) and modules (CinST, STinC) as :mod:`zoo.deploy.native`'s kernels run
    them on fp32 channels-last frames, in place. C: the max and mean over the channels of each
    pixel, the 2 -> 1 3x3x3 gate conv by rows, the product. ST: one pass for the three axial
    contexts (max and mean over T, over H and over W), the three gate convs, each vectorised
    over the channels, and one pass applying the mean of the three gates. CinST: the C gate
    first, the ST contexts read x times it on the way. STinC: the C context reads x times the ST
    gate on the way, the C gate is applied. PyTorch runs about ten operators per C unit and
    thirty per ST unit. BNs folded; weights taken at conversion.

    The kernels keep the channels innermost; each ST gate's conv weights are permuted so that
    their last axis is the channel axis: the T gate convolves (C, H, W), the H gate (T, C, W) and
    the W gate (T, H, C), as in the authors' code."""

    # each ST gate's weight axes (channel, then the conv's three) -> (channel, outer, inner, C)
    ORDER = {"t": (0, 2, 3, 1), "h": (0, 1, 3, 2), "w": (0, 1, 2, 3)}

    def __init__(self, unit: AIAUnit):
        self.kind, self.w, self.bias, self.relu = unit.kind, {}, {}, False  # relu: the block's, in the last pass
        for k in "cthw":
            gate = getattr(unit, k)
            if gate is not None:
                w = gate.conv.weight.detach()[0]
                self.w[k] = (w.reshape(54) if k == "c" else w.permute(self.ORDER[k])).contiguous()
                self.bias[k] = float(gate.conv.bias) if gate.conv.bias is not None else 0.0
        self._bind()

    @staticmethod
    def supports(unit: AIAUnit) -> bool:
        """Every gate a folded :class:`DepthConv` in fp32; the ST gates need whole vectors of
        channels (checked per input)."""
        gates = [g for g in (unit.c, unit.t, unit.h, unit.w) if g is not None]
        return bool(native.vector_width()) and all(
            isinstance(g.conv, DepthConv) and (g.bn is None or isinstance(g.bn, nn.Identity))
            and g.conv.weight.dtype == torch.float32 for g in gates)

    def takes(self, x: torch.Tensor, T: int) -> bool:
        return _takes(x, T) and (self.kind == "c" or x.shape[1] % native.vector_width() == 0)

    def _scratch(self, x: torch.Tensor, T: int) -> tuple:
        """One buffer for the C context and gate, the ST contexts (max, mean) and gates of each
        axis; and the addresses of those parts."""
        N, C, H, W = x.shape
        nC = N * H * W
        nT, nH, nW = (0, 0, 0) if self.kind == "c" else (N // T * H * W * C, N * W * C, N * H * C)
        buf = x.new_empty(3 * nC + 3 * (nT + nH + nW))
        p = [buf.data_ptr()]
        for n in (2 * nC, nC, nT, nT, nH, nH, nW, nW, nT, nH):
            p.append(p[-1] + 4 * n)
        return buf, p

    def __call__(self, x: torch.Tensor, T: int, then: Optional["NativeAIA"] = None, given: Optional[tuple] = None):
        """Gate ``x`` in place. ``then``: a unit that runs next on the output (ST or STinC, after
        an ST or CinST unit): its ST contexts are read in this unit's last pass. ``given``: this
        unit's scratch (:meth:`_scratch`) with its ST contexts already there."""
        lib = native.load()
        N, C, H, W = x.shape
        B, w, bias, relu = N // T, self.w, self.bias, int(self.relu)
        buf, (ctx, gC, tm, ta, hm, ha, wm, wa, gT, gH, gW) = given or self._scratch(x, T)
        if given is None:
            if self.kind in ("c", "cinst"):
                lib.aia_c_ctx(x.data_ptr(), B, T, H, W, C, None, None, None, ctx)
                lib.aia_c_gate(ctx, B, T, H, W, w["c"].data_ptr(), bias["c"], gC)
                if self.kind == "c":
                    lib.aia_c_apply(x.data_ptr(), N * H * W, C, gC, relu)
                    return x
            if lib.aia_st_ctx(x.data_ptr(), gC if self.kind == "cinst" else None, None, None, None, B, T, H, W, C,
                              tm, ta, hm, ha, wm, wa):
                raise MemoryError("AIA's compiled kernel could not allocate its scratch memory")
        lib.aia_axial(tm, ta, B, H, W, C, w["t"].data_ptr(), bias["t"], gT)
        lib.aia_axial(hm, ha, B, T, W, C, w["h"].data_ptr(), bias["h"], gH)
        lib.aia_axial(wm, wa, B, T, H, C, w["w"].data_ptr(), bias["w"], gW)
        if self.kind == "stinc":
            lib.aia_c_ctx(x.data_ptr(), B, T, H, W, C, gT, gH, gW, ctx)
            lib.aia_c_gate(ctx, B, T, H, W, w["c"].data_ptr(), bias["c"], gC)
            lib.aia_c_apply(x.data_ptr(), N * H * W, C, gC, relu)
        elif then is not None:
            nxt = then._scratch(x, T)
            if lib.aia_st_ctx(x.data_ptr(), None, gT, gH, gW, B, T, H, W, C, *nxt[1][2:8]):
                raise MemoryError("AIA's compiled kernel could not allocate its scratch memory")
            return then(x, T, given=nxt)
        else:
            lib.aia_st_apply(x.data_ptr(), B, T, H, W, C, gT, gH, gW, relu)
        return x


class NativeAIAPair(_Form):
    """Two AIA units in sequence (``">"``), each its compiled form, the first an ST or CinST unit
    and the second an ST or STinC one: the first's last pass (its gates applied) reads the
    second's ST contexts on the way, one pass over the frames less (AIA's default, CinST ->
    STinC, reads them seven times instead of eight)."""

    def __init__(self, first: NativeAIA, second: NativeAIA):
        self.first, self.second = first, second
        self._bind()

    @staticmethod
    def supports(combo: AIACombo) -> bool:
        a, b = (getattr(getattr(combo, k), "native", None) for k in ("first", "second"))
        return combo.how == ">" and a is not None and b is not None and a.kind in ("st", "cinst") \
            and b.kind in ("st", "stinc")

    def takes(self, x: torch.Tensor, T: int) -> bool:
        return self.first.takes(x, T) and self.second.takes(x, T)

    def __call__(self, x: torch.Tensor, T: int) -> torch.Tensor:
        return self.first(x, T, then=self.second)


class InplaceAIACombo(_ReLUAfter, AIACombo):
    """With ``relu_after``: for ``">"`` the second unit applies the ReLU (the conversion sets its
    ``relu_after`` too). ``native``: both units' compiled forms as one (a :class:`NativeAIAPair`,
    set by the conversion where it timed faster)."""

    native: Optional[NativeAIAPair] = None

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.native is not None and not _exporting() and self.native.takes(x, T):
            return library.run_(self.native, x, T)
        if self.how == ">":
            return super().forward(x, T)
        if _functional():
            return self._relu(super().forward(x, T))
        N, C, H, W = x.shape
        v = x.view(N // T, T, C, H, W)
        v.mul_((self.first.gate(v) + self.second.gate(v)).mul_(0.5))
        return self._relu(x)


class InplaceSDA(_WeightsTaken, _ReLUAfter, SDA):
    """SDA whose gate is computed in the up-projection's output and multiplied there (or into
    the input, where the two layouts differ); ``native`` (a :class:`NativeSDA`, set by the
    conversion where it timed faster): the branches and the gate in the compiled kernels."""

    native: Optional["NativeSDA"] = None

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.native is not None and not _exporting() and self.native.takes(x, T):
            return library.run_(self.native, x, T)
        return self._relu(super().forward(x, T))

    def excite(self, x: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        if _functional():
            return super().excite(x, agg)
        g = self.bn2(self.up(agg)).sigmoid_()
        # the product in x's layout: a 1x1 conv of an NCHW map gives NCHW even when the frames
        # are channels-last, and the next conv would reorder it (conv3 1.3-1.6x slower)
        return g.mul_(x) if g.stride() == x.stride() else x.mul_(g)


def _windows(n_in: int, n_out: int) -> tuple:
    """Adaptive average pooling's windows from n_in to n_out positions: (starts, ends)."""
    return (torch.tensor([i * n_in // n_out for i in range(n_out)]),
            torch.tensor([-(-(i + 1) * n_in // n_out) for i in range(n_out)]))


class NativeSDA(_Form):
    """The four-branch SDA (global, pooled over T, pooled over the pixels, one local branch with
    a (3, 1, 1) conv: the paper's final lst + lt + ls + s122, any order) on fp32 channels-last
    frames, in place. The down-projection (PyTorch's or the kernels') and the pooled-over-T
    branch's 3x3 conv (PyTorch's, oneDNN's or the kernels') are each as timed at conversion;
    :mod:`zoo.deploy.native`'s kernels do the rest: one pass over the reduced frames for every
    branch's pooling (the ReLU applied as they are read), the two
    temporal convs in registers, the aggregation weights, and one pass that forms each pixel's
    weighted sum, the up-projection in registers and the gate product. PyTorch runs about sixty
    operators per module. Weights (BNs folded) are taken at conversion."""

    def __init__(self, sda: SDA):
        by = {type(b): b for b in sda.branches}
        g, lt, ls, loc = by[GlobalBranch], by[TimePooledBranch], by[SpacePooledBranch], by[LocalBranch]
        self.down, self.lt, self.local = sda.down, lt.conv, loc
        self.chunk, self.r, self.channels = sda.chunk, sda.down.out_channels, sda.up.out_channels
        self.wG, self.bG = g.conv.weight.detach().contiguous(), _bias(g.conv)
        self.wS, self.bS = ls.conv.weight.detach().permute(2, 1, 0).contiguous(), _bias(ls.conv)  # [tap][in][out]
        self.wL, self.bL = loc.conv.weight.detach().flatten(2).permute(2, 1, 0).contiguous(), _bias(loc.conv)
        self.wU, self.bU = sda.up.weight.detach().flatten(1).t().contiguous(), _bias(sda.up)  # [in][out]
        self.q = None if sda.query is None else sda.query.detach().reshape(-1).contiguous()
        self.lt_mode, self.wT = "library", _taps3x3(lt.conv)  # the pooled-over-T branch's conv: conv_modes(wT)
        d = sda.down  # the down-projection: "library", or "native" (the kernels' conv1x1) where wD is set
        self.down_mode = "library"
        self.wD = d.weight.detach().flatten(1).t().contiguous() if d.stride == (1, 1) and d.groups == 1 else None
        self.relu = False  # the block's ReLU after, in the gate's pass
        self._bind()

    _derived = ("_tconv", "_global", "_up", "_q", "_sizes")

    def _bind(self) -> None:
        # the kernels' arguments, as addresses (the tensors above hold the memory)
        self._tconv = (self.wS.data_ptr(), self.bS.data_ptr(), self.wL.data_ptr(), self.bL.data_ptr())
        self._global, self._up = (self.wG.data_ptr(), self.bG.data_ptr()), (self.wU.data_ptr(), self.bU.data_ptr())
        self._q = _ptr(self.q)
        self._sizes: dict = {}
        super()._bind()

    @staticmethod
    def supports(sda: SDA) -> bool:
        """One branch of each kind, the local one pooling space only with a (3, 1, 1) conv, the
        pixel-pooled one a size-3 conv, every BN folded, channels a whole number of vectors."""
        kinds = [type(b) for b in sda.branches]
        if sorted(k.__name__ for k in kinds) != sorted(k.__name__ for k in (
                GlobalBranch, TimePooledBranch, SpacePooledBranch, LocalBranch)):
            return False
        by = {type(b): b for b in sda.branches}
        loc, ls, vw = by[LocalBranch], by[SpacePooledBranch], native.vector_width()
        r, C = sda.down.out_channels, sda.up.out_channels
        folded = all(isinstance(m, nn.Identity) for m in [sda.bn1, sda.bn2] + [b.bn for b in sda.branches])
        weights = [sda.down.weight, sda.up.weight] + [b.conv.weight for b in sda.branches]
        return bool(vw) and r % vw == 0 and C % vw == 0 and folded and loc.pool[0] == 1 \
            and tuple(loc.conv.kernel_size) == (3, 1, 1) and ls.conv.kernel_size == (3,) \
            and all(w.dtype == torch.float32 for w in weights)

    def takes(self, x: torch.Tensor, T: int) -> bool:
        return _takes(x, self.chunk or T) and x.shape[1] == self.channels

    def down_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The down-projection of channels-last frames ``x``, channels-last."""
        if self.down_mode == "library":
            return self.down(x).contiguous(memory_format=torch.channels_last)
        N, C, H, W = x.shape
        y = x.new_empty(N, H, W, self.r).permute(0, 3, 1, 2)  # channels-last
        if native.load().conv1x1(x.data_ptr(), N * H * W, C, self.r, self.wD.data_ptr(), _ptr(self.down.bias),
                                 y.data_ptr()):
            raise MemoryError("SDA's compiled kernel could not allocate its scratch memory")
        return y

    def lt_conv(self, sT: torch.Tensor) -> torch.Tensor:
        """The pooled-over-T branch's conv (before its ReLU) of ``sT`` (B, H, W, r), as (B, H, W, r)."""
        return small_conv(self.lt, self.wT, self.lt_mode, sT)

    def _windows(self, H: int, W: int) -> tuple:
        """For frames H x W: the local map's size (h, w), then the addresses of its pooling
        windows, of the windows that bring it back, and of its rows' and columns' weights in
        the mean of the map brought back (the tensors kept here)."""
        if (H, W) not in self._sizes:
            h, w = self.local._size(H, W)
            up_h, up_w = _windows(h, H), _windows(w, W)
            uh, uw = torch.zeros(h), torch.zeros(w)
            for u, (starts, ends), n in ((uh, up_h, H), (uw, up_w, W)):
                for s, e in zip(starts.tolist(), ends.tolist()):
                    u[s:e] += 1.0 / (n * (e - s))
            kept = (*_windows(H, h), *_windows(W, w), *up_h, *up_w, uh, uw)
            self._sizes[H, W] = (h, w, [t.data_ptr() for t in kept], kept)
        return self._sizes[H, W]

    def __call__(self, x: torch.Tensor, T: int) -> torch.Tensor:
        lib, r = native.load(), self.r
        T = self.chunk or T
        N, C, H, W = x.shape
        B, HW = N // T, H * W
        h, w, (h0, h1, w0, w1, uh0, uh1, uw0, uw1, uh, uw), _ = self._windows(H, W)
        y = self.down_conv(x)
        # one scratch buffer: sT, then sF, mS, base (B*T*r each), sL, mL (B*T*h*w*r each), a (2*B)
        nT, nF, nL = B * HW * r, B * T * r, B * T * h * w * r
        buf = x.new_empty(nT + 3 * nF + 2 * nL + 2 * B)
        sT = buf[:nT].view(B, H, W, r)
        pF = buf.data_ptr() + 4 * nT
        pS, pB = pF + 4 * nF, pF + 8 * nF
        pL = pF + 12 * nF
        pM, pA = pL + 4 * nL, pL + 8 * nL
        lib.sda_branches(y.data_ptr(), B, T, H, W, r, h, w, h0, h1, w0, w1, sT.data_ptr(), pF, pL, *self._tconv, pS, pM)
        mT = self.lt_conv(sT)  # its ReLU in the kernel
        lib.sda_gate(x.data_ptr(), B, T, H, W, C, r, h, w, pF, *self._global, mT.data_ptr(), pS, pM, uh, uw,
                     self._q, uh0, uh1, uw0, uw1, *self._up, pB, pA, int(self.relu))
        return x


def _conv_hw(conv: nn.Conv2d, H: int, W: int) -> tuple:
    """A 2D conv's output size for H x W frames."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip((H, W), conv.kernel_size, conv.stride, conv.padding, conv.dilation))


def _bias(m: nn.Module) -> torch.Tensor:
    w = m.weight
    return m.bias.detach().contiguous() if m.bias is not None else w.new_zeros(w.shape[0])


def _whole(n: int, vw: int) -> int:
    """``n`` rounded up to whole vectors of ``vw`` floats."""
    return -(-n // vw) * vw


def _padded(w: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """``w`` with zeros appended along ``dim`` up to size ``n``, contiguous."""
    pad = list(w.shape)
    pad[dim] = n - w.shape[dim]
    return torch.cat((w, w.new_zeros(pad)), dim).contiguous()


def _parts(buf: torch.Tensor, sizes) -> list:
    """``buf`` cut into consecutive 1-D parts of ``sizes``."""
    return list(buf.split(list(sizes)))


class DeployedSTCConv(_WeightsTaken, STCConv):
    """STC's middle conv; ``native`` (a :class:`NativeSTC`, set by the conversion where it timed
    faster, together with ``bn_after``, the block's BN moved here, and the block's ReLU after it):
    around its two library convs, S_T's shifted input, the refinements and the concatenation in
    the compiled kernels, the BN and the ReLU applied in the same pass."""

    native: Optional["NativeSTC"] = None

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.native is not None and not _exporting() and self.native.takes(x, T):
            return library.run(self.native, x, T)
        y = super().forward(x, T)
        after = getattr(self, "bn_after", None)
        return y if after is None else torch.relu(after(y))


class NativeSTC(_Form):
    """STC's middle conv, the BN after it (the block's bn2) and the ReLU after that, on fp32
    channels-last frames: S_T's
    shifted input copied in one pass (the plain form copies the slice, then shifts a copy of it),
    S_T's 3x3 conv and T_S's temporal conv as the library runs them, the refinements' pooled
    inputs in one pass over both outputs, their small convs in PyTorch, and one pass that applies
    both gates, concatenates and applies the BN and the ReLU. The BN is read at conversion."""

    def __init__(self, stc: STCConv, bn: nn.BatchNorm2d):
        self.stc = stc
        self.scale, self.shift = _bn_affine(bn)
        conv, vw = stc.temporal, native.vector_width()
        self.wT = self.bT = None  # T_S's conv for the kernel: (3, 1, 1), c -> c channels, no padding in space
        st = conv.stride
        if conv.kernel_size == (3, 1, 1) and st[0] == 1 and st[1] == st[2] and tuple(conv.padding) == (1, 0, 0) \
                and conv.groups == 1 and vw \
                and conv.in_channels == conv.out_channels and conv.out_channels % vw == 0:
            self.wT = conv.weight.detach().flatten(2).permute(2, 1, 0).contiguous()  # [tap][in][out]
            self.bT = _bias(conv)
        # TR's gate for the kernel: c -> c channels, or STC-Light's c -> m -> c, m padded to mp
        # (whole vectors; zero weights for the padding, so that it stays zero through the ReLU)
        tr, sr = stc.tr, stc.sr
        self.wR = self.bR = self.wRr = self.bRr = None
        self.mR = 0
        if tr is not None and vw and tr.conv.out_channels % vw == 0:
            w = tr.conv.weight.detach().permute(2, 1, 0)  # [tap][in][out]
            if tr.reduce is not None:
                self.mR = _whole(tr.reduce.out_channels, vw)
                self.wRr, self.bRr = _padded(tr.reduce.weight.detach()[:, :, 0].t(), 1, self.mR), \
                    _padded(_bias(tr.reduce), 0, self.mR)
                w = _padded(w, 1, self.mR)
            self.wR, self.bR = w.contiguous(), _bias(tr.conv)
        # SR's conv: on STC-Light's reduction by the kernel, its input channels padded as TR's
        self.wSr = self.bSr = None
        self.mS = 0
        self.sr_weight = None if sr is None else sr.conv.weight
        if sr is not None and sr.reduce is not None and vw:
            self.mS = _whole(sr.reduce.out_channels, vw)
            self.wSr = _padded(sr.reduce.weight.detach().flatten(1).t(), 1, self.mS)
            self.bSr = _padded(_bias(sr.reduce), 0, self.mS)
            self.sr_weight = _padded(sr.conv.weight.detach(), 1, self.mS)
        self.sr_onednn = False  # SR's 3x3 conv as oneDNN's, where PyTorch would take its own slower path
        self._bind()

    _derived = ("_bn", "_wT", "_wR", "_wRr", "_wSr")

    def _bind(self) -> None:
        # the kernels' arguments, as addresses (the tensors above hold the memory)
        self._bn = (self.scale.data_ptr(), self.shift.data_ptr())
        self._wT = (self.wT.data_ptr(), self.bT.data_ptr()) if self.wT is not None else None
        self._wR = (self.wR.data_ptr(), self.bR.data_ptr()) if self.wR is not None else None
        self._wRr = (self.wRr.data_ptr(), self.bRr.data_ptr()) if self.wRr is not None else (None, None)
        self._wSr = (self.wSr.data_ptr(), self.bSr.data_ptr()) if self.wSr is not None else None
        super()._bind()

    def out_shape(self, shape: tuple) -> tuple:
        N, _, H, W = shape
        stc = self.stc
        return (N, stc.spatial.out_channels + stc.temporal.out_channels, *_conv_hw(stc.spatial, H, W))

    def sr_conv(self, p: torch.Tensor) -> torch.Tensor:
        c = self.stc.sr.conv
        if self.sr_onednn:
            return torch.mkldnn_convolution(p, self.sr_weight, c.bias, c.padding, c.stride, c.dilation, c.groups)
        return F.conv2d(p, self.sr_weight, c.bias, c.stride, c.padding, c.dilation, c.groups)

    @staticmethod
    def supports(stc: STCConv, bn) -> bool:
        """Both blocks, channels-last-friendly plain convs, an eval BatchNorm2d after."""
        return native.load() is not None and stc.spatial is not None and stc.temporal is not None \
            and _eval_bn(bn) and stc.spatial.weight.dtype == torch.float32

    def takes(self, x: torch.Tensor, T: int) -> bool:
        return _takes(x, T)

    def __call__(self, x: torch.Tensor, T: int) -> torch.Tensor:
        lib, stc, cl = native.load(), self.stc, torch.channels_last
        N, C, H, W = x.shape
        B, cs = N // T, stc.s_in
        xs = torch.empty(N, cs, H, W, memory_format=cl)
        lib.stc_shift(x.data_ptr(), B, T, H * W, C, cs, cs // stc.shift_div if stc.shift else 0, xs.data_ptr())
        sp = stc.spatial
        ys = F.conv2d(xs, sp.weight, sp.bias, sp.stride, sp.padding).contiguous(memory_format=cl)
        os_, h, w = ys.shape[1], ys.shape[2], ys.shape[3]
        ot, n = stc.temporal.out_channels, h * w
        # one scratch buffer: SR's pooled input and its reduction, TR's pooled input, its
        # reduction and its gate, T_S's output (the kernel's)
        sizes = (B * n * ot, B * n * self.mS, B * T * os_, B * T * self.mR, B * T * os_,
                 N * n * ot if self.wT is not None else 0)
        buf = x.new_empty(sum(sizes))
        pS, rS, pT, rT, gT, yt = _parts(buf, sizes)
        pS = pS.view(B, h, w, ot).permute(0, 3, 1, 2)
        pT = pT.view(B, T, os_)
        if self.wT is not None:  # the temporal conv in registers, SR's pool on the way
            yt = yt.data_ptr()
            lib.stc_temporal(x.data_ptr(), B, T, H, W, C, stc.temporal.stride[1], cs, ot, *self._wT, yt, pS.data_ptr())
        else:
            kept = stc.temporal(x[:, cs:], T).contiguous(memory_format=cl)
            yt = kept.data_ptr()
        lib.stc_pools(ys.data_ptr(), yt, B, T, n, os_, ot, pT.data_ptr(),
                      None if self.wT is not None else pS.data_ptr())
        if self.wR is not None:
            lib.stc_tr_gate(pT.data_ptr(), B, T, os_, self.mR, *self._wRr, _ptr(rT), *self._wR, gT.data_ptr())
        elif stc.tr is not None:  # TemporalRefine on its pooled input (B, C, T)
            p = pT.transpose(1, 2)
            if stc.tr.reduce is not None:
                p = F.relu(stc.tr.reduce(p))
            gT = torch.sigmoid(stc.tr.conv(p)).transpose(1, 2).contiguous()
        else:
            gT = None
        gS = None
        if stc.sr is not None:  # SpatialRefine on its pooled input (B, C, h, w)
            p = pS
            if self.wSr is not None:
                lib.stc_sr_reduce(pS.data_ptr(), B, n, ot, self.mS, *self._wSr, rS.data_ptr())
                p = rS.view(B, h, w, self.mS).permute(0, 3, 1, 2)
            elif stc.sr.reduce is not None:
                p = F.relu(stc.sr.reduce(p))
            gS = torch.sigmoid(self.sr_conv(p)).contiguous(memory_format=cl)
        out = torch.empty(N, os_ + ot, h, w, memory_format=cl)
        lib.stc_join(ys.data_ptr(), yt, B, T, n, os_, ot, _ptr(gT), _ptr(gS),
                     *self._bn, out.data_ptr())
        return out


class DeployedGSTConv(_WeightsTaken, GSTConv):
    """GST's middle conv; ``native`` (a :class:`NativeGST`, set by the conversion where it timed
    faster): after its two library convs, the temporal taps' sums, the concatenation and, where
    ``relu_after`` (bn2 folded away, no calibrator between), the block's ReLU in one pass."""

    native: Optional["NativeGST"] = None
    relu_after = False

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if _exporting():
            return super().forward(x, T)  # the block applies its ReLU itself (_OwnReLU)
        if self.native is not None and self.native.takes(x, T):
            return library.run(self.native, x, T)
        y = super().forward(x, T)
        return y.relu_() if self.relu_after else y


class NativeGST(_Form):
    """GST's middle conv on fp32 channels-last frames: the spatial conv and the temporal conv's
    three taps as one 2D conv (the plain form's), both the library's; then one compiled pass
    (``gst_join``) sums each frame's taps from its neighbours, concatenates, adds the temporal
    conv's bias and applies the block's ReLU where the conv took it over. The taps' 2D kernel
    is built at conversion."""

    def __init__(self, gst: GSTConv):
        self.gst = gst
        t = gst.temporal
        self.taps = t.frame_weight().detach().contiguous(memory_format=torch.channels_last)
        self.bias = _detached(t.bias)
        self._bind()

    def out_shape(self, shape: tuple) -> tuple:
        g = self.gst
        return (shape[0], g.spatial.out_channels + g.temporal.out_channels, *_conv_hw(g.spatial, *shape[2:]))

    @staticmethod
    def supports(gst: GSTConv) -> bool:
        t = gst.temporal
        return native.load() is not None and t.groups == 1 and t.kernel_size[0] == 3 and t.padding[0] == 1 \
            and t.stride[0] == 1 and gst.spatial.weight.dtype == t.weight.dtype == torch.float32

    def takes(self, x: torch.Tensor, T: int) -> bool:
        return _takes(x, T)

    def __call__(self, x: torch.Tensor, T: int) -> torch.Tensor:
        g, cl = self.gst, torch.channels_last
        xs, xt = (x, x) if g.beta == 1.0 else (x[:, :g.s_in], x[:, g.s_in:])
        sp, t = g.spatial, g.temporal
        ys = F.conv2d(xs, sp.weight, sp.bias, sp.stride, sp.padding).contiguous(memory_format=cl)
        a = F.conv2d(xt, self.taps, None, t.stride[1:], t.padding[1:]).contiguous(memory_format=cl)
        N, cs, h, w = ys.shape
        out = torch.empty(N, cs + t.out_channels, h, w, memory_format=cl)
        native.load().gst_join(ys.data_ptr(), a.data_ptr(), N // T, T, h * w, cs, t.out_channels, _ptr(self.bias),
                               int(g.relu_after), out.data_ptr())
        return out


def channels_inner(x: torch.Tensor) -> bool:
    """Channels-last frames, or a channel slice of them (channel stride 1, rows of frames)."""
    return x.dim() == 4 and x.stride(1) == 1 and x.shape[1] > 1 and x.stride(3) >= x.shape[1] \
        and x.stride(2) == x.shape[3] * x.stride(3) and x.stride(0) == x.shape[2] * x.stride(2)


class DeployedECalS(ECalS):
    """ECal-S whose mean over T keeps a channels-inner input's layout: reduced as
    (B, T, H, W, c), the output comes out channels-last; reduced as (B, T, c, H, W), torch
    writes an NCHW output across the input's layout (4-8x slower for GC's slices of channels-last
    frames, AVX-512 EPYC)."""

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        if _functional() or not channels_inner(x.flatten(0, 1)):  # a view: GC's groups are slices of frames
            return super().gate(x)
        m = x.permute(0, 1, 3, 4, 2).mean(1).permute(0, 3, 1, 2)
        return torch.sigmoid(self.conv(m)).unsqueeze(1)


class _FusedJoin:
    """A block whose residual join (``out += identity``, then the ReLU) may run as ATen's
    ``_add_relu_``: one pass over the block's output instead of two (``fused_join``, timed at
    conversion for the block's output)."""

    fused_join = False

    def _join(self, out: torch.Tensor, identity: torch.Tensor, T: int) -> torch.Tensor:
        if not self.fused_join or self.drop_path is not None or _functional() or not joins_fused(out, identity):
            return super()._join(out, identity, T)
        torch.ops.aten._add_relu_(out, identity)
        return self._calib(out, T, "out")


def joins_fused(out: torch.Tensor, identity: torch.Tensor) -> bool:
    """Whether ATen's ``_add_relu_`` takes these (CPU, fp32/fp64 only in torch 2.14)."""
    return out.device.type == "cpu" and out.dtype in (torch.float32, torch.float64) and out.shape == identity.shape \
        and out.dtype == identity.dtype and hasattr(torch.ops.aten, "_add_relu_")


class _OwnReLU:
    """A block whose middle conv (STC's compiled form, with the BN after it; GST's, with bn2
    folded away) or calibrator (an in-place gate with ``relu_after``) applies the ReLU after bn2:
    the block then skips its own."""

    def _relu2(self, out: torch.Tensor) -> torch.Tensor:
        return out if not _exporting() and self._relu_done() else super()._relu2(out)

    def _relu_done(self) -> bool:
        if self.calib is not None and self.calib_at in ("conv2", "bn2"):  # the calibrator is last before it
            return getattr(self.calib, "relu_after", False) and (
                self.calib_at == "bn2" or isinstance(self.bn2, nn.Identity))
        return isinstance(self.bn2, nn.Identity) and (
            getattr(self.conv2, "bn_after", None) is not None or getattr(self.conv2, "relu_after", False))


class DeployedBottleneck(_OwnReLU, _FusedJoin, Bottleneck):
    """With its shift in mode ``"lent"``: the block input, which the block owns, is shifted in
    place by the compiled kernel for conv1 and not shifted back; the join reads the shifted
    channels back from the neighbouring frames (``tsm_join``, with the ReLU). One pass over the
    shifted channels instead of three (save, shift, restore) and one pass for the join.
    Compiled, a block with a downsample does not lend: its shift runs as ``"inplace"``.

    ``hand_to`` (the next block of the stage, lent too; set where timed faster): the join writes
    its output already shifted for that block (``tsm_join_shift``) and hands it the channels the
    shift drops, so that the next block shifts nothing. A forward hook on this block then sees
    its output shifted; the stage's output never is (the last block of a stage hands nothing)."""

    hand_to: Optional["DeployedBottleneck"] = None
    _given: Optional[tuple] = None  # (input, saved channels) handed over by the block before

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        given, self._given = self._given, None
        if getattr(self.shift, "mode", None) != "lent" or not self._lends(x, T):
            return super().forward(x, T)
        if self.downsample is not None and torch.compiler.is_compiling():
            # compiled, x is read by the downsample and written by the lend, so the functionalized
            # graph lends a copy of the whole stage input (TSM-R50 ran 1.03x slower for the four
            # on a Zen 4 EPYC); the shift and conv1 as one call (conv_form) leave x as it was
            return super().forward(x, T)
        f = x.shape[1] // self.shift.fold_div
        if self.downsample is not None:  # x is not needed after conv1: nothing to read back
            identity = self.downsample(x)
            library.tsm_lend_(x, T, f, False)
            out = self._after_conv1(self.conv1(x), T)
            handed = self._hand(out, identity, None, 0, T)
            return handed if handed is not None else self._join(out, identity, T)
        if given is not None and given[0] is x:  # shifted by the block before
            saved = given[1]
        else:
            saved = library.tsm_lend_(x, T, f, True)
        out = self._after_conv1(self.conv1(x), T).contiguous(memory_format=torch.channels_last)
        handed = self._hand(out, x, saved, f, T)
        if handed is not None:
            return handed
        return self._calib(library.tsm_join_(out, x, saved, T, f), T, "out")

    def hand(self, block: Optional["DeployedBottleneck"]) -> None:
        """Set ``hand_to`` without registering ``block`` as a submodule of this one."""
        object.__setattr__(self, "hand_to", block)

    def _hand(self, out: torch.Tensor, identity: torch.Tensor, saved, f: int, T: int) -> Optional[torch.Tensor]:
        """The join shifting its output for ``hand_to`` (None where it cannot: the output is then
        still to be joined)."""
        nxt, cl = self.hand_to, torch.channels_last
        if nxt is None or torch.compiler.is_compiling() or (self.calib is not None and self.calib_at == "out") \
                or not nxt._lends(out, T) or getattr(nxt.shift, "mode", None) != "lent" \
                or not out.is_contiguous(memory_format=cl) or not identity.is_contiguous(memory_format=cl) \
                or identity.shape != out.shape or identity.dtype != out.dtype:
            return None
        N, C, H, W = out.shape
        fo = C // nxt.shift.fold_div
        so = out.new_empty(N // T, H * W, 2 * fo)
        if native.load().tsm_join_shift(out.data_ptr(), identity.data_ptr(), N // T, T, H * W, C, f,
                                        None if saved is None else saved.data_ptr(), fo, so.data_ptr()):
            raise MemoryError("TSM's compiled join could not allocate its scratch memory")
        nxt._given = (out, so)
        return out

    def _lends(self, x: torch.Tensor, T: int) -> bool:
        return not _exporting() and self.drop_path is None and native.load() is not None and _takes(x, T) \
            and _plain_1x1(self.conv1)


class DeployedBasicBlock(_FusedJoin, BasicBlock):
    pass


class _KeptMapsCopied:
    """A deployed video ResNet: the stage maps ``forward_intermediates`` keeps while later stages
    run are copies, since a lent block shifts its input (the previous stage's map) in place."""

    def _kept_map(self, m: torch.Tensor) -> torch.Tensor:
        return m.clone()


class DeployedVideoResNet(_KeptMapsCopied, VideoResNet):
    pass


class DeployedTDNResNet(_KeptMapsCopied, TDNResNet):
    pass


_INPLACE = {GC: InplaceGC, AIAUnit: InplaceAIAUnit, AIACombo: InplaceAIACombo, SDA: InplaceSDA, ECalS: DeployedECalS,
            STCConv: DeployedSTCConv, GSTConv: DeployedGSTConv,
            Bottleneck: DeployedBottleneck, BasicBlock: DeployedBasicBlock,
            VideoResNet: DeployedVideoResNet, TDNResNet: DeployedTDNResNet}


# -- kernels with a measured choice ---------------------------------------------------------

class DeployedConv1x1(Conv1x1):
    """A 1x1 conv run as ``"conv"`` (the library conv) or ``"bmm"`` (one batched product per
    frame batch, reading a channel slice where it lies)."""

    mode = "conv"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode != "bmm" or x.dim() != 4 or x.stride(-1) != 1 or _functional():
            return F.conv2d(x, self.weight, self.bias, self.stride)
        if self.stride[0] > 1:
            x = x[:, :, ::self.stride[0], ::self.stride[1]]
        N, C, H, W = x.shape
        O = self.out_channels
        w = self.weight.reshape(O, C).expand(N, O, C)
        if self.bias is None:
            y = torch.bmm(w, x.reshape(N, C, H * W))
        else:
            y = torch.baddbmm(self.bias.view(1, O, 1).expand(N, O, H * W), w, x.reshape(N, C, H * W))
        return y.view(N, O, H, W)


def temporal_conv(x: torch.Tensor, taps: torch.Tensor, bias=None) -> torch.Tensor:
    """A temporal convolution (kernel k, zero padding k // 2) of per-frame channel vectors:
    x (B, T, C, L) with each frame's (C, L) block contiguous, ``taps`` (k, O, C), ``bias`` (O,)
    or None -> a new (B, T, O, L). Each tap's product accumulates straight into the output
    frames it feeds (k products into one buffer: no k*O-channel intermediate)."""
    B, T, C, L = x.shape
    k, O = taps.shape[:2]
    p = k // 2
    f = x.reshape(B * T, C, L)
    y = torch.bmm(taps[p].expand(B * T, O, C), f)
    if bias is not None:
        y += bias.view(1, O, 1)
    y = y.view(B, T, O, L)
    f = f.view(B, T, C, L)
    for i in range(k):
        d = i - p  # output frame t reads input frame t + d
        for b in range(B):
            if 0 < -d < T:
                y[b, -d:].baddbmm_(taps[i].expand(T + d, O, C), f[b, :d])
            elif 0 < d < T:
                y[b, :-d].baddbmm_(taps[i].expand(T - d, O, C), f[b, d:])
    return y


def temporal_rows(x: torch.Tensor, T: int, weight: torch.Tensor, bias=None) -> torch.Tensor:
    """A (k, 1, 1) convolution over T (zero padding k // 2) of channels-inner frames (B*T, C, H, W)
    (:func:`channels_inner`: channels-last, or a channel slice of it, read where it lies):
    one matrix product per tap on the frames' rows of channels, each tap's accumulating into
    the output rows of the frames it feeds. Returns channels-last (B*T, O, H, W)."""
    N, C, H, W = x.shape
    O, k, L = weight.shape[0], weight.shape[2], H * W
    X = x.as_strided((N * L, C), (x.stride(3), 1))
    taps = weight.reshape(O, C, k)
    p = k // 2
    y = torch.mm(X, taps[:, :, p].t()) if bias is None else torch.addmm(bias, X, taps[:, :, p].t())
    for i in range(k):
        d = i - p  # output frame t reads input frame t + d
        if d == 0 or abs(d) >= T:
            continue
        for r in range(0, N * L, T * L):  # clips: no product crosses a clip border
            if d < 0:
                y[r - d * L:r + T * L].addmm_(X[r:r + (T + d) * L], taps[:, :, i].t())
            else:
                y[r:r + (T - d) * L].addmm_(X[r + d * L:r + T * L], taps[:, :, i].t())
    return y.view(N, H, W, O).permute(0, 3, 1, 2)


class DeployedFrameConv3d(FrameConv3d):
    """:class:`FrameConv3d` at inference: the taps' sums accumulate into the centre tap's
    output where it lies (no padded copies). For a (k, 1, 1) kernel: ``mode="taps"``
    (:func:`temporal_conv`'s per-tap products on NCHW frames) or ``"rows"`` (:func:`temporal_rows`
    on channels-inner frames) instead of one 2D conv over all taps."""

    mode = "conv"

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:  # type: ignore[override]
        kt = self.kernel_size[0]
        N, g, o = x.shape[0], self.groups, self.out_channels
        if _functional():
            return super().forward(x, T)
        if self.mode == "rows" and channels_inner(x) and x.dtype in (torch.float32, torch.float64):
            return temporal_rows(x, T, self.weight, self.bias)
        if self.mode == "taps" and x.stride(-1) == 1:
            H, W = x.shape[-2:]
            taps = self.weight.view(o, self.in_channels, kt).permute(2, 0, 1)
            return temporal_conv(x.reshape(N // T, T, -1, H * W), taps, self.bias).view(N, o, H, W)
        if kt == 1 or g != 1:
            return super().forward(x, T)
        a = F.conv2d(x, self.frame_weight(), None, self.stride[1:], self.padding[1:])
        h, wd = a.shape[-2:]
        a = a.view(N // T, T, kt, o, h, wd)
        p = kt // 2
        out = a[:, :, p]
        for k in range(kt):
            d = k - p
            if 0 < -d < T:
                out[:, -d:] += a[:, :d, k]
            elif 0 < d < T:
                out[:, :-d] += a[:, d:, k]
        if self.bias is not None:
            out += self.bias.view(1, 1, o, 1, 1)
        return out.reshape(N, o, h, wd)


def _banded(weight: torch.Tensor, bias: torch.Tensor, D: int) -> tuple:
    """AIA's (1, 2, 3, 3, 3) gate kernel as a (D, 2*D, 3, 3) 2D kernel over D depth slices of
    2 channels each (input channel 2*s + c), and its bias repeated D times."""
    band = weight.new_zeros((D, D, 2, 3, 3))
    d = torch.arange(D, device=weight.device)
    for k in range(3):
        s = d + k - 1
        ok = (s >= 0) & (s < D)
        band[d[ok], s[ok]] = weight[0, :, k]
    return band.view(D, 2 * D, 3, 3), bias.expand(D).contiguous()


class DeployedAxialGate(AxialGate):
    """AIA's gate (BN folded into the conv) with ``band`` set: the depth slices become the
    channels of one 2D conv from 2*D to D channels with a banded kernel (slice d reads slices
    d-1..d+1): D/3 times the multiply-adds, but a 2-channel conv runs far below the library's
    peak, so which is faster depends on D, H, W and the machine (timed at conversion)."""

    band: Optional[tuple] = None

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        B, D, _, H, W = ctx.shape
        if self.band is not None and self.band[0].shape[0] == D:
            return F.conv2d(ctx.reshape(B, 2 * D, H, W), self.band[0], self.band[1], padding=1).sigmoid_()
        return super().forward(ctx)


def max_pool_separable(x: torch.Tensor, k: int, s: int, p: int) -> torch.Tensor:
    """``F.max_pool2d(x, k, s, p)`` as k-1 element-wise maxima over rows, then k-1 over columns
    (exact: a maximum does not round). PyTorch's CPU kernel for contiguous NCHW frames works
    one output at a time (18 ms for the ResNet stem's pool of 8 frames at 224 px, AVX-512 EPYC,
    where these maxima take 3 ms); channels-last frames have a vectorised kernel."""
    H, W = x.shape[-2:]
    Ho, Wo = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
    if p:
        x = F.pad(x, (p, p, p, p), value=float("-inf"))
    r = torch.maximum(x[..., 0:(Ho - 1) * s + 1:s, :], x[..., 1:(Ho - 1) * s + 2:s, :])
    for i in range(2, k):
        torch.maximum(r, x[..., i:i + (Ho - 1) * s + 1:s, :], out=r)
    out = torch.maximum(r[..., 0:(Wo - 1) * s + 1:s], r[..., 1:(Wo - 1) * s + 2:s])
    for i in range(2, k):
        torch.maximum(out, r[..., i:i + (Wo - 1) * s + 1:s], out=out)
    return out


class DeployedMaxPool(nn.MaxPool2d):
    """The stem's max pool as the library kernel (``"library"``) or :func:`max_pool_separable`
    (``"separable"``; square kernels of 2 or more, no dilation, floor mode, no indices)."""

    mode = "library"

    def separable_ok(self) -> bool:
        k, s, p = (self.kernel_size, self.stride, self.padding)
        return all(isinstance(v, int) for v in (k, s, p)) and k >= 2 and self.dilation in (1, (1, 1)) \
            and not self.ceil_mode and not self.return_indices

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode != "separable" or x.dim() != 4 or not x.is_floating_point() or _functional():
            return super().forward(x)
        return max_pool_separable(x, self.kernel_size, self.stride, self.padding)


class DeployedShiftConv(ShiftConv):
    """TDN's depthwise temporal conv as three per-channel multiply-adds on the frames where
    they lie (``mode="madd"``) or the library's depthwise conv (``"conv"``)."""

    mode = "conv"

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.mode != "madd" or not x.is_contiguous() or _functional():
            return super().forward(x, T)
        NT, C, H, W = x.shape
        v = x.view(NT // T, T, C, H * W)
        w = self.weight[:, 0].t().reshape(3, 1, 1, C, 1)  # tap k reads frame t + k - 1
        out = v * w[1]
        out[:, 1:].addcmul_(v[:, :-1], w[0])
        out[:, :-1].addcmul_(v[:, 1:], w[2])
        return out.view(NT, C, H, W)
