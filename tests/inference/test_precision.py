"""Speed options of the pipeline: device/precision/batch choice, channels-last layout,
bf16 fidelity, ``stride`` interpolation, the writer thread."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from helpers import SMALL_INPUT
from torch import nn

from salcli.defaults import DEFAULT_BATCH_SIZE
from salcli.errors import UsageError
from salcli.inference import engine as E
from salcli.inference import hardware as H
from salcli.inference.clips import interpolate_maps, predict_key_frames
from salcli.inference.predictor import Predictor
from salcli.media.decode import Frame
from salcli.media.writers import WriterThread
from salcli.models.layers import MaxPool3d
from salcli.models.soundnet import SoundNet8
from salcli.models.vinet import FP32_TAIL, AViNet, ViNet, cast_for_precision, fold_batchnorm
from salcli.models.vinet_procedure import frame_to_tensor

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
    monkeypatch.setattr(H, "cpu_has_native_bf16", lambda: True)
    assert H.resolve_precision("auto", CPU) == torch.bfloat16
    monkeypatch.setattr(H, "cpu_has_native_bf16", lambda: False)
    assert H.resolve_precision("auto", CPU) == torch.float32


AVX512 = frozenset({"avx2", "avx512f", "avx512bw", "avx512vl"})  # Skylake-SP ... Ice Lake


@pytest.mark.parametrize(
    "flags, cap, bf16, fp16",
    [
        (AVX512, None, False, False),  # oneDNN emulates bf16 there: slower than fp32
        (AVX512 | {"avx512_bf16"}, None, True, False),  # Cooper Lake, Zen 4 / 5
        (AVX512 | {"avx512_bf16", "amx_bf16", "avx512_fp16"}, None, True, True),  # SPR
        (AVX512 | {"avx512_bf16", "amx_bf16", "avx512_fp16"}, "AVX512_CORE", False, False),
        (AVX512 | {"avx512_bf16", "amx_bf16", "avx512_fp16"}, "avx512_core_bf16", True, False),
        (AVX512 | {"avx512_bf16"}, "AVX2", False, False),
        (AVX512 | {"avx512_bf16"}, "ALL", True, False),  # no cap
        (None, None, None, None),  # flags not readable: not known (auto: fp32)
    ],
)
def test_native_16_bit_needs_the_instructions_and_no_cap(monkeypatch, flags, cap, bf16, fp16):
    monkeypatch.setattr(H, "onednn_computes", lambda dtype: True)
    monkeypatch.setattr(H, "x86_cpu_flags", lambda: flags)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert H.cpu_multiplies_natively(torch.bfloat16) is bf16
    assert H.cpu_multiplies_natively(torch.float16) is fp16
    assert H.cpu_multiplies_natively(torch.float32) is False
    # without oneDNN's kernels for it, never
    monkeypatch.setattr(H, "onednn_computes", lambda dtype: False)
    assert H.cpu_multiplies_natively(torch.bfloat16) is False


def test_the_cpu_flags_are_read_from_linux_on_x86(monkeypatch):
    import platform

    flags = H.x86_cpu_flags()
    if platform.system() == "Linux" and platform.machine().lower() in H.X86_MACHINES:
        assert flags is not None and "sse2" in flags  # every x86-64 CPU has SSE2
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert H.x86_cpu_flags.__wrapped__() is None  # not x86: not known


def test_auto_precision_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert H.resolve_precision("auto", CUDA) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert H.resolve_precision("auto", CUDA) == torch.float16


def test_explicit_and_unknown_precisions():
    assert H.resolve_precision("fp32", CUDA) == torch.float32
    assert H.resolve_precision("bf16", CPU) == torch.bfloat16
    assert H.resolve_precision("fp16", CUDA) == torch.float16
    with pytest.raises(UsageError, match="precision .int8.: choose from"):
        H.resolve_precision("int8", CPU)


def test_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert H.resolve_device("auto") == CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert H.resolve_device("auto") == CPU
    with pytest.raises(UsageError, match="no CUDA device"):
        H.resolve_device("cuda")


def test_channels_last_choice():
    assert E.resolve_channels_last(None, CPU) is True
    assert E.resolve_channels_last(None, CUDA) is True
    assert E.resolve_channels_last(False, CUDA) is False


def test_batch_size_choice():
    assert E.choose_batch_size(CPU, torch.float32) == DEFAULT_BATCH_SIZE
    gib = 2**30
    assert E.choose_batch_size(CUDA, torch.bfloat16, free_bytes=140 * gib) == E.MAX_AUTO_BATCH
    small_fp32 = E.choose_batch_size(CUDA, torch.float32, free_bytes=4 * gib)
    small_bf16 = E.choose_batch_size(CUDA, torch.bfloat16, free_bytes=4 * gib)
    assert 1 <= small_fp32 < small_bf16 < E.MAX_AUTO_BATCH
    assert E.choose_batch_size(CUDA, torch.float32, free_bytes=1) == 1
    assert E.choose_batch_size(CUDA, torch.float32, (32, 64), free_bytes=4 * gib) > small_fp32


def test_bad_stride_and_batch_size():
    with pytest.raises(UsageError, match="stride must be an integer of at least 1"):
        Predictor(model=LastFrameBrightness(), device="cpu", stride=0)
    with pytest.raises(UsageError, match="batch_size must be an integer of at least 1"):
        Predictor(model=LastFrameBrightness(), device="cpu", batch_size=0)


def test_predictor_settings_on_cpu():
    p = Predictor(model=LastFrameBrightness(), device="cpu", batch_size=None)
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
        E.to_channels_last_3d(model)
        conv = model.backbone.base1[0].conv_s.weight
        assert conv.is_contiguous(memory_format=torch.channels_last_3d)
        out = model(x.contiguous(memory_format=torch.channels_last_3d))
    assert torch.allclose(out, ref, atol=1e-5)


def test_channels_last_skips_4d_weights():
    model = E.to_channels_last_3d(AViNet("bilinear"))  # SoundNet holds 4-D conv weights
    assert model.audionet.conv1.weight.dim() == 4
    assert model.visual_model.backbone.base1[0].conv_s.weight.is_contiguous(
        memory_format=torch.channels_last_3d
    )


@pytest.mark.parametrize("channels_last", [True, False])
def test_assembled_batch_is_the_stacked_clips(channels_last):
    p = Predictor(model=LastFrameBrightness(), device="cpu", channels_last=channels_last)
    frames = [Frame(i, i / 25, None, 8, 8, tensor=torch.randn(3, 4, 6)) for i in range(5)]
    clips = [frames[0:3], frames[2:5]]
    x = p.engine.assemble(clips)
    expected = torch.stack([torch.stack([f.tensor for f in c], dim=1) for c in clips])
    assert x.shape == (2, 3, 3, 4, 6)
    assert torch.equal(x, expected)
    assert x.is_contiguous(memory_format=torch.channels_last_3d) == channels_last


def _in_heap(address: int) -> bool:
    """Whether ``address`` lies in the process's malloc heap (not in a mapping of its own)."""
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip().endswith("[heap]"):
                lo, hi = (int(v, 16) for v in line.split()[0].split("-"))
                if lo <= address < hi:
                    return True
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
def test_a_cpu_predictor_keeps_freed_memory_for_reuse():
    from salcli.inference.hardware import keep_freed_memory

    Predictor(model=LastFrameBrightness(), device="cpu")
    if not keep_freed_memory():
        pytest.skip("the C library is not glibc")
    assert keep_freed_memory() is True  # once per process; asking again changes nothing
    x = torch.empty(2**24)  # 64 MiB: glibc would map it apart and unmap it when freed
    assert _in_heap(x.data_ptr())


