"""The inference form of a zoo model: ``deploy(model, example_input)``.

The family modules have one forward, the one training, fvcore, tracing, export and
``torch.compile`` use. :func:`deploy` converts a copy of a model once (as timm's
``reparameterize_model`` and PyTorchVideo's ``convert_to_deployable_form``):

* every BatchNorm that follows a conv or linear is folded into it (the backbone's, the
  calibrators', the difference stem's) and replaced by ``nn.Identity``: the model holds one
  copy of the weights, the folded one;
* modules that gate a block temporary (GC, AIA, SDA) become their in-place forms;
* where two implementations compete for the same result (TSM's shift copied, done in place
  around the next conv, or fused into a 1x1 conv as products; a 1x1 conv as the library conv
  or a batched product; a (k, 1, 1) temporal conv as the library conv or tap products; AIA's
  2-channel gate conv or its banded form; TDN's shift conv or three multiply-adds), each runs
  on this machine for the shapes the example input produces and the fastest is kept. Timings
  are cached per machine, torch version, thread count, dtype and shape (``~/.cache/zoo`` or
  ``$ZOO_CACHE``), as ``cudnn.benchmark`` does; ``autotune=False`` keeps the library kernels,
  deterministically, without timing anything.

The result is for inference only (``eval()``, no gradients); it traces and exports. Inputs of
other shapes still run (each choice checks its shapes and falls back to the library kernel).
"""
from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.aia import AIACombo, AIAUnit, AxialGate
from .models.conv3d import FrameConv3d, P3DConv
from .models.gc import GC, ECalG, ECalL, ECalS, ECalT
from .models.gst import GSTConv
from .models.ops import Conv1x1
from .models.resnet import BasicBlock, Bottleneck, VideoResNet
from .models.sda import SDA, _Branch
from .models.tdn import MotionExcitation, ShiftConv
from .models.temporal import TemporalShift, temporal_shift

__all__ = ["deploy", "deploy_default", "fold_bn", "Autotuner", "DeployedShift", "shift_conv1x1", "shift_", "unshift_",
           "temporal_conv", "is_deployed"]

_BN = nn.modules.batchnorm._BatchNorm


# -- kernel choices timed on this machine ---------------------------------------------------

