"""zoo.labels: bundled class-name lists, their order, registry fields and user files."""
import shutil
from pathlib import Path

import pytest

import zoo
from zoo.labels import bundled_lists, label_info, label_names, read_label_file
from zoo.registry import Registry, registry

ROOT = Path(__file__).resolve().parents[2]


def test_every_dataset_names_a_list_of_the_right_size_or_says_none():
    reg = registry()
    for key, ds in reg.datasets.items():
        info = ds.labels
        assert info and set(info) == {"list", "order", "source"} and info["order"] and info["source"], key
        names = label_names(key)
        if info["list"]:
            assert info["list"] in bundled_lists() and len(names) == ds.num_classes, key
        else:
            assert names is None and "--labels" in info["source"], key
    for name, v in reg.variants.items():
        names = label_names(name)
        assert names is None or len(names) == v.num_classes, name


def test_orders_are_the_ones_the_training_code_used():
    from torchvision.models._meta import _KINETICS400_CATEGORIES

    assert label_names("k400") == list(_KINETICS400_CATEGORIES)
    ss = label_names("ssv1")
    assert ss == sorted(ss) and ss == label_names("ssv2") == label_names("tsm_r50_ssv1_8f")
    # GST swaps these labels on horizontal flips: the left/right pairs in the sorted order
    for a, b in [(86, 87), (93, 94), (166, 167)]:
        assert ss[a].replace("left", "X").replace("right", "left").replace("X", "right") == ss[b]
    csv = label_names("ssv1_csv_order")
    assert sorted(csv) == ss and csv != ss
    assert label_names("diving48")[0] == "Back+15som+05Twis+FREE" and len(label_names("diving48v1")) == 48
    assert label_names("tsn_r50_egtea1_8f") is None and "action_idx.txt" in label_info("tsn_r50_egtea1_8f")["source"]


def test_ensemble_and_arch():
    reg = registry()
    ens = next(iter(reg.ensembles))
    assert label_names(ens) == label_names(reg.ensembles[ens].members[0])
    assert label_names("tsm_r50") is None
    with pytest.raises(KeyError, match="unknown model"):
        label_names("no_such_model")


def test_variant_overrides_the_dataset_list(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(ROOT / "registry", root / "registry")
    shutil.copy2(ROOT / "weights_manifest.json", root / "weights_manifest.json")
    with open(root / "registry" / "baselines.toml", "a") as f:
        f.write('\n[[variant]]\nname = "tsm_r50_ssv1_8f_mmaction"\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 8\n'
                'labels = { list = "ssv1_csv_order", order = "official CSV", source = "MMAction2 label_map.txt" }\n')
    reg = Registry(root)
    assert reg.variants["tsm_r50_ssv1_8f_mmaction"].labels["list"] == "ssv1_csv_order"
    assert reg.variants["tsm_r50_ssv1_8f"].labels["list"] == "ssv_sorted"
    with open(root / "registry" / "baselines.toml", "a") as f:
        f.write('\n[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 4\nlabels = { file = "x" }\n')
    with pytest.raises(ValueError, match="unknown field"):
        Registry(root)


def test_read_label_file(tmp_path):
    p = tmp_path / "names.txt"
    p.write_text("\ufeffjump\n run \nswim\n\n")
    assert read_label_file(p, num_classes=3) == ["jump", "run", "swim"]
    with pytest.raises(ValueError, match=r"3 names for a model with 4 classes.*exactly 4 lines"):
        read_label_file(p, num_classes=4)
    p.write_text("jump\n\nswim\n")
    with pytest.raises(ValueError, match="line 2 is blank"):
        read_label_file(p)
    p.write_text("jump\nswim\njump\n")
    with pytest.raises(ValueError, match="line 3 repeats 'jump'"):
        read_label_file(p)
    with pytest.raises(ValueError, match="cannot read"):
        read_label_file(tmp_path / "missing.txt")


def test_info_shows_the_list(capsys):
    from zoo.cli import main

    assert main(["info", "tsm_r50_ssv1_8f"]) == 0
    out = capsys.readouterr().out
    assert "Class names: ssv_sorted" in out and "sorted() of the category names" in out
    assert zoo.model_info("tsm_r50_ssv1_8f")["labels"]["list"] == "ssv_sorted"
