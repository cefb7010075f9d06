"""Overlap reuse (salcli.inference.overlap): batches of consecutive clips give the maps of the
plain per-clip forward pass, with fewer operations."""

from __future__ import annotations

import weakref
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import SMALL_INPUT
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from salcli.defaults import DEFAULT_BATCH_SIZE, DEFAULT_REUSE_BATCH_SIZE
from salcli.errors import UsageError
from salcli.inference import engine as E
from salcli.inference.overlap import consecutive_runs, forward_windows
from salcli.inference.predictor import Predictor
from salcli.media.decode import Frame
from salcli.models.vinet import AViNet, ViNet, cast_for_precision, fold_batchnorm
from salcli.testing import randomize_norms

T = 32  # frames per clip
CL = torch.channels_last_3d


@pytest.fixture(scope="module")
def vinet() -> ViNet:
    torch.manual_seed(0)
    return randomize_norms(ViNet())


def _clips(frames: torch.Tensor) -> torch.Tensor:
    """(1, 3, L, H, W) -> every clip of T consecutive frames, (L - T + 1, 3, T, H, W)."""
    n = frames.shape[2] - T + 1
    return torch.cat([frames[:, :, j : j + T] for j in range(n)])


@pytest.mark.parametrize(
    "n_clips, folded, channels_last",
    [(1, False, False), (2, True, True), (5, False, True), (9, True, False)],
)
def test_windows_equal_the_per_clip_forward(vinet, n_clips, folded, channels_last):
    model = fold_batchnorm(randomize_norms(ViNet())) if folded else vinet
    torch.manual_seed(n_clips)
    frames = torch.randn(1, 3, n_clips + T - 1, 64, 96)  # (1, 3, L, H, W)
    clips = _clips(frames)
    if channels_last:
        frames, clips = frames.contiguous(memory_format=CL), clips.contiguous(memory_format=CL)
    with torch.inference_mode():
        want = model(clips)
        got = forward_windows(model, frames, T, chunk=2)
    assert got.shape == (n_clips, 64, 96)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


@pytest.mark.parametrize("fusion", ["transformer", "concat"])
def test_windows_with_audio_equal_the_per_clip_forward(fusion):
    torch.manual_seed(0)
    model = randomize_norms(AViNet(fusion))
    frames = torch.randn(1, 3, 3 + T - 1, 64, 96)
    waves = torch.randn(3, 1, 70_560, 1) * 50  # (N, 1, samples, 1)
    with torch.inference_mode():
        want = model(_clips(frames), waves)
        got = forward_windows(model, frames, T, waves)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


def test_windows_cost_fewer_operations(vinet):
    """At 8 clips per batch a map costs at least 20 % fewer FLOPs (measured: 24 %)."""
    frames = torch.randn(1, 3, 8 + T - 1, 64, 96)
    counts = []
    with torch.inference_mode():
        for run in (lambda: vinet(_clips(frames)), lambda: forward_windows(vinet, frames, T)):
            with FlopCounterMode(display=False) as counter:
                run()
            counts.append(counter.get_total_flops())
    plain, shared = counts
    assert shared < 0.8 * plain


def test_windows_reject_other_models_and_short_inputs(vinet):
    with pytest.raises(TypeError, match="ViNet, AViNet or TASED-Net"):
        forward_windows(nn.Identity(), torch.zeros(1, 3, T, 64, 96), T)
    with pytest.raises(ValueError, match="fewer than one clip"):
        forward_windows(vinet, torch.zeros(1, 3, T - 1, 64, 96), T)


# -- in the pipeline -----------------------------------------------------------------


def test_consecutive_runs():
    frames = [object() for _ in range(8)]
    clip = lambda s: frames[s : s + 3]  # noqa: E731
    back = lambda s: clip(s)[::-1]  # noqa: E731  (the reference warm-up's clips)
    assert consecutive_runs([clip(0), clip(1), clip(2)]) == [[0, 1, 2]]
    assert consecutive_runs([clip(0), clip(2), clip(3)]) == [[0], [1, 2]]  # a gap
    # reversed clips in frame order are consecutive backwards: the run lists them in
    # the order of the reversed sequence
    assert consecutive_runs([back(0), back(1), back(2)]) == [[2, 1, 0]]
    assert consecutive_runs([back(0), back(1), clip(0), clip(1)]) == [[1, 0], [2, 3]]
    assert consecutive_runs([clip(0), clip(1), back(1), back(2)]) == [[0, 1], [3, 2]]
    assert consecutive_runs([clip(4)]) == [[0]]
    assert consecutive_runs([]) == []


class _Counting(nn.Module):
    """Counts the clips it computes; a clip's map is its mean picture plus its sound."""

    def __init__(self):
        super().__init__()
        self.seen = 0

    def forward(self, clips: torch.Tensor, sound: torch.Tensor | None = None) -> torch.Tensor:
        self.seen += clips.shape[0]
        maps = clips.mean(dim=(1, 2))  # (B, h, w)
        return maps if sound is None else maps + sound.view(-1, 1, 1)


def _frame(i: int, level: float) -> Frame:
    return Frame(i, i / 25, None, tensor=torch.full((3, 4, 6), level))  # (3, h, w)


