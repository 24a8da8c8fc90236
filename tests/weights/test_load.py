"""Strict loading, model folders, and create_model("hf-hub:...") / ("local-dir:...") as timm reads them."""
import json
import logging
import os

import pytest
import torch

import zoo
from zoo import weights as W
from zoo import weights_cli
from zoo.registry import registry

from ..hubserver import COMMIT
from .helpers import NAME, _variant


def _small(classes=5, frames=4, seed=0, **kw):
    torch.manual_seed(seed)
    return zoo.create_model("tsm_r18", num_classes=classes, num_frames=frames, **kw).eval()


def _same(a, b, frames=4):
    x = torch.randn(1, 3, frames, 32, 32)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def test_integer_tensors_for_float_parameters_are_refused(monkeypatch, tmp_path):
    monkeypatch.setitem(registry().variants, NAME, _variant())
    monkeypatch.setitem(registry().manifest, NAME, {"status": "unreleased", "converter": "tsn"})
    model = zoo.create_model("tsn_r18", num_classes=174)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    sd["conv1.weight"] = (sd["conv1.weight"] * 100).to(torch.int32)
    from safetensors.torch import save_file

    (tmp_path / NAME).mkdir()
    save_file(sd, str(tmp_path / NAME / W.FILENAME), metadata={"name": NAME})
    with pytest.warns(UserWarning, match="unverified"), \
            pytest.raises(W.WeightsError, match=r"non-float tensor.*conv1.weight: checkpoint torch.int32"):
        zoo.create_model(NAME, pretrained=True, weights_dir=tmp_path)


def test_save_pretrained_then_local_dir_round_trip(tmp_path, caplog):
    ref = _small(shift_div=4)
    info = W.save_pretrained(ref, tmp_path / "mine", label_names=[f"c{i}" for i in range(5)])
    assert sorted(os.listdir(tmp_path / "mine")) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((tmp_path / "mine" / "config.json").read_text())
    assert cfg["arch"] == "tsm_r18" and cfg["num_classes"] == 5 and cfg["frames"] == 4
    assert cfg["kwargs"]["shift_div"] == 4 and cfg["weights"] == info and cfg["id2label"]["4"] == "c4"
    with caplog.at_level(logging.INFO, logger="zoo.weights"):
        m = zoo.create_model(f"local-dir:{tmp_path / 'mine'}").eval()
    assert _same(m, ref) and m.pretrained_cfg["sha256"] == info["sha256"] and info["sha256"] in caplog.text
    assert m.pretrained_cfg["label_names"][0] == "c0"
    ft = zoo.create_model(f"local-dir:{tmp_path / 'mine'}", num_classes=3)        # fine-tuning: a new head
    assert ft.fc.out_features == 3 and torch.equal(ft.conv1.weight, ref.conv1.weight)
    with pytest.raises(W.WeightsError, match="already holds"):                     # never overwritten silently
        W.save_pretrained(ref, tmp_path / "mine")
    data = bytearray((tmp_path / "mine" / W.FILENAME).read_bytes())
    data[-1] ^= 1
    (tmp_path / "mine" / W.FILENAME).write_bytes(bytes(data))
    with pytest.raises(W.WeightsError, match="does not match its config.json"):
        zoo.create_model(f"local-dir:{tmp_path / 'mine'}")
    with pytest.raises(W.WeightsError, match="not a folder"):
        zoo.create_model(f"local-dir:{tmp_path / 'nowhere'}")


def test_local_dir_never_unpickles(tmp_path):
    d = tmp_path / "m"
    W.save_pretrained(_small(), d)
    torch.save({"x": torch.zeros(1)}, d / W.FILENAME)           # a pickle under the safetensors name
    (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()), "weights": {}}))
    with pytest.raises(W.WeightsError, match="not a readable safetensors file"):
        zoo.create_model(f"local-dir:{d}")
    (d / "config.json").write_text(json.dumps({"arch": "tsm_r18", "num_classes": "5", "frames": 4}))
    with pytest.raises(W.WeightsError, match="field 'num_classes' must be an integer"):
        zoo.create_model(f"local-dir:{d}")


