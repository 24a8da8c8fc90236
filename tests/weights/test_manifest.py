"""weights_manifest.json: entries are validated where used, errors name file + entry + field, writes are atomic."""
import importlib
import os
import shutil

import pytest

from zoo import weights as W
from zoo.cli import main
from zoo.registry import registry

from ..hubserver import COMMIT
from .helpers import NAME, REPO, _host, _tiny_file

R = importlib.import_module("zoo.registry")   # zoo.registry is also a function's name

GOOD = {"status": "hosted", "repo_id": REPO, "revision": COMMIT, "filename": "model.safetensors",
        "sha256": "a" * 64, "bytes": 10}


@pytest.mark.parametrize("change, field", [
    ({"sha256": None}, "sha256"),                   # hosted without a hash: corrupted bytes would load
    ({"sha256": "abc"}, "sha256"),                  # not a full sha256
    ({"bytes": None}, "bytes"),
    ({"bytes": "4128"}, "bytes"),                   # a string, not an integer
    ({"bytes": 41.5}, "bytes"),
    ({"revision": "main"}, "revision"),             # a branch moves; only a commit pins the file
    ({"status": "Hosted"}, "status"),               # an unknown status is an error, not "unreleased"
    ({"repo_id": ["org/x"]}, "repo_id"),
])
def test_bad_entry_is_refused_at_load_naming_file_entry_field(hub, monkeypatch, tmp_path, change, field):
    data = _tiny_file(tmp_path)
    e = _host(monkeypatch, hub, data)
    for k, v in change.items():
        if v is None:
            e.pop(k)
        else:
            e[k] = v
    with pytest.raises(W.ManifestError) as err:
        W.resolve(NAME)
    msg = str(err.value)
    assert "weights_manifest.json" in msg and f"entry {NAME!r}" in msg and f"{field!r}" in msg, msg
    assert hub.requests == []                       # refused before anything is fetched


def test_check_manifest_reports_types():
    reg = registry()
    some = sorted(reg.variants)[0]
    bad = {**W.build_manifest({}, reg), some: {**GOOD, "bytes": "10", "status": "hosted"}}
    problems = W.check_manifest(bad, reg)
    assert any("'bytes' must be a positive integer" in p for p in problems)


def test_broken_manifest_file_is_named(tmp_path):
    mf = tmp_path / "m.json"
    mf.write_text('{"schema": 1, "weights": {"x": {"status": "hos')
    with pytest.raises(W.ManifestError, match=f"{mf} is not valid JSON"):
        W.read_manifest(mf)
    mf.write_text('{"weights": [1, 2]}')
    with pytest.raises(W.ManifestError, match="field 'weights' must be an object"):
        W.read_manifest(mf)
    with pytest.raises(W.ManifestError, match="is a directory"):
        W.read_manifest(tmp_path)


def test_interrupted_manifest_write_keeps_the_old_file(tmp_path, monkeypatch):
    mf = tmp_path / "m.json"
    W.write_manifest({"a": {"status": "unreleased"}}, mf)
    before = mf.read_bytes()

    def crash(*a, **k):
        raise KeyboardInterrupt  # the process is stopped between writing and renaming

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        W.write_manifest({"a": {"status": "unreleased"}, "b": {"status": "unreleased"}}, mf)
    monkeypatch.undo()
    assert mf.read_bytes() == before and os.listdir(tmp_path) == ["m.json"]


@pytest.fixture
def broken_root(tmp_path, monkeypatch):
    """A data root whose registry tables are fine and whose weights_manifest.json is truncated."""
    real = R.data_root()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(real / "registry", root / "registry")
    shutil.copy(real / "hubconf.py", root / "hubconf.py")
    (root / "weights_manifest.json").write_text((real / "weights_manifest.json").read_text()[:300])
    monkeypatch.setattr(R, "data_root", lambda: root)
    return root


def test_help_and_version_work_with_a_broken_manifest(broken_root, capsys):
    for argv in (["--help"], ["--version"], ["download", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 0
    capsys.readouterr()
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert str(broken_root / "weights_manifest.json") in err and err.count("\n") == 1
