import re
import shutil

import pytest

import zoo
from zoo.registry import Registry, RegistryError, data_root, parse_quantity, registry


def test_tables_load_and_names_are_unique_and_parse():
    reg = registry()
    names = reg.names()
    assert len(names) == len(set(names))
    for n, v in reg.variants.items():
        assert re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", n), n
        assert n.startswith(v.arch + "_") and re.search(r"_\d+f$", n), n
        assert v.num_classes > 0 and v.frames > 0
        assert v.dataset in reg.datasets and v.arch in reg.archs
    for e in reg.ensembles.values():
        assert all(m in reg.variants for m in e.members)


def test_every_variant_claim_cites_a_table():
    reg = registry()
    for v in [*reg.variants.values(), *reg.ensembles.values()]:
        for c in v.claims:
            assert c.table and c.metrics and c.paper in reg.papers


def test_complexity_rows_parse():
    reg = registry()
    for r in reg.complexity:
        assert r.pending or r.arch in reg.archs
        if r.params:
            parse_quantity(r.params, "M")
        if r.flops:
            parse_quantity(r.flops, "G")


def test_list_models_patterns():
    assert "tsm_r50_ssv1_8f" in zoo.list_models("tsm_*")
    assert all(n.startswith("tsm_") for n in zoo.list_models("tsm_*"))
    assert zoo.list_models(["tsn_r50", "tsm_r50"]) == ["tsm_r50", "tsn_r50"]
    assert "tsm_r50" in zoo.list_models(kind="arch") and "tsm_r50" not in zoo.list_models(kind="variant")
    hosted = zoo.list_models(pretrained=True)
    assert all(registry().hosted(n) for n in hosted if n in registry().variants)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(KeyError, match="Did you mean: tsm_r50_ssv1_8f"):
        zoo.create_model("tsm_r50_ssv1_8")


@pytest.fixture
def root(tmp_path):
    src = data_root()
    shutil.copytree(src / "registry", tmp_path / "registry")
    shutil.copy(src / "weights_manifest.json", tmp_path / "weights_manifest.json")
    return tmp_path


def _append(root, text, name="extra.toml"):
    (root / "registry" / name).write_text(text)


PAPER = '[paper]\nid = "x"\ntitle = "t"\nauthors = "a"\nvenue = "v"\nyear = 2020\n'