def test_frame_to_tensor_on_a_named_device_is_the_same():
    rgb = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    assert torch.equal(frame_to_tensor(rgb, (32, 64)), frame_to_tensor(rgb, (32, 64), device="cpu"))


# -- every model path under every precision -------------------------------------------
# bf16 and fp16 run on any CPU (emulated, slowly, where it lacks them), so these run on
# every machine; one clip at a small input keeps them cheap where they are emulated.

HALF = ("bf16", "fp16")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
ARCH_AT_SMALL_INPUT = ("vinet", "transformer", "concat")  # bilinear needs 224x384


def _levels(m: np.ndarray) -> int:
    return len(np.unique(m))


@pytest.fixture(scope="module")
def small_models():
    torch.manual_seed(0)
    return {"vinet": ViNet().eval(), **{f: AViNet(f).eval() for f in ("transformer", "concat")}}


@pytest.mark.parametrize("precision", HALF)
@pytest.mark.parametrize("arch", ARCH_AT_SMALL_INPUT)
def test_model_maps_under_half_precision_keep_fp32_resolution(small_models, arch, precision):
    model = fold_batchnorm(small_models[arch])  # as predict runs a loaded checkpoint
    clip = torch.randn(1, 3, 32, *SMALL_INPUT, generator=torch.Generator().manual_seed(1))
    args = (clip,) if arch == "vinet" else (clip, 0.1 * torch.randn(1, 1, 70560, 1))
    with torch.inference_mode():
        ref = model(*args)
        with torch.autocast("cpu", dtype=DTYPES[precision]):
            out = model(*args)
    assert out.dtype == torch.float32  # the sigmoid and the layers before it run in fp32
    a, b = out[0].numpy(), ref[0].numpy()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.999
    # not quantized: about as many distinct values as in fp32 (a bf16 sigmoid gives a few)
    assert _levels(a) >= 0.9 * _levels(b)


