import json
import os
import subprocess
import sys

import pytest

from zoo.cli import main


def test_list(capsys):
    assert main(["list", "tsm_r50_*"]) == 0
    out = capsys.readouterr().out
    assert "tsm_r50_ssv1_8f" in out and "tsn_r50" not in out


def test_list_pretrained_is_honest(capsys):
    assert main(["list", "--pretrained"]) == 0
    out = capsys.readouterr().out
    assert out.strip()  # either hosted names or the sentence saying there are none


def test_info(capsys):
    assert main(["info", "tsm_r50_ssv1_8f", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["num_classes"] == 174 and info["arch"] == "tsm_r50"


def test_unknown_name_is_an_error(capsys):
    assert main(["info", "tsm_r5"]) == 2
    assert "Did you mean" in capsys.readouterr().err


def test_report_json(capsys):
    assert main(["report", "--paper", "sda", "--arch", "tsn_r50", "--frames", "8", "--format", "json", "-q"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["arch"] == "tsn_r50" for r in rows)


def test_python_dash_m():
    r = subprocess.run([sys.executable, "-m", "zoo", "list", "tsn_r18"], capture_output=True, text=True, check=True)
    assert r.stdout.startswith("tsn_r18")


# -- faults: one line on stderr, a non-zero exit, never a traceback ------------------------------

def _one_line(capsys, cmd):
    err = capsys.readouterr().err
    assert err.startswith(f"zoo {cmd}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_publish_a_missing_folder(tmp_path, capsys):
    assert main(["publish", str(tmp_path / "nope"), "--repo-id", "org/x"]) == 2
    assert "is not a folder" in _one_line(capsys, "publish")


def test_download_imagenet_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert main(["download", "--imagenet", "18"]) == 2
    err = _one_line(capsys, "download")
    assert "HF_HUB_OFFLINE is set" in err and "zoo download --imagenet 18 --to DIR" in err


def test_download_to_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    assert main(["download", "--imagenet", "18", "--to", str(tmp_path / "f")]) == 2
    assert "is not a folder" in _one_line(capsys, "download")
    assert (tmp_path / "f").read_text() == "mine"


def test_report_out_an_existing_file(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    assert main(["report", "--paper", "sda", "--out", str(tmp_path / "f"), "-q"]) == 2
    assert "is not a folder" in _one_line(capsys, "report")
    assert (tmp_path / "f").read_text() == "mine"


def test_manifest_path_a_directory(tmp_path, capsys):
    assert main(["manifest", "--path", str(tmp_path)]) == 2
    assert "is a directory" in _one_line(capsys, "manifest")


def test_bench_from_json_a_missing_file(tmp_path, capsys):
    assert main(["bench", "--from-json", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in _one_line(capsys, "bench")


def test_unexpected_error_and_interrupt(monkeypatch, capsys):
    import zoo.cli as cli

    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(cli, "list_models", boom)
    assert main(["list"]) == 1
    assert "ZOO_DEBUG=1" in _one_line(capsys, "list")
    monkeypatch.setenv("ZOO_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["list"])

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "list_models", stop)
    assert main(["list"]) == 130


def test_closed_pipe_is_quiet():
    """`zoo list | head -1`: the reader leaves early; no BrokenPipeError traceback. The read end
    is closed before the command starts, so its first write fails whatever the timing."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([sys.executable, "-m", "zoo", "list"], stdout=w, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(w)
    err = p.stderr.decode()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert p.returncode != 0