def test_hf_hub_name_from_the_loopback_hub(hub, tmp_path):
    ref = _small(seed=3)
    W.save_pretrained(ref, tmp_path / "up")
    for f in os.listdir(tmp_path / "up"):
        hub.add("me/my-tsm", f, (tmp_path / "up" / f).read_bytes())
    m = zoo.create_model("hf-hub:me/my-tsm").eval()
    assert _same(m, ref)
    assert m.pretrained_cfg["hf_hub_id"] == "me/my-tsm" and m.pretrained_cfg["commit"] == COMMIT
    pinned = zoo.create_model(f"hf-hub:me/my-tsm@{COMMIT}").eval()
    assert _same(pinned, ref) and pinned.pretrained_cfg["revision"] == COMMIT
    with pytest.raises(W.WeightsError, match="RevisionNotFound"):
        zoo.create_model("hf-hub:me/my-tsm@" + "f" * 40)
    with pytest.raises(W.WeightsError, match="expected hf-hub:ORG/REPO"):
        zoo.create_model("hf-hub:just-a-name")


def _converted(monkeypatch, tmp_path):
    """An authors'-layout checkpoint of a test variant, converted with `zoo convert`."""
    from .test_pipeline import _original_layout

    name = "tsm_r18_ssv1_8f"
    src = {"url": "https://example.org/orig.pth", "format": "pth", "converter": "tsn"}
    monkeypatch.setitem(registry().variants, name, _variant(name, "tsm_r18", num_classes=10, source=src))
    orig = _small(classes=10, frames=8, seed=1)
    ckpt = tmp_path / "orig.pth"
    torch.save({"state_dict": _original_layout(orig)}, ckpt)
    out = tmp_path / "conv"
    assert weights_cli.main(["convert", name, str(ckpt), "--out", str(out)]) == 0
    return name, ckpt, out, orig


