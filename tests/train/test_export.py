"""The best epoch's folder is a weights_dir that create_model loads and zoo publish reads."""
import json

import pytest
import torch

import zoo
from zoo.train.export import export_weights
from zoo.train.recipes import recipe_for

NAME = "gst_r18_diving48v1_16f"   # a small registered variant (unreleased: no hash in the manifest)


def test_exported_folder_loads_with_create_model(tmp_path):
    torch.manual_seed(3)
    model = zoo.create_model(NAME)
    metrics = {"epoch": 7, "val_top1": 61.25, "val_top5": 90.0, "val_mean_class": 55.5, "val_videos": 80}
    folder = export_weights(model, tmp_path / "best", name=NAME, recipe=recipe_for(NAME), metrics=metrics, epochs=60)
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["name"] == NAME and cfg["num_classes"] == model.num_classes and cfg["training"]["recipe"] == "gst"
    card = (folder / "README.md").read_text()
    assert "top1 61.25%" in card and "Training recipe 'gst'" in card and "value: 61.25" in card
    with pytest.warns(UserWarning, match="unverified"):
        loaded = zoo.create_model(NAME, pretrained=True, weights_dir=str(folder))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # a second export replaces the folder whole, leaving no temporary folder
    export_weights(model, tmp_path / "best", name=NAME, recipe=recipe_for(NAME), metrics={**metrics, "val_top1": 70.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    assert json.loads((folder / "config.json").read_text())["training"]["metrics"]["val_top1"] == 70.0


def test_exported_folder_records_its_hash_and_local_dir_checks_it(tmp_path):
    torch.manual_seed(3)
    model = zoo.create_model("tsm_r18", num_classes=5, num_frames=4)
    folder = export_weights(model, tmp_path / "best", name="tsm_r18", recipe=recipe_for("tsm_r18"),
                            metrics={"epoch": 1})
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["sampling"] == "uniform" and cfg["input_size"] == 224 and cfg["weights"]["bytes"] > 0
    loaded = zoo.create_model(f"local-dir:{folder}").eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1                                            # one flipped bit in the last tensor
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(Exception, match="does not match"):
        zoo.create_model(f"local-dir:{folder}")


def test_exported_folder_is_what_zoo_publish_uploads(tmp_path, monkeypatch):
    import hashlib
    import types

    import huggingface_hub

    from zoo.weights_cli import publish

    model = zoo.create_model(NAME)
    folder = export_weights(model, tmp_path / "best", name=NAME, recipe=recipe_for(NAME), metrics={"epoch": 1})
    uploaded = {}

    class FakeApi:      # the Hub's side is tested with the weights; here: what zoo train hands it
        def __init__(self, endpoint=None, token=None):
            pass

        def create_repo(self, repo_id, **kw):
            pass

        def upload_folder(self, folder_path, repo_id, **kw):
            uploaded[repo_id] = sorted(p.name for p in __import__("pathlib").Path(folder_path).iterdir())
            return types.SimpleNamespace(oid="e" * 40)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    mf = tmp_path / "manifest.json"
    mf.write_text(json.dumps({"schema": 1, "weights": {}}))
    entry = publish(str(folder), "org/trained", manifest=str(mf))[NAME]
    assert uploaded["org/trained"] == ["README.md", "config.json", "model.safetensors"]
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    assert entry["status"] == "hosted" and entry["sha256"] == digest and entry["revision"] == "e" * 40
