"""Speed options of the pipeline: device/precision/batch choice, channels-last layout,
bf16 fidelity, ``stride`` interpolation, the writer thread."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import SMALL_INPUT
from torch import nn

from salcli.decode import open_video
from salcli.defaults import DEFAULT_BATCH_SIZE
from salcli.errors import UsageError
from salcli.model import AViNet, ViNet
from salcli.preprocess import frame_to_tensor

P = sys.modules["salcli.predict"]  # the module (salcli.predict is also a function)
CPU = torch.device("cpu")
CUDA = torch.device("cuda")


class LastFrameBrightness(nn.Module):
    """(B, 3, T, h, w) -> (B, h, w): a cheap stand-in model; counts its calls."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[int] = []

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        self.calls.append(clip.shape[0])
        return torch.sigmoid(self.scale * clip[:, :, -1].mean(dim=1))


def _cc(a: np.ndarray, b: np.ndarray) -> float:
    return min(np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b, strict=True))


# -- choosing device, precision, layout, batch size -------------------------------------


def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    assert P.resolve_precision("auto", CPU) == torch.bfloat16
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    assert P.resolve_precision("auto", CPU) == torch.float32


def test_auto_precision_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert P.resolve_precision("auto", CUDA) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert P.resolve_precision("auto", CUDA) == torch.float16


def test_explicit_and_unknown_precisions():
    assert P.resolve_precision("fp32", CUDA) == torch.float32
    assert P.resolve_precision("bf16", CPU) == torch.bfloat16
    assert P.resolve_precision("fp16", CUDA) == torch.float16
    with pytest.raises(UsageError, match="unknown precision"):
        P.resolve_precision("int8", CPU)


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert P.resolve_device("auto") == CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert P.resolve_device("auto") == CPU
    with pytest.raises(UsageError, match="no CUDA device"):
        P.resolve_device("cuda")


def test_channels_last_choice():
    assert P.resolve_channels_last(None, CPU) is True
    assert P.resolve_channels_last(None, CUDA) is True
    assert P.resolve_channels_last(False, CUDA) is False


def test_batch_size_choice():
    assert P.choose_batch_size(CPU, torch.float32) == DEFAULT_BATCH_SIZE
    gib = 2**30
    assert P.choose_batch_size(CUDA, torch.bfloat16, free_bytes=140 * gib) == P.MAX_AUTO_BATCH
    small_fp32 = P.choose_batch_size(CUDA, torch.float32, free_bytes=4 * gib)
    small_bf16 = P.choose_batch_size(CUDA, torch.bfloat16, free_bytes=4 * gib)
    assert 1 <= small_fp32 < small_bf16 < P.MAX_AUTO_BATCH
    assert P.choose_batch_size(CUDA, torch.float32, free_bytes=1) == 1
    assert P.choose_batch_size(CUDA, torch.float32, (32, 64), free_bytes=4 * gib) > small_fp32


def test_bad_stride_and_batch_size():
    with pytest.raises(UsageError, match="stride"):
        P.Predictor(model=LastFrameBrightness(), device="cpu", stride=0)
    with pytest.raises(UsageError, match="batch-size"):
        P.Predictor(model=LastFrameBrightness(), device="cpu", batch_size=0)


def test_predictor_settings_on_cpu():
    p = P.Predictor(model=LastFrameBrightness(), device="cpu", batch_size=None)
    assert p.batch_size == DEFAULT_BATCH_SIZE
    assert p.gpu_resize is False and p.pin_memory is False
    assert p.channels_last is True


# -- layout and precision keep the maps ---------------------------------------------------


def test_channels_last_model_gives_the_same_output():
    torch.manual_seed(0)
    model = ViNet().eval()
    x = torch.randn(1, 3, 32, 32, 32)
    with torch.inference_mode():
        ref = model(x)
        P.to_channels_last_3d(model)
        conv = model.backbone.base1[0].conv_s.weight
        assert conv.is_contiguous(memory_format=torch.channels_last_3d)
        out = model(x.contiguous(memory_format=torch.channels_last_3d))
    assert torch.allclose(out, ref, atol=1e-5)


def test_channels_last_skips_4d_weights():
    model = P.to_channels_last_3d(AViNet("bilinear"))  # SoundNet holds 4-D conv weights
    assert model.audionet.conv1.weight.dim() == 4
    assert model.visual_model.backbone.base1[0].conv_s.weight.is_contiguous(
        memory_format=torch.channels_last_3d
    )


