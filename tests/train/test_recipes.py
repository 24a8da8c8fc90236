"""Recipes: every paper's protocol is found for its variants with the values its paper states."""
import pytest

import zoo
from zoo.registry import RegistryError
from zoo.train import recipes as R


def test_every_variant_has_a_paper_recipe():
    for name in zoo.list_models(kind="variant"):
        r = R.recipe_for(name)
        assert r.lr > 0 and r.batch > 0 and r.epochs > max(r.milestones, default=0), name


@pytest.mark.parametrize("name, rid, lr, epochs, milestones, dropout", [
    ("gc_tsm_r50_ssv1_8f", "gc", 0.01, 50, (20, 40), 0.5),          # GC paper Sec. 4.1
    ("gc_tdn_r50_ssv1_8f", "gc_tdn", 0.01, 60, (30, 45, 55), 0.5),  # follows TDN's
    ("gc_tdn_r50_k400_8f", "gc_tdn", 0.02, 100, (50, 75, 90), 0.5),
    ("aia_tsn_r50_ssv1_8f", "aia", 0.01, 50, (20, 40), 0.5),
    ("sda_tsn_r50_ssv1_8f", "sda_tsn", 0.01, 50, (20, 40), 0.5),
    ("sda_tsm_r50_ssv1_8f", "sda_tsm", 0.015, 50, (20, 40), 0.5),
    ("sda_tsn_r50_ssv1_16f", "sda_tsn", 0.015, 50, (20, 40), 0.5),  # 16-frame models: 0.015
    ("stc_r50_ssv1_8f", "stc", 0.01, 50, (30, 40), 0.5),
    ("gst_r50_ssv1_8f", "gst", 0.01, 60, (40, 50), 0.3),
])
def test_paper_values(name, rid, lr, epochs, milestones, dropout):
    r = R.recipe_for(name)
    assert (r.id, r.lr, r.epochs, r.milestones, r.dropout) == (rid, lr, epochs, milestones, dropout)
    assert r.init == "imagenet" and not r.partial_bn and r.cite


def test_flip_rules():
    assert R.recipe_for("gc_tsm_r50_ssv1_8f").swap_map() == {86: 87, 87: 86, 93: 94, 94: 93, 166: 167, 167: 166}
    assert R.recipe_for("tdn_r50_ssv1_8f").flip is False            # TDN: no flip on Something-Something
    assert R.recipe_for("tdn_r50_k400_8f").flip is True
    assert R.recipe_for("gc_tsm_r50", dataset="k400").flip is True


def test_linear_scaling_and_finetune():
    r = R.recipe_for("gc_tsm_r50_ssv1_8f")
    assert r.scaled_lr(64) == pytest.approx(0.02) and r.scaled_lr(8) == pytest.approx(0.0025)
    f = R.recipe_for("gc_tsm_r50_ssv1_8f", "finetune")
    assert f.id == "finetune" and f.lr < r.lr and f.init == "pretrained" and f.lr_mult["fc.weight"] == 5


def test_errors(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="ensemble"):
        R.recipe_for("gc_tdn_r50_ssv1_8f16f")
    with pytest.raises(ValueError, match="'paper' or 'finetune'"):
        R.recipe_for("tsm_r50", "fast")
    bad = tmp_path / "registry"
    bad.mkdir()
    (bad / "recipes.toml").write_text('[[recipe]]\nid = "x"\nmatch = ["*"]\ncrop = "random"\n')
    monkeypatch.setattr(R, "data_root", lambda: tmp_path)
    with pytest.raises(RegistryError, match="crop must be one of"):
        R.recipe_for("tsm_r50")


def test_info_shows_the_recipe(capsys):
    from zoo.cli import main

    assert main(["info", "gc_tsm_r50_ssv1_8f"]) == 0
    out = capsys.readouterr().out
    assert "Training recipe 'gc'" in out and "lr 0.01 for a batch of 32" in out and "86<->87" in out
