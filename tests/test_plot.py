"""zoo report --plot: the claims chart, with zoo eval results beside the claims."""
import importlib
import json

import pytest

from zoo.cli import main
from zoo.plot import claim_points

pytest.importorskip("matplotlib")


class _Fake:
    def __init__(self, flops):
        self.flops = flops


def test_plot_claims_and_results(tmp_path, monkeypatch):
    pts = claim_points(["diving48v1"])
    assert pts and all(p["dataset"] == "diving48v1" for p in pts)
    measured = []                                 # fvcore is tested elsewhere; here a known GFLOPs per name
    monkeypatch.setattr(importlib.import_module("zoo.complexity"), "complexity", lambda name: measured.append(name) or _Fake(1e9 * (1 + len(name))))
    name = pts[0]["name"]
    res = tmp_path / "r.json"
    res.write_text(json.dumps({"format": "zoo-eval-scores/1", "model": name, "views": pts[0]["views"] or "1x1",
                               "dataset": "diving48v1", "metrics": {"top1": 12.5}}))
    cache = tmp_path / "flops.json"
    out = tmp_path / "chart.svg"
    args = ["report", "--plot", str(out), "--dataset", "diving48v1", "--results", str(res), "--flops-cache", str(cache), "-q"]
    assert main(args) == 0
    svg = out.read_text()
    assert "measured by zoo eval" in svg and f"{name} (zoo eval)" in svg and "Diving48" in svg
    assert "views" in svg and sorted(set(measured)) == sorted({p["name"] for p in pts})
    measured.clear()
    assert main(args) == 0 and measured == []     # the cache answers the second time
    assert main(["report", "--plot", str(tmp_path / "x.txt"), "-q"]) == 2
