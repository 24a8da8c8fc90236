import pytest
import torch

import zoo
from zoo.models.temporal import temporal_shift


def naive_shift(x, T, fold_div=8):
    """TSM's shift as the authors write it: zeros plus slice assignment."""
    N, C, H, W = x.shape
    v = x.view(N // T, T, C, H, W)
    fold = C // fold_div
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out.view(N, C, H, W)


@pytest.mark.parametrize("T, C", [(8, 64), (3, 16), (16, 256), (1, 8), (4, 12)])
def test_shift_matches_the_definition(T, C):
    x = torch.randn(2 * T, C, 5, 5)
    torch.testing.assert_close(temporal_shift(x, T), naive_shift(x, T), rtol=0, atol=0)


@pytest.mark.parametrize("T, C", [(8, 64), (1, 8), (4, 12)])
def test_inference_shift_is_one_copy_with_the_same_result(T, C):
    x = torch.randn(2 * T, C + 8, 5, 5)[:, 4:C + 4]  # a channel slice, as STC's S_T shifts it
    with torch.no_grad():
        out = temporal_shift(x, T)
        cl = temporal_shift(x, T, memory_format=torch.channels_last)  # STC's S_T conv input
    assert out.is_contiguous() and cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, naive_shift(x.contiguous(), T), rtol=0, atol=0)
    torch.testing.assert_close(cl, out, rtol=0, atol=0)


def test_shift_keeps_channels_last():
    x = torch.randn(16, 64, 7, 7).to(memory_format=torch.channels_last)
    out = temporal_shift(x, 8)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, naive_shift(x.contiguous(), 8))


def test_tsm_traces_and_runs_on_new_data():
    m = zoo.create_model("tsm_r18", num_classes=5).eval()
    x1, x2 = torch.randn(2, 1, 3, 4, 32, 32).unbind(0)
    with torch.no_grad():
        traced = torch.jit.trace(m, (x1,), check_trace=False)
        torch.testing.assert_close(traced(x2), m(x2), rtol=1e-4, atol=1e-5)


def test_tsm_onnx_export_keeps_outputs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    m = zoo.create_model("tsm_r18", num_classes=5).eval()
    x1, x2 = torch.randn(2, 1, 3, 4, 32, 32).unbind(0)
    path = tmp_path / "tsm.onnx"
    torch.onnx.export(m, (x1,), str(path), input_names=["clip"], output_names=["logits"], dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"clip": x2.numpy()})[0]
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(out), m(x2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("B, T, C", [(1, 8, 64), (3, 4, 16), (2, 1, 8)])
def test_shift_fused_into_the_1x1_conv(B, T, C):
    from zoo.models.temporal import shift_conv1x1

    x = torch.randn(B * T, C, 5, 5, requires_grad=True)
    conv = torch.nn.Conv2d(C, 12, 1, bias=True)
    ref = conv(naive_shift(x, T))
    out = shift_conv1x1(x, T, conv)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    g1 = torch.autograd.grad(out.square().sum(), (x, conv.weight))
    g2 = torch.autograd.grad(ref.square().sum(), (x, conv.weight))
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_in_place_shift_is_undone():
    from zoo.models.temporal import TemporalShift, shift_, unshift_

    x = torch.randn(16, 32, 4, 4)
    x0 = x.clone()
    kept = shift_(x, 8)
    torch.testing.assert_close(x, naive_shift(x0, 8), rtol=0, atol=0)
    unshift_(x, 8, kept)
    assert torch.equal(x, x0)
    # around(): a 3x3 conv cannot be fused, so x is shifted in place for the call, then restored
    conv = torch.nn.Conv2d(32, 8, 3, padding=1)
    with torch.no_grad():
        out = TemporalShift(8, inplace=True).around(x, 8, conv)
        assert torch.equal(x, x0)
        torch.testing.assert_close(out, conv(naive_shift(x0, 8)))
        # without inplace (a user's module) the input is never written
        seen = []
        TemporalShift(8).around(x, 8, lambda y: seen.append(y.data_ptr() == x.data_ptr()))
        assert seen == [False]


@pytest.mark.parametrize("size", [8, 12])  # 64 pixels: in-place shift around conv1; 144: fused
def test_tsm_block_leaves_its_input_unchanged(size):
    m = zoo.create_model("tsm_r50", num_classes=3).eval()
    x = torch.randn(8, 256, size, size)
    x0 = x.clone()
    ref = m.layer1[1](x, 8).detach()  # autograd on: the shifted copy
    with torch.no_grad():
        out = m.layer1[1](x, 8)
    assert torch.equal(x, x0)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_tsm_basic_block_trains_with_a_frozen_input():
    # the block's input needs no grad (earlier layers frozen) but its convs do: the shift must
    # not be done in place, conv1 keeps the shifted input for its backward
    m = zoo.create_model("tsm_r18", num_classes=3)
    x = torch.randn(2 * 4, 64, 8, 8)
    out = m.layer1[0](x, 4)
    out.sum().backward()
    assert m.layer1[0].conv1.weight.grad is not None
