import io

import pytest
import torch

import zoo
from zoo.models.resnet import DEPTHS, Slots, VideoResNet


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_depths_build_and_run(depth, clip):
    m = VideoResNet(depth, num_classes=7).eval()
    with torch.no_grad():
        assert m(clip).shape == (2, 7)


def test_keys_follow_torchvision_resnet():
    import torchvision

    ours = VideoResNet(50, num_classes=1000).state_dict()
    tv = torchvision.models.resnet50().state_dict()
    assert list(ours) == list(tv)
    assert all(ours[k].shape == tv[k].shape for k in tv)


def test_frames_come_from_the_input():
    m = zoo.create_model("tsm_r18", num_classes=5, num_frames=8).eval()
    with torch.no_grad():
        for T in (2, 4, 8, 16):
            assert m(torch.randn(1, 3, T, 32, 32)).shape == (1, 5)


def test_tsn_is_average_of_frames():
    m = zoo.create_model("tsn_r18", num_classes=5).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        whole = m(x)
        single = torch.stack([m(x[:, :, t:t + 1]) for t in range(4)]).mean(0)
    torch.testing.assert_close(whole, single, rtol=1e-4, atol=1e-5)


def test_forward_features_and_head(clip):
    m = zoo.create_model("tsm_r18", num_classes=5).eval()
    with torch.no_grad():
        f = m.forward_features(clip)
        assert f.shape == (2, 512, 8, 2, 2)                  # (B, C, T, H/32, W/32)
        torch.testing.assert_close(m.forward_head(f), m(clip))
        pooled = m.forward_head(f, pre_logits=True)
        assert pooled.shape == (2, 512)
        torch.testing.assert_close(pooled, f.mean((2, 3, 4)))
        torch.testing.assert_close(m.get_classifier()(pooled), m(clip))


def test_reset_classifier(clip):
    m = zoo.create_model("tsm_r18_ssv1_8f" if "tsm_r18_ssv1_8f" in zoo.list_models() else "tsm_r18", num_classes=5)
    m.reset_classifier(11)
    assert m.num_classes == 11 and m.get_classifier().out_features == 11
    with torch.no_grad():
        assert m.eval()(clip).shape == (2, 11)


def test_channels_last_same_output(clip):
    m = zoo.create_model("tsm_r18", num_classes=5).eval()
    with torch.no_grad():
        ref = m(clip)
        out = m.to(memory_format=torch.channels_last)(clip)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad, msg", [
    (torch.randn(2, 8, 3, 32, 32), "permute"),
    (torch.randn(3, 8, 32, 32), "unsqueeze"),
    (torch.randn(2, 1, 8, 32, 32), r"\(B, 3, T, H, W\)"),
    (torch.zeros(2, 3, 8, 32, 32, dtype=torch.uint8), "floating"),
])
def test_bad_input_names_expected_layout(bad, msg):
    m = zoo.create_model("tsn_r18", num_classes=5)
    with pytest.raises(ValueError, match=msg):
        m(bad)


def test_slots_reject_unknown_position():
    with pytest.raises(ValueError, match="calib_at"):
        Slots(calib_at="somewhere")


# -- the timm interface: feature maps, head, classifier ---------------------------------------

