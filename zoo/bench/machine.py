"""The machine a run measured, for every results file: CPU model and vector extensions, cores,
memory, torch and its oneDNN/MKL versions, load, copy bandwidth, CPU time stolen by the
hypervisor, GPU."""
from __future__ import annotations

import os
import platform
import re
import statistics
import time
from typing import Optional

__all__ = ["machine", "cpu_info", "math_libraries", "copy_bandwidth", "cpu_times", "steal_share", "describe"]

# the vector extensions that decide which oneDNN/MKL kernels run
_VECTOR = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


def isa_caps() -> dict:
    """The environment variables set to cap ATen's, oneDNN's or MKL's kernels below what the CPU
    has (a capped run stands in for a CPU without the extensions, in its kernels only): the same
    caps that key zoo.deploy's kernel choices, plus ATen's own."""
    from ..deploy.choices import ISA_CAPS

    return {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", *ISA_CAPS) if os.environ.get(k)}


def cpu_info(path: str = "/proc/cpuinfo") -> dict:
    """{"cpu": model name, "family": "F model M" (x86; machines of one kind share a model name,
    e.g. "AMD EPYC" for family 25 with AVX2 and family 26 with AVX-512), "vector": [extensions
    among AVX2/AVX-512/AMX], "cores": physical cores}."""
    cpu, family, model, flags, cores = "", "", "", set(), set()
    try:
        with open(path) as f:
            phys = None
            for ln in f:
                key, _, val = ln.partition(":")
                key, val = key.strip(), val.strip()
                if key == "model name" and not cpu:
                    cpu = val
                elif key == "cpu family" and not family:
                    family = val
                elif key == "model" and not model:
                    model = val
                elif key == "flags" and not flags:
                    flags = set(val.split())
                elif key == "physical id":
                    phys = val
                elif key == "core id":
                    cores.add((phys, val))
    except OSError:
        pass
    return {"cpu": cpu or platform.processor(), "family": f"{family} model {model}" if family else None,
            "vector": [v for v in _VECTOR if v in flags], "cores": len(cores) or None}


def math_libraries() -> dict:
    """torch's oneDNN (MKL-DNN) and MKL versions, as its build configuration states them."""
    import torch

    text = torch.__config__.show()
    out = {"mkldnn": torch.backends.mkldnn.is_available(), "mkl": torch.backends.mkl.is_available()}
    m = re.search(r"MKL-DNN v([\w.]+)", text) or re.search(r"oneDNN v([\w.]+)", text)
    out["onednn_version"] = m.group(1) if m else None
    m = re.search(r"Math Kernel Library Version ([\d.]+)", text)
    out["mkl_version"] = m.group(1) if m else None
    m = re.search(r"CPU capability usage: (\w+)", text)
    out["cpu_capability"] = m.group(1) if m else None
    return out


def copy_bandwidth(mb: int = 64, repeats: int = 7) -> float:
    """GB/s of a large tensor copy (bytes read + bytes written), with the current threads: the
    bound for memory-bound ops such as gates, pools and the TSM shift."""
    import torch

    x = torch.empty(mb * 2**18)
    y = torch.empty_like(x)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        y.copy_(x)
        ts.append(time.perf_counter() - t0)
    return 2 * x.numel() * 4 / statistics.median(ts) / 1e9


def cpu_times(path: str = "/proc/stat") -> Optional[list]:
    """The machine's CPU time so far, in ticks: user, nice, system, idle, iowait, irq, softirq,
    steal; None where there is no /proc/stat."""
    try:
        with open(path) as f:
            fields = f.readline().split()
        return [int(v) for v in fields[1:9]] if fields and fields[0] == "cpu" and len(fields) >= 9 else None
    except (OSError, ValueError):
        return None


def steal_share(before: Optional[list], after: Optional[list]) -> Optional[float]:
    """The share of CPU time the hypervisor gave other guests between two :func:`cpu_times`:
    a host whose neighbours take this VM's cores shows it here; one whose neighbours take its
    caches and memory bandwidth does not (the copy bandwidth shows that)."""
    if not before or not after:
        return None
    d = [b - a for a, b in zip(before, after)]
    return d[7] / sum(d) if sum(d) > 0 else None


def machine(bandwidth: bool = True) -> dict:
    """The machine, in words and numbers, for the results file."""
    import torch

    info = cpu_info()
    d = {"cpu": info["cpu"], "family": info["family"], "vector": info["vector"], "cores": info["cores"], "logical_cpus": os.cpu_count(),
         "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
         **math_libraries(), "load_avg": os.getloadavg(),
         "isa_caps": isa_caps()}
    if bandwidth:
        d["copy_gbps"] = round(copy_bandwidth(), 1)
    try:
        with open("/proc/meminfo") as f:
            d["mem_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    if torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name(0)
    return d


def describe(m: dict) -> str:
    """One sentence naming the machine (older results files lack some fields)."""
    vec = m.get("vector")
    parts = [f"family {m['family']}"] if m.get("family") else []
    if vec is not None:
        parts.append(", ".join(v.upper() for v in vec) if vec else "no AVX2/AVX-512/AMX")
    if m.get("cpu_capability"):
        parts.append(f"ATen kernels {m['cpu_capability']}")
    if m.get("isa_caps"):
        parts.append("kernels capped by " + ", ".join(f"{k}={v}" for k, v in m["isa_caps"].items()))
    if m.get("cores"):
        parts.append(f"{m['cores']} cores")
    parts.append(f"{m['logical_cpus']} logical CPUs")
    if "mem_gb" in m:
        parts.append(f"{m['mem_gb']} GB")
    if m.get("steal") is not None:
        parts.append(f"{m['steal'] * 100:.1f}% of CPU time stolen by the hypervisor while timing")
    libs = [f"{n} {m[k]}" for k, n in (("onednn_version", "oneDNN"), ("mkl_version", "MKL")) if m.get(k)]
    return (f"{m['cpu']} ({'; '.join(parts)}), {m['platform']}, Python {m['python']}, torch {m['torch']}"
            + (f" ({', '.join(libs)})" if libs else "") + (f", GPU {m['gpu']}" if "gpu" in m else ""))