@pytest.mark.parametrize("body, msg", [
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 8\n', "duplicate name"),
    ('[[variant]]\narch = "nope_r50"\ndataset = "ssv1"\nframes = 8\n', "unknown arch"),
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv9"\nframes = 4\n', "unknown dataset"),
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = "8"\n', "must be int"),
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 4\nkwargs = { alpha = 1 }\n', "no kwarg"),
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 4\ncolour = 1\n', "unknown field"),
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 4\nsampling = "random"\n', "unknown sampling"),
    ('[[claim]]\nvariant = "tsm_r50_ssv1_4f"\ntable = "T1"\ntop1 = 1.0\n', "unknown variant"),
    ('[[claim]]\nvariant = "tsm_r50_ssv1_8f"\ntable = "T1"\n', "at least one metric"),
    ('[[complexity]]\ntable = "T"\nrow = "r"\narch = "tsm_r50"\nframes = 8\nparams = "23.9"\n', "followed by 'M'"),
    ('[[complexity]]\ntable = "T"\nrow = "r"\narch = "se3d_r50"\nframes = 8\nparams = "23.9M"\n', "pending"),
    ('[[ensemble]]\nname = "tsm_r50_ssv1_8f16f"\nmembers = ["tsm_r50_ssv1_8f"]\n', "at least two"),
    ('[[ensemble]]\nname = "e_x"\nmembers = ["tsm_r50_ssv1_8f", "tsm_r50_k400_8f"]\n', "different datasets"),
    # values are checked when the tables load, not when a model is built
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 0\n', "'frames' must be > 0"),
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 4\nnum_classes = -3\n', "'num_classes' must be > 0"),
    ('[[complexity]]\ntable = "T"\nrow = "r"\narch = "tsm_r50"\nframes = -8\nparams = "23.9M"\n', "'frames' must be > 0"),
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 4\nkwargs = { shift_div = 0 }\n', "shift_div must be a positive"),
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 4\nkwargs = { dropout = 1.0 }\n', r"dropout must be in \[0, 1\)"),
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 4\nkwargs = { dropout = "0.5" }\n', "dropout must be a number"),
    ('[[variant]]\narch = "gc_tsm_r50"\ndataset = "ssv1"\nframes = 4\nkwargs = { loop = 1 }\n', "loop must be True or False"),
    ('[[variant]]\narch = "gc_tsm_r50"\ndataset = "ssv1"\nframes = 4\nkwargs = { calibrators = "xyz" }\n', "calibrators"),
    ('[[variant]]\narch = "aia_tsn_r50"\ndataset = "ssv1"\nframes = 4\nkwargs = { attention = "nope" }\n', "unknown attention"),
    ('[[variant]]\narch = "tsn_r50"\ndataset = "ssv1"\nframes = 4\nkwargs = { calibrator = "se9" }\n', "unknown calibrator"),
    ('[[variant]]\narch = "tdn_r50"\ndataset = "ssv1"\nframes = 4\nkwargs = { fusion = [1.0] }\n', "fusion must be"),
    ('[[variant]]\narch = "tsm_r50"\ndataset = "ssv1"\nframes = 4\nviews = "3by2"\n', "views must be"),
])
def test_malformed_rows_fail_at_load(root, body, msg):
    _append(root, PAPER + body)
    with pytest.raises(RegistryError, match=msg):
        Registry(root)


def test_toml_syntax_error_names_the_file(root):
    _append(root, PAPER + '[[variant]]\narch = "tsm_r50\n', name="broken.toml")
    with pytest.raises(RegistryError, match=r"broken\.toml: TOML syntax error"):
        Registry(root)


def test_dataset_flip_and_protocols_are_data(root):
    reg = Registry(root)
    assert not reg.datasets["ssv1"].flip and not reg.datasets["ssv2"].flip and reg.datasets["k400"].flip
    assert reg.protocols["tdn"].length == 5 and reg.protocols["dense"].kind == "dense"
    assert all(reg.protocols[a.sampling] for a in reg.archs.values())
    ds = root / "registry" / "datasets.toml"
    ds.write_text(ds.read_text().replace("[ssv1]\nflip = false", "[ssv1]\nflip = \"no\""))
    with pytest.raises(RegistryError, match="flip must be true or false"):
        Registry(root)


def test_row_without_paper_needs_one(root):
    _append(root, '[[claim]]\nvariant = "tsm_r50_ssv1_8f"\ntable = "T1"\ntop1 = 1.0\n')
    with pytest.raises(RegistryError, match="needs paper"):
        Registry(root)
    _append(root, '[[claim]]\npaper = "tsm"\nvariant = "tsm_r50_ssv1_8f"\ntable = "T1"\ntop1 = 1.0\n')
    assert any(c.table == "T1" for c in Registry(root).variants["tsm_r50_ssv1_8f"].claims)


def test_well_formed_extra_table_loads(root):
    _append(root, PAPER + '[[variant]]\narch = "tsm_r50"\ndataset = "diving48"\nframes = 24\n'
            'claims = [{ table = "T2", top1 = 80.1, views = "1x1" }]\n'
            '[[complexity]]\ntable = "T"\nrow = "SE3D"\narch = "se3d_r50"\nframes = 8\nparams = "26.4M"\npending = "issue 10"\n')
    reg = Registry(root)
    assert reg.variants["tsm_r50_diving48_24f"].num_classes == 48
    assert [r.pending for r in reg.complexity if r.arch == "se3d_r50" and r.paper == "x"] == ["issue 10"]