@pytest.mark.parametrize("precision", HALF)
def test_bilinear_fusion_under_half_precision(precision):
    torch.manual_seed(0)
    model = AViNet("bilinear").eval()
    dtype = DTYPES[precision]
    y0 = torch.randn(2, 1024, 4, 7, 12)
    sound = torch.randn(2, 1024, 3, 1)
    with torch.inference_mode():
        ref = model.fuse(y0, sound)
        with torch.autocast("cpu", dtype=dtype):  # a half y0 and sound, as autocast makes
            out = model.fuse(y0.to(dtype), sound.to(dtype))
    assert out.shape == ref.shape == (2, 1024, 4, 7, 12)
    assert torch.allclose(out.float(), ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("precision", HALF)
def test_soundnet_under_half_precision(precision):
    torch.manual_seed(0)
    net = fold_batchnorm(SoundNet8().eval())
    wave = 0.1 * torch.randn(1, 1, 70560, 1)
    with torch.inference_mode():
        ref = net(wave)
        with torch.autocast("cpu", dtype=DTYPES[precision]):
            out = net(wave).float()
    assert out.shape == ref.shape == (1, 1024, 3, 1)
    assert np.corrcoef(out.ravel(), ref.ravel())[0, 1] >= 0.999


@pytest.mark.parametrize("precision", HALF)
def test_pipeline_maps_under_half_precision_agree_with_fp32(make_video, precision):
    torch.manual_seed(0)
    model = ViNet().eval()
    video = make_video(n_frames=3, size=(48, 64))
    kw = dict(model=model, device="cpu", input_size=SMALL_INPUT)
    a = Predictor(precision="fp32", **kw).predict(video)
    half = Predictor(precision=precision, **kw)
    assert half.precision == precision
    b = half.predict(video)
    assert _cc(a, b) >= 0.999
    assert all(m.min() == 0.0 and m.max() == 1.0 and _levels(m) > 256 for m in b)


@pytest.mark.parametrize("arch", ARCH_AT_SMALL_INPUT)
def test_model_cast_once_gives_the_autocast_maps(small_models, arch):
    """Convolutions stored in bf16 compute what autocast computes from fp32 weights (it
    casts them on every call); the fp32 tail keeps fp32."""
    model = fold_batchnorm(copy.deepcopy(small_models[arch]))
    cast = cast_for_precision(copy.deepcopy(model), torch.bfloat16)
    vinet = cast if arch == "vinet" else cast.visual_model
    assert vinet.backbone.base1[0].conv_s.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in vinet.decoder.convtsp4[-FP32_TAIL:].parameters())
    if arch == "transformer":  # not a convolution: autocast handles it
        assert cast.transformer.transformer_encoder.layers[0].norm1.weight.dtype == torch.float32
    # one clip at the smallest input: bf16 is emulated, slowly, on CPUs without it
    clip = torch.randn(1, 3, 32, 32, 32, generator=torch.Generator().manual_seed(2))
    args = (clip,) if arch == "vinet" else (clip, 0.1 * torch.randn(1, 1, 70560, 1))
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = model(*args)
        got = cast(*args)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert cast_for_precision(model, torch.float32) is model  # fp32: nothing to do
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_max_pooling_keeps_the_half_dtype_under_autocast():
    x = torch.randn(2, 8, 6, 10, 12).to(torch.bfloat16)  # (B, C, T, H, W)
    pool = MaxPool3d(kernel_size=3, stride=(1, 2, 2), padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = pool(x)
        plain = torch.nn.functional.max_pool3d(x, 3, (1, 2, 2), 1)  # autocast: fp32
    assert out.dtype == torch.bfloat16 and plain.dtype == torch.float32
    assert torch.equal(out.float(), plain)  # a maximum rounds nothing


def test_loaded_checkpoint_runs_cast_and_agrees_with_fp32(vinet_checkpoint, make_video):
    video = make_video(n_frames=3, size=(48, 64))
    kw = dict(device="cpu", input_size=SMALL_INPUT)
    fp32 = Predictor(vinet_checkpoint, precision="fp32", **kw)
    bf16 = Predictor(vinet_checkpoint, precision="bf16", **kw)
    assert fp32.model.backbone.base1[0].conv_s.weight.dtype == torch.float32
    assert bf16.model.backbone.base1[0].conv_s.weight.dtype == torch.bfloat16
    a, b = fp32.predict(video), bf16.predict(video)
    assert _cc(a, b) >= 0.999
    assert all(m.min() == 0.0 and m.max() == 1.0 and _levels(m) > 256 for m in b)


def test_auto_precision_is_recorded(make_video, tmp_path, monkeypatch):
    import h5py

    monkeypatch.setattr(H, "cpu_has_native_bf16", lambda: True)
    p = Predictor(model=LastFrameBrightness(), device="cpu", input_size=(32, 32))
    assert p.precision == "bf16"
    p.write(make_video(n_frames=2, size=(16, 24)), tmp_path / "out", ["h5"])
    with h5py.File(tmp_path / "out" / "clip.h5") as f:
        assert f.attrs["precision"] == "bf16"


@pytest.mark.slow
@pytest.mark.parametrize("precision", HALF)
@pytest.mark.parametrize("arch", ["vinet", "bilinear", "transformer", "concat"])
def test_every_model_at_the_real_input_size(arch, precision):
    """Per-map CC >= 0.999 against fp32 at 224x384 (slow where the precision is emulated)."""
    torch.manual_seed(0)
    model = fold_batchnorm(ViNet().eval() if arch == "vinet" else AViNet(arch).eval())
    clip = torch.randn(1, 3, 32, 224, 384)
    args = (clip,) if arch == "vinet" else (clip, 0.1 * torch.randn(1, 1, 70560, 1))
    with torch.inference_mode():
        ref = model(*args)
        with torch.autocast("cpu", dtype=DTYPES[precision]):
            out = model(*args)
    assert np.corrcoef(out[0].ravel(), ref[0].ravel())[0, 1] >= 0.999
    assert _levels(out[0].numpy()) >= 0.9 * _levels(ref[0].numpy())


# -- stride --------------------------------------------------------------------------------


def _clips(n: int) -> list[tuple[int, int, list[int]]]:
    """(t, frame, clip) as salcli.inference.clips.iter_clips gives them; frames are numbers."""
    return [(t, t, [max(0, t - 2), max(0, t - 1), t]) for t in range(n)]


@pytest.mark.parametrize(
    "n,stride,batch", [(20, 3, 2), (10, 4, 1), (9, 4, 8), (5, 1, 2), (1, 3, 4)]
)
def test_schedule_predicts_every_kth_frame_and_the_last(n, stride, batch):
    calls: list[list] = []

    def predict(clips):  # a clip's "map" is its last frame's number, everywhere
        calls.append(clips)
        return [np.full((2, 2), float(c[-1]), np.float32) for c in clips]

    got = list(predict_key_frames(_clips(n), predict, stride=stride, batch_size=batch))
    keys = sorted(set(range(0, n, stride)) | {n - 1})
    assert [frame for frame, _ in got] == list(range(n))  # every frame, in order
    assert [c[-1] for call in calls for c in call] == keys  # only the keys, in order
    assert max(len(call) for call in calls) <= batch
    for t, (_, raw) in enumerate(got):
        # keys keep their map; the frames between get the linear interpolation, which
        # for maps equal to their frame numbers is the frame number itself
        np.testing.assert_allclose(raw, t, atol=1e-5)


def test_stride_runs_the_model_on_the_keys_only(make_video):
    model = LastFrameBrightness()
    p = Predictor(model=model, device="cpu", input_size=(32, 32), stride=4, batch_size=2)
    maps = p.predict(make_video(n_frames=10, size=(16, 24)))
    assert maps.shape == (10, 16, 24)
    assert sum(model.calls) == 4 and max(model.calls) <= 2  # frames 0, 4, 8 and 9


def test_interpolate_maps():
    a, b = np.zeros((2, 2), np.float32), np.ones((2, 2), np.float32)
    out = interpolate_maps(a, b, 0.25)
    assert out.dtype == np.float32 and np.allclose(out, 0.25)


# -- writer thread -------------------------------------------------------------------------


def test_sink_handles_items_in_order_and_reraises():
    seen = []
    sink = WriterThread(seen.append, 2)
    for i in range(10):
        sink.put(i)
    sink.close()
    assert seen == list(range(10))

    def boom(item):
        raise ValueError(f"bad {item}")

    sink = WriterThread(boom, 2)
    with pytest.raises(ValueError, match="bad 0"):
        for i in range(100):
            sink.put(i)
        sink.close()
    sink.abort()


def test_write_with_stride_writes_every_frame(make_video, tmp_path):
    video = make_video(n_frames=11, size=(16, 24))
    p = Predictor(model=LastFrameBrightness(), device="cpu", input_size=(32, 32), stride=5)
    result = p.write(video, tmp_path / "out", ["png", "h5"])
    assert result.frames == 11
    assert len(list((tmp_path / "out" / "clip").glob("*.png"))) == 11


def test_a_failing_writer_leaves_nothing(make_video, tmp_path, monkeypatch):
    from salcli.media import writers

    video = make_video(n_frames=6, size=(16, 24))
    real_write = writers.PngWriter._write
    written = []

    def fail_at_frame_4(self, index, saliency, time, rgb):
        if index == 4:  # frames 0-3 are on disk (in the hidden temporary folder) by now
            written.extend((self.out_dir).glob(".*/*.png"))
            raise OSError(28, "No space left on device")
        real_write(self, index, saliency, time, rgb)

    monkeypatch.setattr(writers.PngWriter, "_write", fail_at_frame_4)
    p = Predictor(model=LastFrameBrightness(), device="cpu", input_size=(32, 32))
    out = tmp_path / "out"
    with pytest.raises(Exception, match="disk full"):
        p.write(video, out, ["png", "h5"])
    assert len(written) == 4  # there was something to clean up
    assert not out.exists()  # the temporaries, the h5 and the folder this run made: gone