def test_the_engine_computes_a_repeated_clip_once():
    frames = [_frame(i, float(i)) for i in range(5)]
    model = _Counting()
    engine = E.Engine(model, device="cpu", precision="fp32", reuse=False)
    a, b = frames[0:3], frames[1:4]
    maps = engine([a, b, a, list(a)])  # list(a): the same frames in a list of its own
    assert model.seen == 2 and maps.shape == (4, 4, 6)
    assert maps[0, 0, 0] == 1.0 and maps[1, 0, 0] == 2.0
    np.testing.assert_array_equal(maps[2], maps[0])
    np.testing.assert_array_equal(maps[3], maps[0])
    # the same frames with another sound are another clip
    model.seen = 0
    maps = engine([a, a, b, a], torch.tensor([0.0, 5.0, 0.0, 0.0]))
    assert model.seen == 3 and [m[0, 0] for m in maps] == [1.0, 6.0, 2.0, 1.0]
    # equal values in other frame objects are not taken for the same clip
    model.seen = 0
    engine([a, [_frame(f.index, float(f.index)) for f in a]])
    assert model.seen == 2
    # the last clip of a call is remembered by the next one
    model.seen = 0
    engine([a, b])
    maps = engine([b, frames[2:5]])
    assert model.seen == 3 and maps[0, 0, 0] == 2.0 and maps[1, 0, 0] == 3.0
    # ... but does not keep its frames alive, and a frame that is gone matches nothing
    clip = [_frame(9, 9.0) for _ in range(3)]
    engine([clip])
    kept, last = clip[:2], weakref.ref(clip[2])
    del clip
    assert last() is None  # the engine did not keep it
    model.seen = 0
    engine([[*kept, _frame(9, 9.0)]])
    assert model.seen == 1
    # frames that take no weak reference: repeats within a call still computed once
    plain = [SimpleNamespace(tensor=torch.zeros(3, 4, 6)) for _ in range(3)]
    model.seen = 0
    engine([plain, plain])
    engine([plain])
    assert model.seen == 2


def test_reuse_choice_and_batch_size():
    cpu = torch.device("cpu")
    assert E.resolve_reuse(None, ViNet(), cpu, False) is True
    assert E.resolve_reuse(None, ViNet(), cpu, True) is False  # torch.compile
    assert E.resolve_reuse(None, ViNet(), torch.device("cuda"), False) is False
    assert E.resolve_reuse(False, ViNet(), cpu, False) is False
    assert E.resolve_reuse(None, nn.Identity(), cpu, False) is False
    with pytest.raises(UsageError, match="ViNet / AViNet"):
        E.resolve_reuse(True, nn.Identity(), cpu, False)
    assert E.choose_batch_size(cpu, torch.float32, reuse=True) == DEFAULT_REUSE_BATCH_SIZE
    # 16-bit activations: twice the clips in the same memory
    assert E.choose_batch_size(cpu, torch.bfloat16, reuse=True) == 2 * DEFAULT_REUSE_BATCH_SIZE
    assert E.choose_batch_size(cpu, torch.bfloat16) == DEFAULT_BATCH_SIZE
    assert E.choose_batch_size(cpu, torch.float32) == DEFAULT_BATCH_SIZE


@pytest.mark.parametrize(
    "warmup, stride, n_frames",
    [("mirror", 1, 44), ("reference", 1, 40), ("mirror", 2, 37), ("mirror", 1, 20)],
)
def test_pipeline_maps_with_and_without_reuse(vinet, make_video, warmup, stride, n_frames):
    path = make_video(n_frames=n_frames)
    maps = {}
    for reuse in (True, False):
        p = Predictor(
            model=vinet,
            input_size=SMALL_INPUT,
            warmup=warmup,
            stride=stride,
            reuse=reuse,
            batch_size=6,
        )
        assert p.reuse is reuse
        maps[reuse] = p.predict(path)
    assert maps[True].shape == (n_frames, 48, 64)
    # raw maps agree to ~1e-6; min-max normalization of the random model's nearly flat
    # maps magnifies that
    diff = np.abs(maps[True] - maps[False]).max()
    pairs = zip(maps[True], maps[False], strict=True)
    cc = min(np.corrcoef(a.ravel(), b.ravel())[0, 1] for a, b in pairs)
    print(f"max |diff| {diff:.2e}, min CC {cc:.8f}")
    assert diff < 2e-3 and cc > 0.99999


def test_reuse_is_recorded_in_the_outputs(vinet, make_video, tmp_path):
    import h5py

    path = make_video(n_frames=33)
    p = Predictor(model=vinet, input_size=SMALL_INPUT, batch_size=4)
    result = p.write(path, tmp_path / "out", ["h5"])
    assert result.status == "done" and result.frames == 33
    with h5py.File(tmp_path / "out" / "clip.h5") as f:
        assert f.attrs["reuse"] == "on" and f["saliency"].shape == (33, 48, 64)


def test_windows_of_a_model_cast_to_bf16_agree_with_its_per_clip_forward():
    """The bf16 path as predict runs it (convolutions cast once, ReLUs fused): the windows
    give the per-clip maps up to bf16 rounding of the activations."""

    model = cast_for_precision(fold_batchnorm(randomize_norms(ViNet())), torch.bfloat16)
    torch.manual_seed(3)
    # two clips at the smallest input: bf16 is emulated, slowly, on CPUs without it
    frames = torch.randn(1, 3, 2 + T - 1, 32, 32).contiguous(memory_format=CL)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = model(_clips(frames).contiguous(memory_format=CL))
        got = forward_windows(model, frames, T)
    assert got.dtype == want.dtype == torch.float32 and got.shape == (2, 32, 32)
    for a, b in zip(got, want, strict=True):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999