def test_intermediates_are_the_stage_outputs():
    """Known answer: the stem and layer maps computed by hand from the modules, laid out
    (B, C, T, h, w), with feature_info's channels and reductions."""
    m = zoo.create_model("tsm_r18", num_classes=5).eval()
    x = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        final, maps = m.forward_intermediates(x)
        f = x.transpose(1, 2).reshape(8, 3, 64, 64)
        f = m.maxpool(m.relu(m.bn1(m.conv1(f))))
        expect = [f]
        for layer in (m.layer1, m.layer2, m.layer3, m.layer4):
            for block in layer:
                f = block(f, 4)
            expect.append(f)
        assert torch.equal(final, m.forward_features(x))
    assert len(maps) == 5 == len(m.feature_info)
    for i, (got, ref) in enumerate(zip(maps, expect)):
        assert got.shape == (2, m.feature_info.channels(i), 4, 64 // m.feature_info.reduction(i),
                             64 // m.feature_info.reduction(i))
        torch.testing.assert_close(got, ref.view(2, 4, *ref.shape[1:]).transpose(1, 2))
    assert m.feature_info.channels() == [64, 64, 128, 256, 512]
    assert m.feature_info.reduction() == [4, 4, 8, 16, 32]
    assert m.feature_info.module_name() == ["maxpool", "layer1", "layer2", "layer3", "layer4"]
    with torch.no_grad():
        assert [t.shape[1] for t in m.forward_intermediates(x, indices=2, intermediates_only=True)] == [256, 512]
    with pytest.raises(ValueError, match="0..4"):
        m.forward_intermediates(x, indices=[5])


@pytest.mark.parametrize("name", ["tdn_r50", "gc_tsm_r50"])
def test_maps_do_not_change_when_more_are_asked_for(name):
    """Inference paths work in place on activations; a map handed out must not be modified by
    a later stage (TDN: per segment, the fused RGB + difference stream)."""
    m = zoo.create_model(name, num_classes=3, num_frames=2).eval()
    fps = getattr(m, "frames_per_segment", 1)
    x = torch.randn(1, 3, 2 * fps, 64, 64)
    with torch.no_grad():
        final, maps = m.forward_intermediates(x)
        for i in range(5):
            assert torch.equal(m.forward_intermediates(x, [i], stop_early=True, intermediates_only=True)[0], maps[i])
        torch.testing.assert_close(m.forward_head(final), m(x))
    assert [t.shape[2] for t in maps] == [2] * 5   # TDN: one step per segment


def test_reset_classifier_zero_gives_pooled_features(clip):
    m = zoo.create_model("tsm_r18", num_classes=5).eval()
    with torch.no_grad():
        f = m.forward_features(clip)
        m.reset_classifier(0)
        assert m.num_classes == 0 and isinstance(m.get_classifier(), torch.nn.Identity)
        out = m(clip)
    assert out.shape == (2, m.num_features)
    torch.testing.assert_close(out, f.mean((2, 3, 4)))
    with pytest.raises(ValueError, match="int >= 0"):
        m.reset_classifier(-1)


@pytest.mark.parametrize("name", ["tsn_r18", "tdn_r50"])
def test_zero_size_batch_gives_empty_outputs(name):
    m = zoo.create_model(name, num_classes=5, num_frames=2).eval()
    x = torch.randn(0, 3, 2 * getattr(m, "frames_per_segment", 1), 64, 64)
    assert m(x).shape == (0, 5)
    assert m.forward_features(x).shape == (0, m.num_features, 2, 2, 2)
    assert [t.shape[0] for t in m.forward_intermediates(x, intermediates_only=True)] == [0] * 5
    m.train()
    assert m(x).shape == (0, 5) and m.training


def test_tdn_below_its_minimum_size_says_the_minimum():
    m = zoo.create_model("tdn_r50", num_classes=3, num_frames=1).eval()
    with pytest.raises(ValueError, match="at least 33x33"):
        m(torch.randn(1, 3, 5, 32, 64))
    with torch.no_grad():
        assert m(torch.randn(1, 3, 5, 33, 33)).shape == (1, 3)


# -- training features --------------------------------------------------------------------------

def _step(m, x, seed=0):
    torch.manual_seed(seed)
    out = m(x)
    out.square().sum().backward()
    return out, {n: p.grad for n, p in m.named_parameters()}, {n: b.clone() for n, b in m.named_buffers()}


@pytest.mark.parametrize("name, frames, size", [("tsm_r18", 2, 32), ("tdn_r50", 1, 40)])
def test_grad_checkpointing_equals_the_plain_model(name, frames, size):
    import copy

    plain = zoo.create_model(name, num_classes=4, num_frames=frames, drop_path_rate=0.2).train()
    ckpt = copy.deepcopy(plain)
    ckpt.set_grad_checkpointing()
    calls = []
    ckpt.layer2[0].register_forward_hook(lambda *a: calls.append(1))
    x = torch.randn(2, 3, frames * getattr(plain, "frames_per_segment", 1), size, size)
    out_p, grads_p, bufs_p = _step(plain, x)
    out_c, grads_c, bufs_c = _step(ckpt, x)
    assert len(calls) == 2   # the stage really ran again in the backward pass
    torch.testing.assert_close(out_c, out_p, rtol=1e-5, atol=1e-6)
    for k in grads_p:
        torch.testing.assert_close(grads_c[k], grads_p[k], rtol=1e-4, atol=1e-6, msg=k)
    for k in bufs_p:   # BN statistics move once, as without checkpointing
        torch.testing.assert_close(bufs_c[k], bufs_p[k], msg=k)


def test_drop_path_is_stochastic_depth_on_the_residual_branch():
    from zoo.models.resnet import DropPath

    m = zoo.create_model("tsm_r18", num_classes=3, drop_path_rate=0.3, drop_rate=0.2)
    assert m.dropout.p == 0.2 and m.drop_rate == 0.2 and m.pretrained_cfg["kwargs"]["dropout"] == 0.2
    blocks = [b for layer in (m.layer1, m.layer2, m.layer3, m.layer4) for b in layer]
    rates = [b.drop_path.p if b.drop_path is not None else 0.0 for b in blocks]
    assert rates == pytest.approx([0.3 * i / 7 for i in range(8)])   # linear, 0 at the first block
    # placed before the residual add: a dropped branch leaves relu(identity) = the block input
    block = m.layer1[1].train()
    block.drop_path = DropPath(0.999999)
    x = torch.rand(4, 64, 8, 8)
    torch.manual_seed(0)
    assert torch.equal(block(x.clone(), 2), x)
    # whole clips are dropped (every frame of a clip together), survivors scaled by 1/(1-p)
    d = DropPath(0.25).train()
    y = d(torch.ones(4000 * 3, 1, 1, 1), 3).view(4000, 3)
    assert torch.equal(y.min(1).values, y.max(1).values)
    kept = y[:, 0] != 0
    torch.testing.assert_close(y[kept, 0], torch.full((int(kept.sum()),), 4 / 3))
    assert 0.2 < 1 - kept.float().mean() < 0.3
    assert torch.equal(d.eval()(x, 2), x)
    # eval: identical to the model without stochastic depth
    ref = zoo.create_model("tsm_r18", num_classes=3)
    ref.load_state_dict(m.state_dict())
    clip = torch.randn(1, 3, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(clip), ref.eval()(clip), rtol=0, atol=0)


def test_param_groups_as_timm():
    from timm.optim import param_groups_weight_decay

    m = zoo.create_model("gc_tsm_r50", num_classes=3)
    m.conv1.weight.requires_grad_(False)
    groups = zoo.param_groups(m, 1e-4)
    ours = {g["weight_decay"]: {id(p) for p in g["params"]} for g in groups}
    theirs = {}
    for g in param_groups_weight_decay(m, 1e-4):
        theirs.setdefault(g["weight_decay"], set()).update(id(p) for p in g["params"])
    assert ours == theirs
    names = {id(p): n for n, p in m.named_parameters()}
    no_decay = {names[i] for i in ours[0.0]}
    assert "bn1.weight" in no_decay and "fc.bias" in no_decay and "layer1.0.bn2.bias" in no_decay
    assert "fc.weight" not in no_decay and "conv1.weight" not in set(names[i] for g in ours.values() for i in g)
    torch.optim.SGD(groups, lr=0.1)


@pytest.mark.parametrize("name", ["tdn_r50", "gc_tsm_r50"])
def test_channels_last_same_output_other_families(name):
    m = zoo.create_model(name, num_classes=5, num_frames=2).eval()
    x = torch.randn(1, 3, 2 * getattr(m, "frames_per_segment", 1), 64, 64)
    with torch.no_grad():
        ref = m(x)
        out = m.to(memory_format=torch.channels_last)(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["tsm_r50", "gc_tsn_r50", "sda_tsm_r50", "aia_tsn_r50", "gst_r50", "stc_r50",
                                  "tdn_r50", "gc_tdn_r50"])
def test_a_whole_model_pickles(name):
    """``torch.save(model)`` and a process pool's pickling: the slot factories (closures) are
    used while building and not kept on the model."""
    m = zoo.create_model(name, num_classes=5, num_frames=4).eval()
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    x = torch.randn(1, 3, 4 * getattr(m, "frames_per_segment", 1), 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(back(x), m(x))
