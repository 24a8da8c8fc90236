"""A wheel bundles the registry tables and the manifest: listing works outside the repository."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import zoo

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_lists_models_from_outside_the_repo(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for rel in ("zoo", "registry"):
        shutil.copytree(ROOT / rel, src / rel, ignore=shutil.ignore_patterns("__pycache__", "_data"))
    for rel in ("setup.py", "setup.cfg", "pyproject.toml", "README.md", "weights_manifest.json", "hubconf.py"):
        shutil.copy2(ROOT / rel, src / rel)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(src)], check=True, capture_output=True)
    (whl,) = wheels.glob("*.whl")
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(whl)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import zoo, json; from zoo.registry import data_root; from zoo.labels import label_names; "
            "from zoo.bench.targets import TARGETS; "
            "print(json.dumps([str(data_root()), zoo.list_models(), label_names('k400'), len(TARGETS)]))")
    r = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                       env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    import json

    root, names, k400, targets = json.loads(r.stdout)
    assert root == str(target / "zoo" / "_data")
    assert k400 is not None and len(k400) == 400 and k400[0] == "abseiling"   # the lists ship as package data
    assert names == zoo.list_models()
    from zoo.bench.targets import TARGETS

    assert targets == len(TARGETS) > 0    # the benchmark targets (package data) travel with the wheel


def test_source_checkout_reads_the_repository_root():
    from zoo.registry import data_root

    assert data_root() == ROOT
