"""Pretrained weights end to end, offline: a loopback Hub serves files to the real hf_hub_download."""
import hashlib
import json
import os
import types
import warnings

import pytest
import torch

import zoo
from zoo import weights as W
from zoo import weights_cli
from zoo.registry import registry

from ..hubserver import COMMIT
from .helpers import NAME, REPO, _cache_files, _host, _tiny_file, _variant

# -- download, cache, offline -----------------------------------------------------------------

def test_first_download_then_cache_without_request(lfs, hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data)
    p = W.resolve(NAME)
    assert open(p, "rb").read() == data
    assert str(tmp_path / "hf" / "hub") in p                         # HF_HOME honoured at call time
    assert [m for m, _ in hub.requests] == ["HEAD", "HEAD", "GET"]   # the timed probe, then hf_hub_download
    assert hub.requests[2][1].startswith("/cdn/" if lfs else "/zoo-test/")
    hub.requests.clear()
    assert W.resolve(NAME) == p
    assert hub.requests == []                                         # pinned commit + cached: no request


def test_offline_mode_uses_cache_and_fails_clearly_without(hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(W.WeightsError, match="HF_HUB_OFFLINE is set.*zoo download"):
        W.resolve(NAME)
    assert hub.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    p = W.resolve(NAME)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.requests.clear()
    assert W.resolve(NAME) == p and hub.requests == []


def test_corrupted_file_is_removed_and_reported(lfs, hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data)
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    hub.add(REPO, "model.safetensors", bytes(bad))                   # same size, different bytes
    with pytest.raises(W.WeightsError, match=r"sha256 [0-9a-f]{64}, expected [0-9a-f]{64}.*removed from the cache"):
        W.resolve(NAME)
    assert not [f for f in _cache_files(tmp_path) if "blobs/" in f or "snapshots/" in f]
    hub.add(REPO, "model.safetensors", data)                          # fixed upstream: a new call downloads again
    assert open(W.resolve(NAME), "rb").read() == data


def test_corrupted_cache_entry_is_not_trusted_later(hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data)
    p = W.resolve(NAME)
    real = os.path.realpath(p)
    os.chmod(real, 0o644)
    with open(real, "r+b") as f:                                      # bit rot on disk
        f.seek(10)
        f.write(b"\0\0\0")
    with pytest.raises(W.WeightsError, match="does not match"):
        W.resolve(NAME)
    assert not os.path.exists(real)
    assert open(W.resolve(NAME), "rb").read() == data                 # re-downloaded, verified


def test_wrong_size_is_reported(hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data, bytes=len(data) + 1)
    with pytest.raises(W.WeightsError, match="size"):
        W.resolve(NAME)


def test_truncated_transfer_resumes_or_fails_without_residue(hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data)
    hub.faults["model.safetensors"] = "truncate_once"                # cut once: huggingface_hub resumes (Range)
    assert open(W.resolve(NAME), "rb").read() == data
    assert [m for m, _ in hub.requests].count("GET") == 2
    # cut every time: a clear error, nothing left in the cache
    hub.faults["model.safetensors"] = "truncate"
    other = "tsn_r18_ssv1_16f"
    monkeypatch.setitem(registry().variants, other, _variant(other))
    data_b = _tiny_file(tmp_path, other)                              # other bytes, so another blob
    monkeypatch.setitem(registry().manifest, other, {**registry().manifest[NAME], "filename": "b.safetensors",
                                                     "sha256": hashlib.sha256(data_b).hexdigest(),
                                                     "bytes": len(data_b)})
    hub.add(REPO, "b.safetensors", data_b)
    hub.faults["b.safetensors"] = "truncate"
    with pytest.raises(W.WeightsError, match="failed"):
        W.resolve(other)
    assert not [f for f in _cache_files(tmp_path) if "b.safetensors" in f or f.endswith(".incomplete")]


def test_404_is_a_clear_error(hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data, filename="missing.safetensors")
    with pytest.raises(W.WeightsError, match="the Hub has no .*missing.safetensors.*out of date"):
        W.resolve(NAME)
    _host(monkeypatch, hub, data, repo_id="zoo-test/gone")
    with pytest.raises(W.WeightsError, match="RepositoryNotFoundError"):
        W.resolve(NAME)


def test_server_down_with_and_without_cache(hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data)
    p = W.resolve(NAME)
    hub.stop()
    assert W.resolve(NAME) == p                                       # cached copy, verified, no server needed
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty"))
    with pytest.raises(W.WeightsError, match="could not be reached.*zoo download"):
        W.resolve(NAME)


# -- mirror and loading -------------------------------------------------------------------------

def _real_weights(tmp_path, name=NAME, arch="tsn_r18"):
    torch.manual_seed(0)
    model = zoo.create_model(arch, num_classes=174, num_frames=8)
    path = tmp_path / "src" / "model.safetensors"
    path.parent.mkdir()
    W.save_weights(model, path, {"name": name, "arch": arch})
    return model, path.read_bytes()


def test_create_model_pretrained_from_hub_and_hub_entrypoint(hub, monkeypatch, tmp_path):
    ref, data = _real_weights(tmp_path)
    _host(monkeypatch, hub, data)
    m = zoo.create_model(NAME, pretrained=True).eval()
    ref.eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), ref(x))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(zoo.__file__)))
    m2 = torch.hub.load(repo, NAME, source="local", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(m2(x), ref(x))
    # fine-tuning: backbone kept, fresh head; other frame counts with a warning
    with pytest.warns(UserWarning, match="trained with 8 frames"):
        ft = zoo.create_model(NAME, pretrained=True, num_classes=5, num_frames=4)
    assert ft.fc.out_features == 5
    assert torch.equal(ft.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    assert ft(torch.randn(1, 3, 4, 32, 32)).shape == (1, 5)


def test_mirror_first_then_hub(hub, monkeypatch, tmp_path):
    ref, data = _real_weights(tmp_path)
    _host(monkeypatch, hub, data)
    mirror = tmp_path / "mirror"
    assert weights_cli.main(["download", NAME, "--to", str(mirror)]) == 0
    assert (mirror / NAME / "model.safetensors").read_bytes() == data
    hub.stop()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "fresh"))          # a machine without the cache
    monkeypatch.setenv(W.ENV_DIR, str(mirror))
    assert W.resolve(NAME) == str(mirror / NAME / "model.safetensors")
    zoo.create_model(NAME, pretrained=True)
    monkeypatch.delenv(W.ENV_DIR)
    assert W.resolve(NAME, weights_dir=mirror) == str(mirror / NAME / "model.safetensors")
    (mirror / NAME / "model.safetensors").write_bytes(data[:-4] + b"abcd")
    with pytest.raises(W.WeightsError, match="does not match"):
        W.resolve(NAME, weights_dir=mirror)
    assert weights_cli.verify(dirs=[mirror])[0][2].startswith("CORRUPT")
    with pytest.raises(W.WeightsError, match="no weights for"):
        W.resolve(NAME, weights_dir=tmp_path / "nowhere")


