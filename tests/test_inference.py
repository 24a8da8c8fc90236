"""zoo.Recognizer / zoo.predict: views, ensembles, reuse and failures, with small models."""
import pytest
import torch

import zoo
from zoo.inference import Recognizer, parse_views

from .io.synth import make_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    d = tmp_path_factory.mktemp("inf")
    return make_video(d / "v.mp4", 40), make_video(d / "short.mp4", 3)


def test_views_are_averaged_as_logits_then_softmaxed(video):
    torch.manual_seed(0)
    net = zoo.create_model("tsn_r18", num_classes=400).eval()
    rec = Recognizer("tsn_r50_k400_8f", model=net, views="3x2", input_size=32)
    assert rec.labels == zoo.labels.label_names("k400")
    item = rec.dataset([str(video[0])])[0]
    (views,) = item["views"]
    assert views.shape == (6, 3, 8, 36, 36)          # 3 full-resolution crops (floor(32 / 0.875)) x 2 dense clips
    with torch.inference_mode():
        want = net(views).mean(0)
    got = rec.scores([item["views"]])[0]
    torch.testing.assert_close(got, want)
    r = rec(video[0], topk=3)                          # the same object again, on the same video
    top = want.softmax(-1).topk(3)
    assert [t["index"] for t in r["topk"]] == top.indices.tolist()
    assert [t["label"] for t in r["topk"]] == [rec.labels[i] for i in top.indices.tolist()]
    assert r["topk"][0]["prob"] == pytest.approx(float(top.values[0]))


def test_ensemble_members_sample_their_own_frames(video):
    reg = zoo.registry()
    name = next(n for n, e in reg.ensembles.items() if len({reg.variants[m].frames for m in e.members}) > 1)
    members = reg.ensembles[name].members
    frames = [reg.variants[m].frames for m in members]
    nets = {m: zoo.create_model("tsn_r18", num_classes=reg.ensembles[name].num_classes, num_frames=f)
            for m, f in zip(members, frames)}
    ens = zoo.EnsembleModel(nets).eval()
    rec = Recognizer(name, model=ens, views="1x1", input_size=32)
    item = rec.dataset([str(video[1])])[0]            # a 3-frame video: sampling repeats frames
    assert [v.shape[2] for v in item["views"]] == frames
    with torch.inference_mode():
        want = torch.stack([n(v).mean(0) for n, v in zip(nets.values(), item["views"])]).mean(0)
    torch.testing.assert_close(rec.scores([item["views"]])[0], want)
    assert rec.labels == zoo.labels.label_names(members[0])


def test_predict_many_keeps_going(video, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk" * 100)
    net = zoo.create_model("tsn_r18", num_classes=174)
    rec = Recognizer("tsm_r50_ssv1_8f", model=net, input_size=32, views="1x2")
    out = list(rec.predict([video[0], bad, video[1]], batch=2, topk=1))
    assert [r["video"] for r in out] == [str(video[0]), str(bad), str(video[1])]
    assert out[1]["error"] and str(bad) in out[1]["error"] and out[0]["error"] is None
    assert out[2]["topk"][0]["label"] in zoo.labels.label_names("ssv1")
    with pytest.raises(zoo.io.VideoError, match="bad.mp4"):
        rec(bad)


def test_parse_views():
    assert parse_views("3x10") == (3, 10)
    for bad in ("2x1", "3", "ax1", "1x0"):
        with pytest.raises(ValueError, match="views"):
            parse_views(bad)


def test_pretrained_without_weights_says_how_to_get_them(video, tmp_path):
    with pytest.raises(Exception, match="tsm_r50_ssv1_8f"):
        zoo.predict(video[0], model="tsm_r50_ssv1_8f", weights_dir=tmp_path)