def machine_id() -> str:
    """What a timing depends on besides the shapes: the processor, torch, the thread count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "-"
    return f"{cpu} | gpu {gpu} | torch {torch.__version__} | threads {torch.get_num_threads()}"


def _cache_dir() -> Path:
    if os.environ.get("ZOO_CACHE"):
        return Path(os.environ["ZOO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zoo"


class Autotuner:
    """Picks the fastest of several callables computing the same thing, once per
    (kind, shapes) on this machine; remembered in ``<cache_dir>/deploy-choices.json``.

    ``enabled=False``: the first candidate (the library kernel) every time, nothing timed."""

    def __init__(self, enabled: bool = True, cache_dir: Optional[os.PathLike] = None, rounds: int = 5):
        self.enabled, self.rounds = enabled, rounds
        self.path = Path(cache_dir or _cache_dir()) / "deploy-choices.json"
        self.machine = machine_id()
        self.choices: dict[str, str] = {}
        self._dirty = False
        if enabled:
            try:
                self.choices = json.loads(self.path.read_text()).get(self.machine, {})
            except (OSError, ValueError, AttributeError):
                self.choices = {}

    def choose(self, kind: str, key, candidates: dict[str, Callable[[], object]]) -> str:
        names = list(candidates)
        if not self.enabled or len(names) == 1:
            return names[0]
        k = f"{kind} {key}"
        if self.choices.get(k) in candidates:
            return self.choices[k]
        times = {n: self._time(fn) for n, fn in candidates.items()}
        best = min(names, key=times.get)
        self.choices[k] = best
        self._dirty = True
        return best

    def _time(self, fn) -> float:
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        with torch.no_grad():
            fn()  # warm-up: allocator, lazy init
            sync()
            ts = []
            for _ in range(self.rounds):
                t0 = time.perf_counter()
                fn()
                sync()
                ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    def save(self) -> None:
        """Merge this run's choices into the cache file (written to a temporary name, then renamed)."""
        if not (self.enabled and self._dirty):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                table = json.loads(self.path.read_text())
                if not isinstance(table, dict):
                    table = {}
            except (OSError, ValueError):
                table = {}
            table.setdefault(self.machine, {}).update(self.choices)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".deploy-choices.", suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(table, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only home: the choices hold for this model, and are timed again next time
        self._dirty = False


def _key(*tensors_or_shapes) -> str:
    parts = []
    for t in tensors_or_shapes:
        if isinstance(t, torch.Tensor):
            parts.append(f"{tuple(t.shape)}:{str(t.dtype)[6:]}:{t.device.type}")
        else:
            parts.append(str(t))
    return " ".join(parts)


def _functional() -> bool:
    """Being traced or exported to ONNX: the in-place forms give way to the plain ops there
    (TorchScript's ONNX exporter can turn writes into slices into constants)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


# -- BatchNorm folding -----------------------------------------------------------------------

def fold_bn(weight: torch.Tensor, bn: _BN, bias: Optional[torch.Tensor] = None):
    """(weight, bias) of a conv or linear (``bias`` or none) followed by ``bn`` in eval mode,
    as one layer. Computed in float32 at least, returned in ``weight``'s dtype."""
    dt = torch.promote_types(weight.dtype, torch.float32)
    scale = bn.weight.to(dt) * torch.rsqrt(bn.running_var.to(dt) + bn.eps)
    b = bn.bias.to(dt) - bn.running_mean.to(dt) * scale
    if bias is not None:
        b = b + bias.to(dt) * scale
    w = weight.to(dt) * scale.view(-1, *[1] * (weight.dim() - 1))
    return w.to(weight.dtype), b.to(weight.dtype)


def _foldable(layer: nn.Module) -> bool:
    if isinstance(layer, GSTConv):
        return True
    if isinstance(layer, P3DConv):
        return _foldable(layer.temporal)
    return isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and layer.weight is not None


def _fold_into(layer: nn.Module, bn: _BN) -> None:
    """Fold ``bn`` into ``layer`` (a conv, a linear, or a slot conv whose output channels are
    those of convs it holds)."""
    if isinstance(layer, P3DConv):
        return _fold_into(layer.temporal, bn)
    if isinstance(layer, GSTConv):
        s = layer.spatial.out_channels
        for part, sl in ((layer.spatial, slice(0, s)), (layer.temporal, slice(s, None))):
            sub = nn.BatchNorm1d(part.out_channels, eps=bn.eps).to(bn.running_mean)
            with torch.no_grad():
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(sub, name).copy_(getattr(bn, name)[sl])
            _fold_into(part, sub.eval())
        return
    with torch.no_grad():
        w, b = fold_bn(layer.weight, bn, layer.bias)
        layer.weight = nn.Parameter(w, requires_grad=False)
        layer.bias = nn.Parameter(b, requires_grad=False)


def _pairs(m: nn.Module) -> list:
    """(layer name, BN name) pairs of ``m`` whose BN directly follows the layer."""
    if isinstance(m, Bottleneck):
        p = [("conv1", "bn1"), ("conv3", "bn3")]
        if m.calib is None or m.calib_at != "conv2":
            p.append(("conv2", "bn2"))
    elif isinstance(m, BasicBlock):
        p = [("conv2", "bn2")]
        if m.calib is None or m.calib_at != "conv2":
            p.append(("conv1", "bn1"))
    elif isinstance(m, VideoResNet):
        p = [("conv1", "bn1")]
    elif isinstance(m, (ECalL, ECalT, _Branch, AxialGate, P3DConv)):
        p = [("spatial" if isinstance(m, P3DConv) else "conv", "bn")]
    elif isinstance(m, ECalG):
        p = [("fc", "bn")]
    elif isinstance(m, SDA):
        p = [("down", "bn1"), ("up", "bn2")]
    elif isinstance(m, MotionExcitation):
        p = [("conv1", "bn1"), ("conv_half", "bn_half"), ("conv_full", "bn_full"), ("conv3", "bn3")]
    elif isinstance(m, nn.Sequential):
        kids = list(m.named_children())
        p = [(a, b) for (a, la), (b, lb) in zip(kids, kids[1:]) if isinstance(lb, _BN)]
    else:
        # a calibrator ending in conv + BN (CBAM's gate conv, the non-local block's W), or a
        # stem module applying bn1 to conv1's output (TDN's difference stem)
        p = [(a, b) for a, b in (("conv", "bn"), ("W", "bn"), ("conv1", "bn1"))
             if isinstance(getattr(m, b, None), _BN) and isinstance(getattr(m, a, None), nn.Module)]
    return [(a, b) for a, b in p if isinstance(getattr(m, b, None), _BN) and _foldable(getattr(m, a))]


def fold_batchnorms(model: nn.Module) -> int:
    """Fold, in place, every eval BatchNorm that follows a conv or linear into it and put an
    ``nn.Identity`` in its place. Returns how many were folded."""
    n = 0
    for m in list(model.modules()):
        if isinstance(m, ECalS):
            m.bn = None  # the authors' ECal-S never applies its BN
        for a, b in _pairs(m):
            bn = getattr(m, b)
            if bn.running_mean is None or not bn.affine:
                continue
            _fold_into(getattr(m, a), bn)
            setattr(m, b, nn.Identity())
            n += 1
    return n


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


def shift_(x: torch.Tensor, T: int, fold_div: int = 8) -> torch.Tensor:
    """:func:`temporal_shift` in place on contiguous (B*T, C, H, W) frames; returns the
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


def _plain_1x1(conv) -> bool:
    return type(conv) in (nn.Conv2d, Conv1x1) and conv.kernel_size == (1, 1) \
        and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.groups == 1


class DeployedShift(TemporalShift):
    """TSM's shift with the way it meets the next conv fixed at conversion (``around``):
    ``"copy"`` (the plain shifted copy, then the conv), ``"inplace"`` (the block input shifted
    in place for the conv and shifted back: the block owns it while conv1 runs) or
    ``"fused"`` (:func:`shift_conv1x1`, for a 1x1 conv)."""

    MODES = ("copy", "inplace", "fused")

    def __init__(self, fold_div: int, mode: str):
        super().__init__(fold_div)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode

    def around(self, x: torch.Tensor, T: int, conv: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if _functional():
            return conv(temporal_shift(x, T, self.fold_div))
        if self.mode == "fused" and _plain_1x1(conv) and x.stride(-1) == 1:
            return shift_conv1x1(x, T, conv, self.fold_div)
        if self.mode == "inplace" and x.is_contiguous():
            kept = shift_(x, T, self.fold_div)
            try:
                return conv(x)
            finally:
                unshift_(x, T, kept, self.fold_div)
        return conv(temporal_shift(x, T, self.fold_div))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode!r}"


def _deploy_shift(block: nn.Module, x: torch.Tensor, T: int, tuner: Autotuner) -> None:
    shift = block.shift
    conv = block.conv1 if isinstance(block, Bottleneck) or not block._conv1_takes_t \
        else (lambda y: block.conv1(y, T))
    modes = ["copy"] + (["inplace"] if x.is_contiguous() else []) \
        + (["fused"] if _plain_1x1(block.conv1) and x.stride(-1) == 1 else [])
    forms = {m: DeployedShift(shift.fold_div, m) for m in modes}
    work = x.clone()
    name = f"{type(block.conv1).__name__}{tuple(block.conv1.weight.shape)}"
    mode = tuner.choose("shift", _key(x, T, shift.fold_div, name),
                        {m: (lambda f=f: f.around(work, T, conv)) for m, f in forms.items()})
    block.shift = forms[mode]


# -- in-place gates ---------------------------------------------------------------------------

class InplaceGC(GC):
    """GC multiplying each calibrated group where it lies (the input is a block temporary)."""

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if _functional():
            return super().forward(x, T)
        N, C, H, W = x.shape
        v = x.view(N // T, T, C, H, W)
        for k, (a, b) in zip(self.calibrators, self.slices):
            g = v[:, :, a:b]
            g.mul_(getattr(self, k).gate(g))
        return x


class InplaceAIAUnit(AIAUnit):
    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if _functional():
            return super().forward(x, T)
        N, C, H, W = x.shape
        v = x.view(N // T, T, C, H, W)
        v.mul_(self.gate(v))
        return x


class InplaceAIACombo(AIACombo):
    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:
        if self.how == ">" or _functional():
            return super().forward(x, T)
        N, C, H, W = x.shape
        v = x.view(N // T, T, C, H, W)
        v.mul_((self.first.gate(v) + self.second.gate(v)).mul_(0.5))
        return x


class InplaceSDA(SDA):
    """SDA whose gate is computed in the up-projection's output and multiplied there."""

    def excite(self, x: torch.Tensor, agg: torch.Tensor) -> torch.Tensor:
        if _functional():
            return super().excite(x, agg)
        return self.bn2(self.up(agg)).sigmoid_().mul_(x)


_INPLACE = {GC: InplaceGC, AIAUnit: InplaceAIAUnit, AIACombo: InplaceAIACombo, SDA: InplaceSDA}


# -- kernels with a measured choice ---------------------------------------------------------

class DeployedConv1x1(Conv1x1):
    """A 1x1 conv run as ``"conv"`` (the library conv) or ``"bmm"`` (one batched product per
    frame batch, reading a channel slice where it lies)."""

    mode = "conv"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode != "bmm" or x.dim() != 4 or x.stride(-1) != 1:
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


class DeployedFrameConv3d(FrameConv3d):
    """:class:`FrameConv3d` at inference: the taps' sums accumulate into the centre tap's
    output where it lies (no padded copies). ``mode="taps"`` (a (k, 1, 1) kernel only):
    :func:`temporal_conv`'s per-tap products instead of one 2D conv over all taps."""

    mode = "conv"

    def forward(self, x: torch.Tensor, T: int) -> torch.Tensor:  # type: ignore[override]
        kt = self.kernel_size[0]
        N, g, o = x.shape[0], self.groups, self.out_channels
        if _functional():
            return super().forward(x, T)
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


# -- the conversion ---------------------------------------------------------------------------

def _record(model: nn.Module, example_input: torch.Tensor, types: tuple) -> dict:
    """The first inputs each module of ``types`` receives on ``example_input`` (clones)."""
    seen: dict = {}
    hooks = []
    for m in model.modules():
        if isinstance(m, types):
            def hook(mod, args, m=m):
                if m not in seen:
                    seen[m] = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
            hooks.append(m.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            model(*example_input) if isinstance(example_input, tuple) else model(example_input)
    finally:
        for h in hooks:
            h.remove()
    return seen


def _time_module(m: nn.Module, args: tuple) -> Callable[[], object]:
    return lambda: m(*args)


def deploy(model: nn.Module, example_input, *, autotune=True, cache_dir: Optional[os.PathLike] = None,
           inplace: bool = False) -> nn.Module:
    """The inference form of ``model`` (a copy unless ``inplace``), in eval mode, with kernel
    choices fixed for ``example_input``'s shapes: a clip batch the model takes (or a tuple of
    the arguments of a slot module, e.g. ``(frames, T)``), on the device and in the dtype it
    will run in. ``autotune=False``: library kernels, nothing timed; an :class:`Autotuner`
    instance: its choices."""
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    fold_batchnorms(model)
    tuner = autotune if isinstance(autotune, Autotuner) else Autotuner(bool(autotune), cache_dir)
    for m in list(model.modules()):
        cls = _INPLACE.get(type(m))
        if cls is not None:
            m.__class__ = cls
    kinds = (Conv1x1, FrameConv3d, AxialGate, ShiftConv, Bottleneck, BasicBlock)
    seen = _record(model, example_input, kinds)
    with torch.no_grad():
        for m, args in seen.items():
            if isinstance(m, (Bottleneck, BasicBlock)):
                continue
            fn = _time_module(m, args)
            key = _key(*args, tuple((m.conv if isinstance(m, AxialGate) else m).weight.shape))
            if type(m) is Conv1x1:
                m.__class__ = DeployedConv1x1
                m.mode = tuner.choose("conv1x1", key, {"conv": _set(m, "conv", fn), "bmm": _set(m, "bmm", fn)})
            elif isinstance(m, FrameConv3d):
                m.__class__ = DeployedFrameConv3d
                modes = {"conv": _set(m, "conv", fn)}
                if m.kernel_size[1:] == (1, 1) and m.stride == (1, 1, 1) and m.groups == 1:
                    modes["taps"] = _set(m, "taps", fn)
                m.mode = tuner.choose("frameconv3d", key, modes)
            elif type(m) is AxialGate:
                m.__class__ = DeployedAxialGate
                D = args[0].shape[1]
                band = _banded(m.conv.weight, m.conv.bias, D)
                best = tuner.choose("aia_gate", key, {"conv": _set(m, None, fn, "band"),
                                                      "band": _set(m, band, fn, "band")})
                m.band = band if best == "band" else None
            elif type(m) is ShiftConv:
                m.__class__ = DeployedShiftConv
                m.mode = tuner.choose("shiftconv", key, {"conv": _set(m, "conv", fn), "madd": _set(m, "madd", fn)})
        for m, args in seen.items():
            if isinstance(m, (Bottleneck, BasicBlock)) and isinstance(m.shift, TemporalShift) \
                    and not isinstance(m.shift, DeployedShift):
                _deploy_shift(m, args[0], args[1], tuner)
    tuner.save()
    model.deployed = True
    return model


def deploy_default(model: nn.Module, **kw) -> nn.Module:
    """:func:`deploy` for one clip of the size the model was configured for (its
    ``pretrained_cfg``: frames and input size; 8 x 224 x 224 when it has none), on the device
    and in the dtype of its parameters (``create_model(..., deploy=True)``)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    T = (cfg.get("num_frames") or getattr(model, "num_frames", 8)) * (
        cfg.get("frames_per_segment") or getattr(model, "frames_per_segment", 1))
    H, W = (cfg.get("input_size") or (3, 224, 224))[-2:]
    p = next(model.parameters())
    return deploy(model, torch.randn(1, 3, T, H, W, dtype=p.dtype, device=p.device), **kw)


def _set(m: nn.Module, value, fn, attr: str = "mode"):
    """A timing candidate: ``m.<attr> = value``, then one call."""
    def go():
        setattr(m, attr, value)
        return fn()
    return go


def is_deployed(model: nn.Module) -> bool:
    return bool(getattr(model, "deployed", False))
