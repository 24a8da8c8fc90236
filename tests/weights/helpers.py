"""Shared by the weights tests: a test-only hosted variant, tiny files, the loopback Hub fixture."""
import hashlib
import time
import types

import torch

from zoo import weights as W
from zoo.registry import Variant, registry

from ..hubserver import COMMIT, Hub

REPO = "zoo-test/tiny"
NAME = "tsn_r18_ssv1_8f"        # a test-only variant (small network), injected into the registry


def _fake_time():
    """huggingface_hub's retry backoff without the waiting."""
    return types.SimpleNamespace(**{**{k: getattr(time, k) for k in dir(time) if not k.startswith("_")},
                                    "sleep": lambda s: None})


def hub_fixture(monkeypatch, tmp_path, request):
    import huggingface_hub.constants as C
    import huggingface_hub.file_download as fd
    import huggingface_hub.utils._http as http

    lfs = request.getfixturevalue("lfs") if "lfs" in request.fixturenames else False
    server = Hub(lfs=lfs).start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for k in ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", W.ENV_DIR):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(C, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(http, "time", _fake_time())
    monkeypatch.setattr(fd, "time", _fake_time())
    yield server
    server.stop()


def _variant(name=NAME, arch="tsn_r18", num_classes=174, source=None):
    return Variant(name=name, arch=arch, paper="tsm", dataset="ssv1", frames=8, num_classes=num_classes,
                   mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), source=source)


def _host(monkeypatch, hub, data: bytes, name=NAME, arch="tsn_r18", **entry):
    """Register ``name`` as a hosted variant whose file ``hub`` serves with ``data``."""
    reg = registry()
    monkeypatch.setitem(reg.variants, name, _variant(name, arch))
    e = {"status": "hosted", "repo_id": REPO, "revision": COMMIT, "filename": "model.safetensors",
         "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "converter": "tsn", **entry}
    monkeypatch.setitem(reg.manifest, name, e)
    hub.add(REPO, "model.safetensors", data)
    return e


def _tiny_file(tmp_path, name=NAME) -> bytes:
    from safetensors.torch import save_file

    p = tmp_path / "tiny.safetensors"
    save_file({"w": torch.arange(1000, dtype=torch.float32)}, str(p), metadata={"name": name, "arch": "tsn_r18"})
    return p.read_bytes()


def _cache_files(tmp_path):
    root = tmp_path / "hf" / "hub"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()) \
        if root.exists() else []
