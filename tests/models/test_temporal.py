import pytest
import torch

import zoo
from zoo.models.temporal import _shift_pointwise, temporal_shift


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


@pytest.mark.parametrize("T, C", [(8, 64), (3, 16), (1, 8), (4, 12)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_compiled_form_of_the_shift_is_the_same_shift(T, C, channels_last):
    """The element-wise form torch.compile traces, run eagerly: the same values, same layout."""
    x = torch.randn(2 * T, C, 5, 5)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    out = _shift_pointwise(x, T, C // 8)
    torch.testing.assert_close(out, naive_shift(x.contiguous(), T), rtol=0, atol=0)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_compiled_shift_takes_the_pointwise_form():
    torch._dynamo.reset()
    seen = []
    compiled = torch.compile(lambda x: temporal_shift(x, 4), backend=lambda gm, ex: seen.append(gm) or gm.forward)
    x = torch.randn(8, 16, 3, 3)
    torch.testing.assert_close(compiled(x), naive_shift(x, 4), rtol=0, atol=0)
    ops = {str(n.target) for gm in seen for n in gm.graph.nodes if n.op == "call_function"}
    assert any("roll" in o for o in ops) and any("where" in o for o in ops), ops


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


def test_tsm_basic_block_trains_with_a_frozen_input():
    # the block's input needs no grad (earlier layers frozen) but its convs do: the shift must
    # not be done in place, conv1 keeps the shifted input for its backward
    m = zoo.create_model("tsm_r18", num_classes=3)
    x = torch.randn(2 * 4, 64, 8, 8)
    out = m.layer1[0](x, 4)
    out.sum().backward()
    assert m.layer1[0].conv1.weight.grad is not None