def test_verify_reports_cache_state(hub, monkeypatch, tmp_path):
    data = _tiny_file(tmp_path)
    _host(monkeypatch, hub, data)
    assert weights_cli.verify([NAME]) == [(NAME, "-", "missing")]
    p = W.resolve(NAME)
    assert weights_cli.verify([NAME]) == [(NAME, p, "ok")]
    real = os.path.realpath(p)
    os.chmod(real, 0o644)
    open(real, "ab").write(b"x")
    rows = weights_cli.verify([NAME], purge=True)
    assert rows[0][2].startswith("CORRUPT") and "(removed)" in rows[0][2]
    assert not os.path.exists(real)


def test_not_hosted_names_say_so(monkeypatch):
    reg = registry()
    src = {"url": "https://example.org/orig.pth", "format": "pth", "converter": "tsn", "note": "authors' README"}
    monkeypatch.setitem(reg.variants, NAME, _variant(source=src))
    monkeypatch.setitem(reg.manifest, NAME, {"status": "original-only", "source": src, "converter": "tsn"})
    with pytest.raises(W.WeightsError) as e:
        zoo.create_model(NAME, pretrained=True)
    msg = str(e.value)
    assert "no hosted weights" in msg and "https://example.org/orig.pth" in msg and f"zoo convert {NAME}" in msg
    monkeypatch.setitem(reg.variants, NAME, _variant())
    monkeypatch.setitem(reg.manifest, NAME, {"status": "unreleased", "converter": "tsn"})
    with pytest.raises(W.WeightsError, match="did not publish"):
        zoo.create_model(NAME, pretrained=True)
    assert NAME not in zoo.list_models(pretrained=True)
    monkeypatch.setitem(reg.manifest, NAME, {"status": "hosted", "repo_id": REPO, "revision": COMMIT,
                                             "filename": "model.safetensors", "sha256": "0" * 64, "bytes": 1})
    assert NAME in zoo.list_models(pretrained=True)


