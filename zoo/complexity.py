"""Parameters and FLOPs with fvcore, plus an estimate of what fvcore leaves out.

fvcore counts one fused multiply-add as one FLOP (i.e. it reports MACs), the convention all five
papers use. It skips element-wise and pooling operators (sigmoid, products, additions, most pools,
means); those are listed with their call counts and an estimate of one operation per element
(per output element for element-wise ops, per input element for reductions and pools), so a
reader sees how much the headline number leaves out.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
import torch.nn as nn

__all__ = ["complexity", "Complexity", "count_params", "CONVENTION"]

CONVENTION = ("FLOPs by fvcore: one fused multiply-add = one FLOP (MACs), the papers' convention; "
              "element-wise ops, most pools and means are not counted (estimated separately).")

# ops fvcore reports as unsupported that we estimate, by which tensor's size counts
_PER_OUTPUT = ["sigmoid", "sigmoid_", "mul", "mul_", "add", "add_", "sub", "sub_", "rsub", "div", "div_",
               "exp", "tanh", "softmax", "_softmax", "hardsigmoid", "neg", "pow", "sqrt", "reciprocal",
               "clamp_min", "where", "abs", "log"]
_PER_INPUT = ["mean", "sum", "amax", "amin", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
              "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool3d", "adaptive_max_pool2d",
              "adaptive_max_pool3d", "max_pool1d", "std", "var", "logsumexp"]
_FREE = ["expand_as", "expand", "repeat_interleave", "roll", "pad"]  # layout / copies only
_MARK = "~"  # prefix of estimated (uncounted) operators in fvcore's by-operator counters


def count_params(model: nn.Module, trainable: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


def _numel(val) -> int:
    from fvcore.nn.jit_handles import get_shape

    shape = get_shape(val)
    return math.prod(shape) if shape else 0


@dataclass
class Complexity:
    name: str
    params: int
    flops: int                 # per view, fvcore convention
    views: int
    input_shape: tuple         # an ensemble: one shape per member
    by_operator: dict          # counted FLOPs per operator
    by_module: dict            # counted FLOPs per module (depth <= 2)
    uncounted: dict            # op -> {"calls": n, "estimate": flops}
    unhandled: dict            # op -> calls, neither counted nor estimated
    uncalled_modules: list = field(default_factory=list)

    @property
    def flops_total(self) -> int:
        return self.flops * self.views

    @property
    def uncounted_estimate(self) -> int:
        return sum(v["estimate"] for v in self.uncounted.values())

    @property
    def uncounted_share(self) -> float:
        est = self.uncounted_estimate
        return est / (self.flops + est) if self.flops + est else 0.0

    def as_dict(self) -> dict:
        return {"name": self.name, "params": self.params, "flops": self.flops, "views": self.views,
                "flops_total": self.flops_total, "input_shape": list(self.input_shape),
                "by_operator": self.by_operator, "by_module": self.by_module, "uncounted": self.uncounted,
                "uncounted_share": self.uncounted_share, "unhandled": self.unhandled,
                "uncalled_modules": self.uncalled_modules}

    def __str__(self) -> str:
        lines = [f"{self.name}: input {tuple(self.input_shape)}",
                 f"  params  {self.params / 1e6:.2f}M ({self.params:,})",
                 f"  FLOPs   {self.flops / 1e9:.2f}G per view ({self.flops:,})"
                 + (f" x {self.views} views = {self.flops_total / 1e9:.2f}G" if self.views > 1 else ""),
                 f"  {CONVENTION}"]
        if self.uncounted:
            lines.append(f"  not counted by fvcore (estimated {self.uncounted_estimate / 1e9:.3f}G, "
                         f"{self.uncounted_share:.2%} of counted+estimated):")
            for op, v in sorted(self.uncounted.items(), key=lambda kv: -kv[1]["estimate"]):
                lines.append(f"    {op:<22} calls {v['calls']:>4}  ~{v['estimate'] / 1e6:10.2f}M")
        if self.unhandled:
            lines.append(f"  other ops with no estimate: {dict(self.unhandled)}")
        lines.append("  by operator: " + ", ".join(f"{k} {v / 1e9:.3f}G" for k, v in self.by_operator.items()))
        return "\n".join(lines)


def _analysis(model: nn.Module, x: torch.Tensor):
    from fvcore.nn import FlopCountAnalysis

    fca = FlopCountAnalysis(model, (x,))
    calls: Counter = Counter()

    def handle(op: str, per_output: bool):
        def h(inputs, outputs):
            calls[op] += 1
            val = outputs[0] if per_output else inputs[0]
            return Counter({_MARK + op: _numel(val)})
        return h

    def free(op: str):
        def h(inputs, outputs):
            calls[op] += 1
            return Counter({_MARK + op: 0})
        return h

    handles = {f"aten::{op}": handle(op, True) for op in _PER_OUTPUT}
    handles.update({f"aten::{op}": handle(op, False) for op in _PER_INPUT})
    handles.update({f"aten::{op}": free(op) for op in _FREE})
    fca.set_op_handle(**handles)
    fca.unsupported_ops_warnings(False)
    fca.uncalled_modules_warnings(False)
    fca.tracer_warnings("none")
    return fca, calls


def complexity(model_or_name: Union[nn.Module, str], num_frames: Optional[int] = None,
               input_size: Optional[int] = None, views: int = 1, num_classes: Optional[int] = None,
               batch: int = 1, **kwargs) -> Complexity:
    """Trainable parameters and fvcore FLOPs of one view (batch 1), and x ``views``.

    ``model_or_name``: a module, or any registered name (built with ``num_classes`` and
    ``kwargs``). Frames and input size default to the entry's (else 8 and 224). FLOPs are
    for one clip; a view is one (crop, clip) pair of the test protocol. An ensemble (name or
    module) is the sum of its members, each measured at its own frame count."""
    if _is_ensemble(model_or_name):
        return _ensemble(model_or_name, num_frames, input_size, views, num_classes, batch, kwargs)
    if isinstance(model_or_name, str):
        from .factory import create_model

        name = model_or_name
        model = create_model(name, num_classes=num_classes, num_frames=num_frames, **kwargs)
    else:
        model = model_or_name
        name = (getattr(model, "pretrained_cfg", None) or {}).get("name", type(model).__name__)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    T = num_frames or cfg.get("frames") or getattr(model, "num_frames", 8)
    size = input_size or cfg.get("input_size") or 224
    size = size[-1] if isinstance(size, (tuple, list)) else size   # pretrained_cfg's (3, H, W)
    # families whose segments carry several frames (TDN) say how many
    fps = getattr(model, "frames_per_segment", 1)
    x = torch.randn(batch, 3, T * fps, size, size)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=FutureWarning)
            fca, calls = _analysis(model, x)
            by_op_all = fca.by_operator()
            by_mod_op = fca.by_module_and_operator()
            unsupported = dict(fca.unsupported_ops())
            uncalled = sorted(fca.uncalled_modules())
    finally:
        model.train(was_training)
    by_op = {k: v for k, v in by_op_all.items() if not k.startswith(_MARK)}
    uncounted = {k[1:]: {"calls": calls[k[1:]], "estimate": v} for k, v in by_op_all.items() if k.startswith(_MARK)}
    by_module = {}
    for mod, ops in by_mod_op.items():
        if mod.count(".") <= 1:
            by_module[mod or "(total)"] = sum(v for k, v in ops.items() if not k.startswith(_MARK))
    flops = sum(by_op.values())
    return Complexity(name=name, params=count_params(model), flops=int(flops), views=views,
                      input_shape=tuple(x.shape), by_operator=by_op, by_module=by_module,
                      uncounted=uncounted, unhandled=unsupported, uncalled_modules=uncalled)


def _is_ensemble(model_or_name) -> bool:
    if isinstance(model_or_name, str):
        from .registry import registry

        return model_or_name in registry().ensembles
    return hasattr(model_or_name, "member_names") and hasattr(model_or_name, "members")


def _ensemble(model_or_name, num_frames, input_size, views, num_classes, batch, kwargs) -> Complexity:
    """Members measured one by one, each on its own frames, and summed (the papers' "(8+16)" rows)."""
    if num_frames is not None or num_classes is not None or kwargs:
        raise TypeError("an ensemble's members have fixed frames, classes and kwargs: measure the members "
                        "to change them")
    if isinstance(model_or_name, str):
        from .registry import registry

        name, members = model_or_name, list(registry().ensembles[model_or_name].members)
    else:
        name = (getattr(model_or_name, "pretrained_cfg", None) or {}).get("name", type(model_or_name).__name__)
        members = list(zip(model_or_name.member_names, model_or_name.members))
    parts = []
    for m in members:
        if isinstance(m, tuple):
            label, module = m
            c = complexity(module, input_size=input_size, batch=batch)
            c.name = label
        else:
            c = complexity(m, input_size=input_size, batch=batch)
        parts.append(c)

    def add(dicts):
        out: dict = {}
        for d in dicts:
            for k, v in d.items():
                if isinstance(v, dict):
                    out[k] = {f: out.get(k, {}).get(f, 0) + x for f, x in v.items()}
                else:
                    out[k] = out.get(k, 0) + v
        return out

    by_module = {}
    for c in parts:
        by_module.update({f"{c.name}.{k}" if k != "(total)" else c.name: v for k, v in c.by_module.items()})
    by_module["(total)"] = sum(c.flops for c in parts)
    return Complexity(name=name, params=sum(c.params for c in parts), flops=sum(c.flops for c in parts),
                      views=views, input_shape=tuple(c.input_shape for c in parts),
                      by_operator=add(c.by_operator for c in parts), by_module=by_module,
                      uncounted=add(c.uncounted for c in parts), unhandled=add(c.unhandled for c in parts),
                      uncalled_modules=[f"{c.name}.{m}" for c in parts for m in c.uncalled_modules])
