import json
import subprocess
import sys

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