def test_unverified_file_must_fit(monkeypatch, tmp_path):
    from safetensors.torch import save_file

    monkeypatch.setitem(registry().variants, NAME, _variant())
    monkeypatch.setitem(registry().manifest, NAME, {"status": "unreleased", "converter": "tsn"})
    d = tmp_path / NAME
    d.mkdir()
    save_file({"fc.weight": torch.zeros(174, 512)}, str(d / "model.safetensors"), metadata={"name": NAME})
    with pytest.warns(UserWarning, match="unverified"), pytest.raises(W.WeightsError, match="model key.s. not in the checkpoint"):
        zoo.create_model(NAME, pretrained=True, weights_dir=tmp_path)
    save_file({"fc.weight": torch.zeros(1)}, str(d / "model.safetensors"), metadata={"name": "tsn_r18_k400_8f"})
    with pytest.raises(W.WeightsError, match="not 'tsn_r18_ssv1_8f'"):
        zoo.create_model(NAME, pretrained=True, weights_dir=tmp_path)


# -- conversion -----------------------------------------------------------------------------------

class NotAllowed:      # an object torch.load(weights_only=True) refuses
    pass


def _original_layout(model) -> dict:
    """The TSM authors' checkpoint layout: module.base_model.*, conv1.net in shifted blocks, new_fc."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("fc."):
            k = "new_fc." + k[3:]
        else:
            k = "base_model." + k
            if ".conv1." in k and k.split(".")[1].startswith("layer"):
                k = k.replace(".conv1.", ".conv1.net.")
        out["module." + k] = v.clone()
    return out


def test_convert_round_trip(monkeypatch, tmp_path, capsys):
    name = "tsm_r18_ssv1_8f"
    src = {"url": "https://example.org/orig.pth", "format": "pth", "converter": "tsn"}
    monkeypatch.setitem(registry().variants, name, _variant(name, "tsm_r18", num_classes=10, source=src))
    for k in (W.ENV_DIR,):
        monkeypatch.delenv(k, raising=False)
    torch.manual_seed(1)
    orig = zoo.create_model("tsm_r18", num_classes=10, num_frames=8).eval()
    ckpt = tmp_path / "orig.pth.tar"
    torch.save({"state_dict": _original_layout(orig), "epoch": 45, "arch": "resnet18", "best_prec1": 1.0}, ckpt)
    out = tmp_path / "conv"
    assert weights_cli.main(["convert", name, str(ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    entry = json.loads(printed[printed.index("{"):])[name]
    f = out / "model.safetensors"
    assert entry == {"filename": "model.safetensors", "sha256": W.sha256(f), "bytes": f.stat().st_size}
    _, meta = W.read_weights(f)
    assert {meta["name"], meta["arch"], meta["num_classes"], meta["frames"]} == {name, "tsm_r18", "10", "8"}
    assert meta["zoo_version"] == zoo.__version__
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: zoo") and "Citation" in card and "@article" in card
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["arch"] == "tsm_r18" and cfg["num_classes"] == 10
    with pytest.warns(UserWarning, match="unverified"):
        m = zoo.create_model(name, pretrained=True, weights_dir=out).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), orig(x))
    # zoo.load_original on the same file: strict, module. stripped
    m2 = zoo.load_original(zoo.create_model(name), ckpt).eval()
    with torch.no_grad():
        assert torch.equal(m2(x), orig(x))
    # a left-over key is named
    sd = _original_layout(orig)
    sd["module.base_model.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="left over.*extra.weight"):
        zoo.load_original(zoo.create_model(name), sd)
    # a checkpoint that needs full unpickling is refused unless trusted
    torch.save({"state_dict": _original_layout(orig), "args": NotAllowed()}, tmp_path / "pickled.pth")
    assert weights_cli.main(["convert", name, str(tmp_path / "pickled.pth"), "--out", str(tmp_path / "p")]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert weights_cli.main(["convert", name, str(tmp_path / "pickled.pth"), "--out", str(tmp_path / "p"),
                                 "--trust-pickle"]) == 0
    assert any("arbitrary code" in str(x.message) or "runs code" in str(x.message) for x in w)


def test_publish_records_the_commit(monkeypatch, tmp_path):
    ref, data = _real_weights(tmp_path)
    out = tmp_path / "src"
    (out / "config.json").write_text(json.dumps({"name": NAME}))
    monkeypatch.setitem(registry().variants, NAME, _variant())
    calls = {}

    class FakeApi:
        def __init__(self, endpoint=None, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            calls["create"] = repo_id

        def upload_folder(self, folder_path, repo_id, **kw):
            calls["upload"] = (folder_path, repo_id)
            return types.SimpleNamespace(oid="f" * 40)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    mf = tmp_path / "manifest.json"
    mf.write_text(json.dumps({"schema": 1, "weights": {}}))
    assert weights_cli.main(["publish", str(out), "--repo-id", "org/x", "--manifest", str(mf)]) == 0
    e = json.loads(mf.read_text())["weights"][NAME]
    assert e["status"] == "hosted" and e["repo_id"] == "org/x" and e["revision"] == "f" * 40
    assert e["sha256"] == hashlib.sha256(data).hexdigest() and e["bytes"] == len(data)
    assert calls["upload"] == (str(out), "org/x")


# -- manifest -------------------------------------------------------------------------------------

def test_committed_manifest_matches_registry():
    reg = registry()
    assert W.check_manifest(reg.manifest, reg) == []
    for name, e in reg.manifest.items():      # a non-hosted entry says exactly what the authors published
        if e["status"] != "hosted":
            src = reg.variants[name].source or {}
            assert e["status"] == ("original-only" if src.get("url") else "unreleased"), name
            assert (e.get("source") or {}).get("url") == src.get("url"), name


def test_manifest_builder_and_checker(monkeypatch):
    reg = registry()
    hosted = {"status": "hosted", "repo_id": REPO, "revision": COMMIT, "filename": "model.safetensors",
              "sha256": "a" * 64, "bytes": 10, "converter": "tsn"}
    some = sorted(reg.variants)[0]
    built = W.build_manifest({some: hosted, "gone_variant": {"status": "unreleased"}}, reg)
    assert set(built) == set(reg.variants) and built[some]["status"] == "hosted"
    assert W.check_manifest(built, reg) == []
    bad = dict(built)
    bad["gone_variant"] = {"status": "unreleased", "converter": "x"}
    bad[some] = {**hosted, "revision": "main", "sha256": ""}
    problems = "\n".join(W.check_manifest(bad, reg))
    assert "orphan" in problems and "pinned" in problems and "lacks field 'sha256'" in problems
    del bad[some]
    assert "without a manifest entry" in "\n".join(W.check_manifest(bad, reg))


# -- ImageNet backbone ----------------------------------------------------------------------------

def test_imagenet_backbone_mapping_from_timm():
    import timm

    torch.manual_seed(0)
    src = timm.create_model("resnet50", pretrained=False).state_dict()
    model = zoo.create_model("tsm_r50", num_classes=174)
    fc = model.fc.weight.clone()
    mapped = W.load_imagenet_backbone(model, src)
    own = model.state_dict()
    backbone = [k for k in src if not k.startswith("fc.")]
    assert sorted(mapped.values()) == sorted(backbone)
    for k in backbone:
        assert torch.equal(own[k], src[k]), k
    assert torch.equal(model.fc.weight, fc)                         # the new head keeps its own init
    # a key with no place in the model is named, not dropped
    src["layer9.0.conv1.weight"] = torch.zeros(1)
    with pytest.raises(W.WeightsError, match="layer9.0.conv1.weight"):
        W.load_imagenet_backbone(model, src)


def test_imagenet_from_mirror_through_create_model(monkeypatch, tmp_path):
    import timm
    from safetensors.torch import save_file

    src = timm.create_model("resnet18", pretrained=False).state_dict()
    d = tmp_path / "resnet18.tv_in1k"
    d.mkdir()
    save_file({k: v.contiguous() for k, v in src.items()}, str(d / "model.safetensors"))
    monkeypatch.setenv(W.ENV_DIR, str(tmp_path))
    m = zoo.create_model("tsm_r18", num_classes=3, pretrained_backbone=True)
    assert torch.equal(m.layer4[1].conv2.weight, src["layer4.1.conv2.weight"])


def test_imagenet_from_hub_and_download_to_mirror(hub, monkeypatch, tmp_path):
    import timm
    from safetensors.torch import save_file

    src = timm.create_model("resnet18", pretrained=False).state_dict()
    f = tmp_path / "in1k.safetensors"
    save_file({k: v.contiguous() for k, v in src.items()}, str(f))
    hub.add("timm/resnet18.tv_in1k", "model.safetensors", f.read_bytes())
    m = zoo.create_model("tsn_r18", num_classes=3, pretrained_backbone=True)      # through the Hub cache
    assert torch.equal(m.conv1.weight, src["conv1.weight"])
    mirror = tmp_path / "mirror"
    assert weights_cli.main(["download", "--imagenet", "18", "--to", str(mirror)]) == 0
    assert (mirror / "resnet18.tv_in1k" / "model.safetensors").read_bytes() == f.read_bytes()
    hub.stop()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "fresh"))
    with pytest.raises(W.WeightsError, match="zoo download --imagenet 18"):
        zoo.create_model("tsn_r18", pretrained_backbone=True)
    monkeypatch.setenv(W.ENV_DIR, str(mirror))
    m = zoo.create_model("tsn_r18", num_classes=3, pretrained_backbone=True)
    assert torch.equal(m.layer1[0].bn1.running_var, src["layer1.0.bn1.running_var"])
