"""torch.hub from a plain clone of the repository (no pip install)."""
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import zoo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    dest = tmp_path_factory.mktemp("hub") / "acme_zoo_main"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{ROOT}", str(dest)], check=True)
    # the working tree may be ahead of its last commit while developing: test what is here
    for rel in ("hubconf.py", "zoo", "registry", "weights_manifest.json"):
        src, dst = ROOT / rel, dest / rel
        if src.is_dir():
            shutil.rmtree(dst, ignore_errors=True)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "_data"))
        else:
            shutil.copy2(src, dst)
    return dest


def test_load_local(clone):
    m = torch.hub.load(str(clone), "tsm_r50_ssv1_8f", source="local")
    assert m.num_classes == 174 and type(m).__module__ == "zoo.models.resnet"
    m = torch.hub.load(str(clone), "tsn_r18", source="local", num_classes=7)
    with torch.no_grad():
        assert m.eval()(torch.randn(1, 3, 2, 32, 32)).shape == (1, 7)


def test_list_and_help_through_the_hub_cache(clone, monkeypatch):
    # torch.hub.list/help take "owner/repo[:ref]" and read the clone from the hub cache
    # (TORCH_HOME/hub/owner_repo_ref) without network when the ref is given
    monkeypatch.setenv("TORCH_HOME", str(clone.parent.parent))
    hub_dir = clone.parent.parent / "hub"
    if not (hub_dir / clone.name).exists():
        shutil.copytree(clone, hub_dir / clone.name)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub_dir))
    try:
        names = torch.hub.list("acme/zoo:main", skip_validation=True, trust_repo=True)
        assert sorted(names) == zoo.list_models()
        doc = torch.hub.help("acme/zoo:main", "tsm_r50_ssv1_8f", skip_validation=True, trust_repo=True)
        assert "Something-Something V1" in doc and "174 classes" in doc and "45.6" in doc
    finally:
        torch.hub.set_dir(old)


def test_hubconf_entry_points_match_registry():
    import importlib.util

    spec = importlib.util.spec_from_file_location("hubconf_under_test", ROOT / "hubconf.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    public = sorted(n for n in dir(mod) if callable(getattr(mod, n)) and not n.startswith("_"))
    assert public == zoo.list_models()
    assert "tsm_r50" in mod.tsm_r50.__doc__
