"""pretrained_cfg: timm's keys for every name, read identically by timm's data tools and by
zoo.create_transform; and the schema test: every variant's declared metadata against its live model."""
import json
import math
import time

import pytest
import torch

import zoo
from zoo.cfg import CFG_KEYS, pretrained_cfg
from zoo.registry import parse_quantity
from zoo.report import verdict

from .short import no_init

timm_data = pytest.importorskip("timm.data")  # timm is a core dependency; this names it if missing

SAMPLE = ["tsn_r18", "tdn_r50", "tsm_r50_ssv1_8f", "tdn_r50_k400_8f", "gc_tsm_r50_k400_8f", "gc_tdn_r50_ssv1_8f16f"]


def test_every_name_has_the_same_keys_with_timm_types():
    for name in zoo.list_models():
        cfg = pretrained_cfg(name)
        assert tuple(cfg) == CFG_KEYS, name
        c, h, w = cfg["input_size"]
        assert c == 3 and h == w and isinstance(h, int), name
        assert cfg["interpolation"] == "bilinear" and cfg["crop_pct"] == 0.875 and cfg["crop_mode"] == "center"
        assert len(cfg["mean"]) == 3 and len(cfg["std"]) == 3
        crops, clips = cfg["test_views"]
        assert crops in (1, 3) and clips >= 1, name
        assert cfg["frames_per_segment"] == (5 if cfg["sampling"] == "tdn" else 1), name
        assert cfg["num_classes"] >= 1 and (cfg["num_frames"] is None) == (name in zoo.registry().ensembles)
        assert cfg["paper_name"] and cfg["citation"], name


def test_variant_cfg_comes_from_its_entry():
    cfg = pretrained_cfg("tdn_r50_k400_8f")
    assert cfg["dataset"] == "k400" and cfg["num_classes"] == 400 and cfg["num_frames"] == 8
    assert cfg["sampling"] == "tdn" and cfg["test_views"] == (3, 10) and cfg["architecture"] == "tdn_r50"
    assert cfg["paper_ids"] == "arXiv:2012.10071" and cfg["hf_hub_id"] is None   # nothing hosted yet
    ens = pretrained_cfg("gc_tdn_r50_ssv1_8f16f")
    assert ens["num_frames"] is None and ens["dataset"] == "ssv1" and ens["paper_ids"] == "arXiv:2203.09694"
    assert pretrained_cfg("tsn_r18")["dataset"] is None and pretrained_cfg("tsn_r18")["num_classes"] == 400


def _model(name):
    with no_init():
        return zoo.create_model(name)


@pytest.mark.parametrize("name", SAMPLE)
def test_timm_resolves_the_zoo_values_and_create_transform_uses_them(name):
    m = _model(name)
    cfg = pretrained_cfg(name)
    timm_cfg = timm_data.resolve_data_config(model=m)
    assert timm_cfg == {"input_size": cfg["input_size"], "interpolation": "bilinear", "mean": cfg["mean"],
                        "std": cfg["std"], "crop_pct": 0.875, "crop_mode": "center"}
    assert {k: m.pretrained_cfg[k] for k in CFG_KEYS} == cfg
    tf = zoo.create_transform(name)
    size = timm_cfg["input_size"][-1]
    test = timm_data.resolve_data_config(model=m, use_test_size=True)
    assert (tf.size, tf.interpolation) == (size, timm_cfg["interpolation"])
    assert tf.crop == (test["input_size"][-1] if tf.crops == 3 else size)
    assert tf.resize == math.floor(test["input_size"][-1] / test["crop_pct"])
    assert tf.resize == math.floor(size / timm_cfg["crop_pct"]) == 256   # timm's scale_size
    assert tf.mean == timm_cfg["mean"] and tf.std == timm_cfg["std"]
    ens = zoo.registry().ensembles.get(name)   # an ensemble's transform is its first member's
    assert tf.frames == (pretrained_cfg(ens.members[0]) if ens else cfg)["num_frames"]
    assert tf.protocol == cfg["sampling"] and tf.crops == cfg["test_views"][0]


def test_zoo_transform_matches_timms_transform_on_an_image():
    """timm's eval transform built from the resolved config and the zoo's one frame agree (the
    same resize, crop and normalisation; only the resampling kernels' rounding differs)."""
    from PIL import Image

    cfg = timm_data.resolve_data_config(model=_model("tsn_r18"))
    timm_tf = timm_data.create_transform(**cfg)
    g = torch.Generator().manual_seed(0)
    # noise: any other interpolation (bicubic: 0.16), crop or resize would differ by far more
    frame = torch.randint(0, 256, (3, 300, 400), dtype=torch.uint8, generator=g)
    ours = zoo.create_transform("tsn_r18")(frame[None])[:, 0]             # (3, 224, 224)
    theirs = timm_tf(Image.fromarray(frame.permute(1, 2, 0).numpy()))
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert (ours - theirs).abs().mean() < 0.005                          # 1e-4 here


def test_overrides_reach_the_cfg():
    m = zoo.create_model("tsn_r18", num_classes=7, num_frames=4)
    assert m.pretrained_cfg["num_classes"] == 7 and m.pretrained_cfg["num_frames"] == 4
    f = zoo.create_model("tsn_r18", features_only=True, out_indices=(2, 3))
    assert f.pretrained_cfg["num_classes"] == 0


# -- the schema test ---------------------------------------------------------------------------

def test_every_variant_matches_its_declared_metadata():
    """torchvision's manner: build every registered variant (each distinct configuration once,
    without random init) and check classes, frames, frames per segment and the cfg against the
    live model, and its parameter count against every complexity row of the same configuration
    (as printed; rows whose mismatch has a documented cause are exempt)."""
    reg = zoo.registry()
    start, built, rows = time.perf_counter(), {}, 0
    for name, v in reg.variants.items():
        key = (v.arch, json.dumps(v.kwargs, sort_keys=True), v.num_classes, v.frames)
        if key not in built:
            built[key] = _model(name)
        m = built[key]
        assert m.num_classes == v.num_classes, name
        assert m.num_frames == v.frames, name
        assert m.pretrained_cfg["num_classes"] == v.num_classes and m.pretrained_cfg["num_frames"] == v.frames, name
        assert getattr(m, "frames_per_segment", 1) == pretrained_cfg(name)["frames_per_segment"], name
        assert m.feature_info.channels()[-1] == m.num_features, name
        params = sum(p.numel() for p in m.parameters())
        head = sum(p.numel() for p in m.get_classifier().parameters())
        for r in reg.complexity:
            if r.arch == v.arch and r.kwargs == v.kwargs and r.frames == v.frames and r.params:
                rows += 1
                p = params - head + (m.num_features + 1) * r.num_classes   # the row's head
                if not r.cause:
                    assert verdict(r.params, p / 1e6, "M") == "match", (name, r.table, r.row, r.params, p)
                else:
                    parse_quantity(r.params, "M")
    for name, e in reg.ensembles.items():
        assert all(reg.variants[m].num_classes == e.num_classes for m in e.members), name
    assert rows > 500 and len(built) > 100
    print(f"schema: {len(reg.variants)} variants, {len(built)} builds, {rows} rows, "
          f"{time.perf_counter() - start:.1f} s")