def test_convert_writes_what_local_dir_reads_and_refuses_to_overwrite(monkeypatch, tmp_path, capsys):
    name, ckpt, out, orig = _converted(monkeypatch, tmp_path)
    m = zoo.create_model(f"local-dir:{out}").eval()
    assert _same(m, orig, frames=8) and m.pretrained_cfg["name"] == name
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    capsys.readouterr()
    assert weights_cli.main(["convert", name, str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds" in err and "--force" in err and err.count("\n") == 1
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before
    assert weights_cli.main(["convert", name, str(ckpt), "--out", str(out), "--force"]) == 0
    (tmp_path / "afile").write_text("mine")
    assert weights_cli.main(["convert", name, str(ckpt), "--out", str(tmp_path / "afile")]) == 2
    assert (tmp_path / "afile").read_text() == "mine"


def _loopback_publishing(monkeypatch, hub):
    """zoo publish's HfApi, uploading into the loopback Hub."""
    import fnmatch

    import huggingface_hub

    class LoopbackApi:
        def __init__(self, endpoint=None, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            pass

        def upload_folder(self, folder_path, repo_id, allow_patterns=None, **kw):
            for f in os.listdir(folder_path):
                if allow_patterns is None or any(fnmatch.fnmatch(f, p) for p in allow_patterns):
                    hub.add(repo_id, f, open(os.path.join(folder_path, f), "rb").read())
            return type("Commit", (), {"oid": hub.commit})()

    monkeypatch.setattr(huggingface_hub, "HfApi", LoopbackApi)


def test_publish_uploads_what_hf_hub_reads(hub, monkeypatch, tmp_path):
    """convert -> publish (to the loopback Hub) -> create_model("hf-hub:...") and the manifest path."""
    name, _, out, orig = _converted(monkeypatch, tmp_path)
    _loopback_publishing(monkeypatch, hub)
    (out / ".my_notes.txt").write_text("not uploaded")
    mf = tmp_path / "manifest.json"
    assert weights_cli.main(["publish", str(out), "--repo-id", "me/tsm", "--manifest", str(mf)]) == 0
    assert sorted(f for r, f in hub.files if r == "me/tsm") == ["README.md", "config.json", "model.safetensors"]
    m = zoo.create_model(f"hf-hub:me/tsm@{COMMIT}").eval()
    assert _same(m, orig, frames=8)
    entry = json.loads(mf.read_text())["weights"][name]
    monkeypatch.setitem(registry().manifest, name, entry)                # the recorded entry verifies and loads
    assert _same(zoo.create_model(name, pretrained=True).eval(), orig, frames=8)


@pytest.mark.parametrize("name", ["tsm_r18", "tsm_r18_ssv1_8f"])
def test_publish_a_model_of_other_classes_leaves_the_manifest(hub, monkeypatch, tmp_path, name):
    """A user's model (an architecture, or a variant fine-tuned to 5 classes) goes up and comes
    back by its hf-hub: name; the manifest, which holds the registered variants' own weights, is
    not touched."""
    if name.endswith("_8f"):   # a registered 174-class variant, fine-tuned to 5 classes
        monkeypatch.setitem(registry().variants, name, _variant(name, "tsm_r18", num_classes=174))
    torch.manual_seed(0)
    orig = zoo.create_model(name, num_classes=5).eval()
    W.save_pretrained(orig, tmp_path / "mine", name=name)
    _loopback_publishing(monkeypatch, hub)
    mf = tmp_path / "manifest.json"
    mf.write_text('{"schema": 1, "weights": {}}')
    before = mf.read_bytes()
    assert weights_cli.main(["publish", str(tmp_path / "mine"), "--repo-id", "me/mine", "--manifest", str(mf)]) == 0
    assert mf.read_bytes() == before
    m = zoo.create_model(f"hf-hub:me/mine@{COMMIT}").eval()
    assert m.num_classes == 5 and _same(m, orig, frames=8)


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "truncated", "garbage", "pickle.safetensors"])
def test_unreadable_checkpoints_get_one_line_without_pickle_advice(monkeypatch, tmp_path, capsys, case):
    name = "tsm_r18_ssv1_8f"
    monkeypatch.setitem(registry().variants, name, _variant(name, "tsm_r18", num_classes=10))
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, good)
    path = tmp_path / ("ckpt.safetensors" if case == "pickle.safetensors" else "ckpt.pth")
    if case == "directory":
        path.mkdir()
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        path.write_bytes(good.read_bytes()[:600])
    elif case == "garbage":
        path.write_bytes(b"hello, not a checkpoint")
    elif case == "pickle.safetensors":
        path.write_bytes(good.read_bytes())
    assert weights_cli.main(["convert", name, str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo convert: error: ") and err.count("\n") == 1, err
    assert "--trust-pickle" not in err
    expected = {"missing": "no such file", "directory": "not a checkpoint", "pickle.safetensors": "not a safetensors file"}
    assert expected.get(case, "not a checkpoint") in err
    assert not (tmp_path / "o").exists()


def test_label_names_in_config_and_card():
    name = sorted(registry().variants)[0]
    n = registry().variants[name].num_classes
    labels = [f"class {i}" for i in range(n)]
    cfg = W.model_config(name, label_names=labels)
    assert cfg["label_names"] == labels and cfg["id2label"][str(n - 1)] == f"class {n - 1}"
    # without a list the entry's bundled one is written (SSv1: the sorted order), none for EGTEA
    assert W.model_config(name)["label_names"] == zoo.labels.label_names(name)
    egtea = next(v for v in sorted(registry().variants) if registry().variants[v].dataset.startswith("egtea"))
    assert "label_names" not in W.model_config(egtea)
    card = W.model_card(name, label_names=labels)
    assert "label_names:" in card.split("---")[1] and "## Classes" in card
    with pytest.raises(ValueError, match="label names for"):
        W.model_config(name, label_names=labels[:-1])