@pytest.mark.parametrize("channels_last", [True, False])
def test_assembled_batch_is_the_stacked_clips(channels_last):
    p = P.Predictor(model=LastFrameBrightness(), device="cpu", channels_last=channels_last)
    frames = [P._Item(i, i / 25, 8, 8, torch.randn(3, 4, 6)) for i in range(5)]
    clips = [frames[0:3], frames[2:5]]
    x = p._assemble(clips)
    expected = torch.stack([torch.stack([f.tensor for f in c], dim=1) for c in clips])
    assert x.shape == (2, 3, 3, 4, 6)
    assert torch.equal(x, expected)
    assert x.is_contiguous(memory_format=torch.channels_last_3d) == channels_last


def test_frame_to_tensor_on_a_named_device_is_the_same():
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert torch.equal(frame_to_tensor(rgb, (32, 64)), frame_to_tensor(rgb, (32, 64), device="cpu"))


@pytest.mark.skipif(not P.cpu_has_native_bf16(), reason="this CPU has no native bf16")
def test_bf16_maps_agree_with_fp32(make_video):
    torch.manual_seed(0)
    model = ViNet().eval()
    video = make_video(n_frames=6, size=(48, 64))
    kw = dict(model=model, device="cpu", input_size=SMALL_INPUT, batch_size=6)
    a = P.Predictor(precision="fp32", **kw).predict(video)
    b = P.Predictor(precision="bf16", **kw).predict(video)
    assert _cc(a, b) >= 0.999


# -- stride --------------------------------------------------------------------------------


def _raw(p, video) -> list:
    reader = open_video(video)
    return list(p._raw_maps(reader, reader.meta, None))


@pytest.mark.parametrize("n,stride,batch", [(20, 3, 2), (10, 4, 1), (9, 4, 8), (5, 1, 2)])
def test_stride_predicts_every_kth_frame_and_the_last(make_video, n, stride, batch):
    video = make_video(n_frames=n, size=(16, 24))
    full = _raw(P.Predictor(model=LastFrameBrightness(), device="cpu", input_size=(32, 32)), video)
    model = LastFrameBrightness()
    p = P.Predictor(model=model, device="cpu", input_size=(32, 32), stride=stride, batch_size=batch)
    got = _raw(p, video)
    keys = sorted(set(range(0, n, stride)) | {n - 1})
    assert [g[0] for g in got] == list(range(n))
    assert sum(model.calls) == len(keys) and max(model.calls) <= batch
    for t in keys:
        np.testing.assert_allclose(got[t][2], full[t][2], atol=1e-6)
    for t in range(n):
        if t in keys:
            continue
        t0, t1 = max(k for k in keys if k < t), min(k for k in keys if k > t)
        w = (t - t0) / (t1 - t0)
        np.testing.assert_allclose(got[t][2], (1 - w) * full[t0][2] + w * full[t1][2], atol=1e-6)
    assert all(g[3:] == (16, 24) for g in got)


def test_interpolate_maps():
    a, b = np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)
    out = P.interpolate_maps(a, b, 0.25)
    assert out.dtype == np.float32 and np.allclose(out, 0.25)


# -- writer thread -------------------------------------------------------------------------


def test_sink_handles_items_in_order_and_reraises():
    seen = []
    sink = P._Sink(seen.append, 2)
    for i in range(10):
        sink.put(i)
    sink.close()
    assert seen == list(range(10))

    def boom(item):
        raise ValueError(f"bad {item}")

    sink = P._Sink(boom, 2)
    with pytest.raises(ValueError, match="bad 0"):
        for i in range(100):
            sink.put(i)
        sink.close()
    sink.abort()


def test_write_with_stride_writes_every_frame(make_video, tmp_path):
    video = make_video(n_frames=11, size=(16, 24))
    p = P.Predictor(model=LastFrameBrightness(), device="cpu", input_size=(32, 32), stride=5)
    result = p.write(video, tmp_path / "out", ["png", "h5"])
    assert result.frames == 11
    assert len(list((tmp_path / "out" / "clip").glob("*.png"))) == 11


def test_a_failing_writer_leaves_nothing(make_video, tmp_path, monkeypatch):
    from salcli import writers

    video = make_video(n_frames=6, size=(16, 24))

    def fail(self, index, saliency, time):
        raise OSError("disk full")

    monkeypatch.setattr(writers.PngWriter, "_write", fail)
    p = P.Predictor(model=LastFrameBrightness(), device="cpu", input_size=(32, 32))
    with pytest.raises(Exception, match="disk full"):
        p.write(video, tmp_path / "out", ["png"])
    assert not list((tmp_path / "out").glob("**/*.png"))
