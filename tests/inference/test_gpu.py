"""The CUDA path: every model (ViNet, the three AViNet fusions, both STAViS heads, ViNet-S,
ViNet-A and their ensemble) under
bf16 / fp16 autocast gives the CPU's fp32 maps; pinned batches and resizing on the GPU,
the batch size fitted to memory, torch.compile, overlap reuse.

Marked ``cuda`` (deselected by default; ``pytest -m cuda`` runs them) and skipped where
no CUDA device is present. ``benchmarks/gpu_check.sh`` runs them on a lent GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import DATA, SMALL_INPUT

from salcli.inference import engine as E
from salcli.inference import hardware as H
from salcli.inference.predictor import Predictor
from salcli.media.decode import Frame
from salcli.models.vinet import ViNet, cast_for_precision, fold_batchnorm
from salcli.models.vinet_procedure import CLIP_LEN, INPUT_H, INPUT_W, frame_to_tensor

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = torch.device("cuda")
MIN_CC = 0.999  # per-frame CC of a half-precision map against the fp32 map
MIN_LEVELS = 256  # distinct values a map has at least when the half precision left it smooth
AUDIO_RATE = 48_000  # Hz, of the generated AViNet soundtracks
STAVIS_RATE = 22_050  # Hz, of the generated STAViS soundtracks (its own rate)
STAVIS_FRAMES = 10  # frames: the mirror warm-up (0-7), full clips, the loop-padded end
VIDEO_SIZE = (48, 64)  # (H, W) of the generated videos
HALF = ["bf16", "fp16"]


def _cc(a: np.ndarray, b: np.ndarray) -> float:
    """The worst per-frame correlation of two (N, H, W) map stacks."""
    return min(np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b, strict=True))


def _maps(weights, video, **kw) -> np.ndarray:
    kw.setdefault("input_size", SMALL_INPUT)
    return Predictor(weights, **kw).predict(video)


def _smooth(maps: np.ndarray) -> bool:
    """Each map spans [0, 1] in many levels: not quantized by the half precision (the
    models' last layers run in fp32)."""
    return all(m.min() == 0.0 and m.max() == 1.0 and len(np.unique(m)) > MIN_LEVELS for m in maps)


@pytest.fixture(scope="module")
def cpu_video(tmp_path_factory):
    from helpers import write_video

    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", n_frames=6, size=VIDEO_SIZE)


@pytest.fixture(scope="module")
def stavis_video(tmp_path_factory):
    from helpers import write_video

    folder = tmp_path_factory.mktemp("stavis")
    return write_video(
        folder / "toned.mp4", n_frames=STAVIS_FRAMES, size=VIDEO_SIZE, audio_rate=STAVIS_RATE
    )


@pytest.fixture(scope="module")
def stavis_cpu_maps(stavis_checkpoint, stavis_video):
    """The CPU's fp32 maps of each STAViS head, computed once for both precisions."""
    cache: dict[str, np.ndarray] = {}

    def maps(variant: str) -> np.ndarray:
        if variant not in cache:
            audio = variant == "stavis-audiovisual"
            p = Predictor(stavis_checkpoint, audio=audio, device="cpu", precision="fp32")
            cache[variant] = p.predict(stavis_video)
        return cache[variant]

    return maps


# -- every model on CUDA gives the CPU's fp32 maps ------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", *HALF])
def test_vinet_maps_on_cuda_equal_cpu_fp32(vinet_checkpoint, cpu_video, precision):
    ref = _maps(vinet_checkpoint, cpu_video, device="cpu", precision="fp32")
    p = Predictor(vinet_checkpoint, device="cuda", precision=precision, input_size=SMALL_INPUT)
    assert p.device.type == "cuda" and p.precision == precision
    got = p.predict(cpu_video)
    assert got.shape == ref.shape == (6, *VIDEO_SIZE)
    assert _cc(got, ref) >= MIN_CC  # fp32 on CUDA: cuDNN convolutions may run in TF32
    assert _smooth(got)


@pytest.mark.parametrize("fusion", ["transformer", "concat", "bilinear"])
@pytest.mark.parametrize("precision", HALF)
def test_avinet_maps_on_cuda_equal_cpu_fp32(make_video, avinet_checkpoints, fusion, precision):
    # AViNet(B)'s bilinear layer is tied to the 224x384 bottleneck
    size = (INPUT_H, INPUT_W) if fusion == "bilinear" else SMALL_INPUT
    video = make_video(n_frames=2, audio_rate=AUDIO_RATE)
    kw = dict(audio=True, fusion=fusion, input_size=size)
    ref = _maps(avinet_checkpoints[fusion], video, device="cpu", precision="fp32", **kw)
    p = Predictor(avinet_checkpoints[fusion], device="cuda", precision=precision, **kw)
    assert p.variant.name == fusion and p.device.type == "cuda" and p.precision == precision
    got = p.predict(video)
    assert got.shape == ref.shape == (2, *VIDEO_SIZE)
    assert _cc(got, ref) >= MIN_CC
    assert _smooth(got)


@pytest.mark.parametrize("variant", ["stavis-audiovisual", "stavis-visual"])
@pytest.mark.parametrize("precision", HALF)
def test_stavis_maps_on_cuda_equal_cpu_fp32(
    stavis_checkpoint, stavis_video, stavis_cpu_maps, variant, precision
):
    ref = stavis_cpu_maps(variant)
    audio = variant == "stavis-audiovisual"
    p = Predictor(stavis_checkpoint, audio=audio, device="cuda", precision=precision)
    assert p.variant.name == variant and p.audio is audio
    assert p.device.type == "cuda" and p.precision == precision and p.gpu_resize is True
    got = p.predict(stavis_video)
    assert got.shape == ref.shape == (STAVIS_FRAMES, *VIDEO_SIZE) and got.dtype == np.float32
    assert _cc(got, ref) >= MIN_CC
    assert _smooth(got)


@pytest.fixture(scope="module")
def vinet_pp_files(tmp_path_factory) -> dict[str, Path]:
    """ViNet-S and ViNet-A files as published (plain state_dicts), tamed for real video."""
    from salcli.testing import tamed_state_dict

    folder = tmp_path_factory.mktemp("vinet_pp")
    files = {}
    for name in ("vinet_s", "vinet_a"):
        files[name] = folder / f"{name}.pt"
        torch.save(tamed_state_dict(DATA / f"{name}.keys.json"), files[name])
    return files


@pytest.mark.parametrize("precision", HALF)
@pytest.mark.parametrize("members", [("vinet_s",), ("vinet_a",), ("vinet_s", "vinet_a")])
def test_vinet_pp_maps_on_cuda_equal_cpu_fp32(vinet_pp_files, cpu_video, members, precision):
    """ViNet-S at a small input, ViNet-A at its fixed 256x456, and the two as ViNet-E."""
    weights = [vinet_pp_files[m] for m in members]
    size = {} if "vinet_a" in members else {"input_size": SMALL_INPUT}
    ref = Predictor(weights, device="cpu", precision="fp32", **size).predict(cpu_video)
    p = Predictor(weights, device="cuda", precision=precision, **size)
    got = p.predict(cpu_video)
    assert got.shape == ref.shape == (6, *VIDEO_SIZE)
    assert _cc(got, ref) >= MIN_CC
    assert _smooth(got)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_model_under_cuda_autocast_returns_fp32_maps(dtype):
    """As the engine runs it: BatchNorm folded, convolutions stored in the dtype."""
    torch.manual_seed(0)
    model = fold_batchnorm(ViNet().eval())
    clip = torch.randn(2, 3, CLIP_LEN, *SMALL_INPUT)  # (B, 3, T, h, w)
    with torch.inference_mode():
        ref = model(clip)
        gpu = cast_for_precision(model, dtype).to(CUDA)
        with torch.autocast("cuda", dtype=dtype):
            out = gpu(clip.to(CUDA))
    assert out.dtype == torch.float32 and out.device.type == "cuda"
    assert _cc(out.cpu().numpy(), ref.numpy()) >= MIN_CC


# -- the CUDA settings ------------------------------------------------------------------------


def test_cuda_settings_pin_memory_and_resize_on_the_gpu(vinet_checkpoint):
    p = Predictor(vinet_checkpoint, device="cuda", input_size=SMALL_INPUT)
    assert p.pin_memory is True and p.gpu_resize is True and p.channels_last is True
    assert p.dtype in (torch.bfloat16, torch.float16)  # "auto" on CUDA
    assert p.reuse is False  # overlap reuse is a CPU default
    h, w = VIDEO_SIZE
    # a batch assembled from CPU frames is built in pinned memory, channels-last
    frames = [Frame(i, i / 25, None, h, w, tensor=torch.randn(3, *SMALL_INPUT))
              for i in range(CLIP_LEN + 1)]  # fmt: skip
    clips = [frames[:CLIP_LEN], frames[1:]]
    x = p.engine.assemble(clips)
    assert x.shape == (2, 3, CLIP_LEN, *SMALL_INPUT) and x.device.type == "cpu"
    assert x.is_pinned() and x.is_contiguous(memory_format=E.CHANNELS_LAST)
    assert torch.equal(x[1, :, 0], frames[1].tensor)
    # frames resized on the GPU make a batch there
    for f in frames:
        f.tensor = f.tensor.to(CUDA)
    y = p.engine.assemble(clips)
    assert y.device.type == "cuda" and y.is_contiguous(memory_format=E.CHANNELS_LAST)
    assert torch.equal(y.cpu(), x)
    assert p.engine(clips).shape == (2, *SMALL_INPUT)


def test_resize_on_the_gpu_matches_the_cpu():
    rgb = np.random.default_rng(0).integers(0, 256, (360, 640, 3), dtype=np.uint8)
    cpu = frame_to_tensor(rgb, (INPUT_H, INPUT_W))
    gpu = frame_to_tensor(rgb, (INPUT_H, INPUT_W), device="cuda")
    assert gpu.device.type == "cuda" and gpu.shape == cpu.shape == (3, INPUT_H, INPUT_W)
    diff = (gpu.cpu() - cpu).abs()
    # rounding to 8 bits may land one level apart (1 / 255 / std ~ 0.0175)
    assert diff.max() <= 0.02 and diff.mean() < 1e-3


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_batch_fitted_to_free_memory_fits_in_it(precision):
    """The batch chosen for a given amount of free memory runs within that memory."""
    free = 4 * 2**30  # bytes, as if the device had this much free
    dtype = H.DTYPES[precision]
    b = E.choose_batch_size(CUDA, dtype, free_bytes=free)
    assert 1 < b < E.MAX_AUTO_BATCH  # fitted, not capped
    torch.manual_seed(0)
    engine = E.Engine(fold_batchnorm(ViNet()), device="cuda", precision=precision,
                      batch_size=b, cast=cast_for_precision)  # fmt: skip
    x = torch.randn(b, 3, CLIP_LEN, INPUT_H, INPUT_W, device=CUDA)  # (B, 3, T, H, W)
    x = x.contiguous(memory_format=E.CHANNELS_LAST)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()  # the weights and the input
    out = engine.forward(x)
    torch.cuda.synchronize()
    used = torch.cuda.max_memory_allocated() - base
    assert out.shape == (b, INPUT_H, INPUT_W)
    assert used <= free, f"{b} clips took {used / 2**30:.2f} GiB"


def test_default_batch_runs_on_cuda(vinet_checkpoint, make_video):
    video = make_video(n_frames=40, size=VIDEO_SIZE)
    p = Predictor(vinet_checkpoint, device="cuda", input_size=SMALL_INPUT)
    assert p.batch_size == E.choose_batch_size(CUDA, p.dtype, SMALL_INPUT)
    maps = p.predict(video)
    assert maps.shape == (40, *VIDEO_SIZE) and np.isfinite(maps).all()


def test_compiled_model_gives_the_eager_maps(vinet_checkpoint, cpu_video):
    kw = dict(device="cuda", precision="bf16")
    eager = _maps(vinet_checkpoint, cpu_video, **kw)
    compiled = Predictor(vinet_checkpoint, compile=True, input_size=SMALL_INPUT, **kw)
    assert compiled.reuse is False  # torch.compile traces the plain forward pass
    got = compiled.predict(cpu_video)
    assert _cc(got, eager) >= MIN_CC


def test_overlap_reuse_on_cuda_gives_the_per_clip_maps(vinet_checkpoint, make_video, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # plain fp32 sums
    video = make_video(n_frames=40, size=VIDEO_SIZE)
    kw = dict(device="cuda", precision="fp32", warmup="reference", batch_size=6)
    plain = _maps(vinet_checkpoint, video, reuse=False, **kw)
    shared = _maps(vinet_checkpoint, video, reuse=True, **kw)
    assert _cc(shared, plain) > 0.99999
