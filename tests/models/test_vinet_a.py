"""ViNet-A: the network against the authors' logits, its published checkpoint format, the
published procedure (frames, clips, maps) and the family's declaration, end to end.

The network's size is fixed at 256 x 456 by the published procedure, and one forward pass
there takes about 12-17 s on two cores: the golden comparison runs once at that size
(module-scoped), the end-to-end run predicts one clip, and everything else runs at tiny
sizes (the network computes its neck's sizes from the input) or with a stand-in model.
"""

from __future__ import annotations

import copy
import json
import math

import cv2
import numpy as np
import pytest
import torch
from helpers import DATA, VINET_A_ENVELOPE, VINET_A_PUBLISHED_TOLERANCE, write_video
from torch import nn
from typer.testing import CliRunner

from salcli.cli import app
from salcli.errors import OptionError
from salcli.inference.clips import iter_clips
from salcli.inference.engine import to_channels_last_3d
from salcli.inference.predictor import Predictor
from salcli.models import soundnet, stavis, vinet, vinet_procedure
from salcli.models.registry import (
    CHECKPOINTS,
    DEFAULT_FILES,
    FAMILIES,
    VINET_A,
    arch_of,
    describe,
    published,
    recognise,
)
from salcli.models.slowfast import SlowFastFeatures
from salcli.models.vinet_a import (
    FP32_TAIL,
    FrameUpsample,
    Neck,
    ViNetA,
    cast_for_precision,
    channel_shuffle,
    detect,
    fold_batchnorm,
)
from salcli.models.vinet_a_procedure import WindowClips, clip_indices, frame_to_tensor
from salcli.testing import (
    deterministic_state_dict,
    load_manifest,
    randomize_norms,
    relative_error,
    rounding_envelope,
    tamed_state_dict,
)

MANIFEST = DATA / "vinet_a.keys.json"
SIZE = (256, 456)  # (H, W), the only input size of the published model
SMALL = (16, 24)  # (H, W) of the tiny-size tests: 2 x 3 -> 3 x 6 is a scale of (2, 1.5)
T = 32  # frames per clip
LICENCE = "CC BY-NC-SA 4.0 (non-commercial)"
runner = CliRunner()


def reference_clip() -> torch.Tensor:
    """The input of the authors' expected logits (the reference section)."""
    clip = np.random.default_rng(20250407).standard_normal((1, 3, T, *SIZE))
    return torch.from_numpy(clip.astype(np.float32))


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    """The logits of the reference clip: the filled model as loaded (contiguous), and
    folded and channels-last as predict runs it. The two forward passes at full size."""
    model = ViNetA().eval()
    model.load_state_dict(deterministic_state_dict(load_manifest(MANIFEST)), strict=True)
    clip = reference_clip()
    folded = to_channels_last_3d(fold_batchnorm(copy.deepcopy(model)))
    with torch.inference_mode():
        loaded = model.logits(clip)
        folded_logits = folded.logits(clip.contiguous(memory_format=torch.channels_last_3d))
    norms = [m for m in folded.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return {"loaded": loaded.numpy(), "folded": folded_logits.numpy(), "norms_left": len(norms)}


@pytest.fixture(scope="module")
def tamed_file(tmp_path_factory):
    """A tamed ViNet-A checkpoint saved as the published files are (a plain state_dict)."""
    path = tmp_path_factory.mktemp("vinet_a") / "ViNet_A_DHF1K_no_split_neck_32_kldiv_cc___6_0.pt"
    torch.save(tamed_state_dict(MANIFEST), path)
    return path


@pytest.fixture(scope="module")
def small_model() -> ViNetA:
    """A randomly initialised ViNet-A with drawn BatchNorm statistics (tiny-size tests)."""
    torch.manual_seed(0)
    return randomize_norms(ViNetA())


def small_clip(batch: int = 1, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, T, *SMALL, generator=torch.Generator().manual_seed(seed))


# --- the network -------------------------------------------------------------------------


def test_state_dict_is_the_published_one():
    manifest = json.loads(MANIFEST.read_text())
    own = ViNetA().state_dict()
    assert len(own) == 655
    assert list(own) == list(manifest["keys"])  # same keys, same order
    assert {k: list(v.shape) for k, v in own.items()} == manifest["keys"]
    assert {k: str(v.dtype).removeprefix("torch.") for k, v in own.items()} == manifest["dtypes"]
    params = sum(v.numel() for k, v in own.items() if "running_" not in k and "num_b" not in k)
    assert params == 38_693_241  # the authors' count, 147.6 MB in fp32


def test_golden_parity(golden):
    """The published tolerance, 3e-4 max(1, |x|), against the authors' fp32 logits, for the
    model as loaded and with BatchNorm folded (channels-last, as predict runs it); the two
    are fp32 roundings of the same exact logits, within the rounding envelope E of them
    each, so within 2E of each other (helpers.py says where both bounds come from)."""
    expected = np.load(DATA / "vinet_a.expected.npy")
    assert golden["loaded"].shape == golden["folded"].shape == expected.shape == (1, *SIZE)
    assert golden["norms_left"] == 0
    assert relative_error(golden["loaded"], expected) <= VINET_A_PUBLISHED_TOLERANCE
    assert relative_error(golden["folded"], expected) <= VINET_A_PUBLISHED_TOLERANCE
    assert relative_error(golden["folded"], golden["loaded"]) <= 2 * VINET_A_ENVELOPE


def test_the_published_size_gives_the_published_shapes():
    """Every feature size of the reference section at 256 x 456, without computing."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    ups = []
    with FakeTensorMode(), torch.inference_mode():
        model = ViNetA().eval()
        for mod in model.decoder.modules():
            if isinstance(mod, FrameUpsample):
                mod.register_forward_hook(lambda m, i, o: ups.append(tuple(o.shape[1:])))
        clip = torch.empty(1, 3, T, *SIZE)
        feats = model.backbone(clip)
        bottleneck, skips = model.neck(feats)
        out = model(clip)
    assert tuple(feats.slow.shape) == (1, 2048, 8, 16, 29)
    assert tuple(feats.fast.shape) == (1, 256, 32, 16, 29)
    assert [tuple(s.shape[1:]) for s in feats.skips] == [
        (80, 8, 64, 114), (320, 8, 64, 114), (640, 8, 32, 57), (1280, 8, 16, 29)
    ]  # fmt: skip
    assert tuple(bottleneck.shape) == (1, 1536, 8, 16, 29)
    assert [tuple(s.shape[1:]) for s in skips] == [
        (40, 8, 64, 114), (160, 8, 64, 114), (320, 8, 32, 57), (640, 8, 16, 29)
    ]  # fmt: skip
    # convtsp2 (16 x 29 -> 32 x 57), convtsp3, convtsp5, convtsp6
    assert ups == [(320, 8, 32, 57), (160, 8, 64, 114), (64, 4, 128, 228), (32, 2, 256, 456)]
    assert tuple(out.shape) == (1, *SIZE) and out.dtype == torch.float32


def test_small_sizes_run_and_the_map_is_the_sigmoid_of_the_logits(small_model):
    clip = small_clip(batch=2)
    with torch.inference_mode():
        logits = small_model.logits(clip)
        saliency = small_model(clip)
        alone = small_model.logits(clip[1:])
    assert logits.shape == saliency.shape == (2, *SMALL)
    assert saliency.dtype == logits.dtype == torch.float32
    torch.testing.assert_close(saliency, torch.sigmoid(logits))
    torch.testing.assert_close(alone[0], logits[1], rtol=1e-5, atol=1e-5)  # items independent
    for bad in (torch.zeros(1, 3, 16, *SMALL), torch.zeros(1, 3, T, 30, 64)):
        with pytest.raises(ValueError, match="ViNet-A takes"):
            small_model(bad)


def test_folding_batchnorm_is_exact_up_to_rounding(small_model):
    """In float64 folding changes nothing but rounding; in fp32 the model as loaded and
    folded each land within the rounding envelope of the exact logits."""
    clip = small_clip(seed=2)
    folded = fold_batchnorm(copy.deepcopy(small_model))
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert fold_batchnorm(folded) is folded  # folding twice changes nothing
    model64 = copy.deepcopy(small_model).double()
    exact, bound, _ = rounding_envelope(lambda: model64.logits(clip.double()), relative_error)
    with torch.inference_mode():
        a, b = small_model.logits(clip), folded.logits(clip)
        b64 = fold_batchnorm(model64).logits(clip.double())
    assert b64.dtype == torch.float64  # the fp32 tail keeps fp64
    assert relative_error(b64.numpy(), exact) < 1e-12
    assert relative_error(a.numpy(), exact) <= bound and relative_error(b.numpy(), exact) <= bound


def test_model_cast_once_gives_the_autocast_maps(small_model):
    """Convolutions stored in bf16 compute what autocast computes from fp32 weights; the
    decoder's tail keeps fp32."""
    model = fold_batchnorm(copy.deepcopy(small_model))
    cast = cast_for_precision(copy.deepcopy(model), torch.bfloat16)
    assert cast.backbone.slow_res4[2].conv2.weight.dtype == torch.bfloat16
    assert cast.decoder.convtsp6[0].weight.dtype == torch.bfloat16
    tail = cast.decoder.convtsp6[-FP32_TAIL:]
    assert all(p.dtype == torch.float32 for p in tail.parameters())
    clip = small_clip(seed=3)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        want = model(clip)
        got = cast(clip)
    assert got.dtype == want.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert cast_for_precision(model, torch.float32) is model


def test_channel_shuffle_deals_the_channels_out():
    """Old channel i * (C / g) + j moves to position j * g + i."""
    c, g = 12, 3
    x = torch.arange(c, dtype=torch.float32).view(1, c, 1, 1, 1).expand(2, c, 2, 3, 4)
    out = channel_shuffle(x, g)
    for i in range(g):
        for j in range(c // g):
            assert torch.equal(out[:, j * g + i], x[:, i * (c // g) + j])


def test_the_neck_rereads_the_fast_features_in_memory_order():
    """New channel k holds old channel k // 2, steps 16 (k mod 2) ... +15, and the pool
    keeps the larger of each pair of steps; the slow features come first."""
    neck = Neck().eval()
    h, w = 2, 3
    fast = torch.randn(1, 256, T, h, w, generator=torch.Generator().manual_seed(4))
    feats = SlowFastFeatures(
        slow=torch.zeros(1, 2048, 8, h, w),  # no bias: the slow half is relu(0) = 0
        fast=fast,
        skips=tuple(torch.zeros(1, ch, 8, h, w) for ch in (80, 320, 640, 1280)),
    )
    with torch.inference_mode():
        bottleneck, skips = neck(feats)
    assert tuple(bottleneck.shape) == (1, 1536, 8, h, w)
    assert not bottleneck[:, :1024].any()
    f = fast[0].numpy()
    want = np.empty((512, 8, h, w), np.float32)
    for k in range(512):
        steps = f[k // 2, 16 * (k % 2) : 16 * (k % 2) + 16]  # (16, h, w)
        want[k] = np.maximum(steps[0::2], steps[1::2])
    np.testing.assert_array_equal(bottleneck[0, 1024:].numpy(), want)
    assert [s.shape[1] for s in skips] == [40, 160, 320, 640]


@pytest.mark.parametrize("size, scale", [((16, 29), (2.0, 57 / 29)), ((5, 7), (2.0, 2.0))])
def test_frame_upsampling_is_their_trilinear(size, scale):
    x = torch.randn(2, 4, 3, *size, generator=torch.Generator().manual_seed(5))
    theirs = nn.Upsample(scale_factor=(1.0, *scale), mode="trilinear")(x)
    target = (math.floor(size[0] * scale[0]), math.floor(size[1] * scale[1]))
    ours = FrameUpsample()(x, size=target)
    assert ours.shape == theirs.shape == (2, 4, 3, *target)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


# --- the checkpoints: recognised, declared --------------------------------------------------


@pytest.mark.parametrize("manifest", sorted(p.name for p in DATA.glob("*.keys.json")))
def test_detect_tells_vinet_a_from_the_other_families(manifest):
    keys = load_manifest(DATA / manifest)
    sd = {k.removeprefix("module."): torch.zeros(0) for k in keys}
    mine = manifest == "vinet_a.keys.json"
    assert detect(sd) == ("vinet-a" if mine else None)
    if mine:  # and no other family's detect claims it
        assert vinet.detect(sd) is None and stavis.detect(sd) is None
        assert soundnet.detect(sd) is None
        assert arch_of(sd) == "vinet-a"
        assert sum(fam.holds(sd) is not None for fam in FAMILIES) == 1
    else:
        assert VINET_A.holds(sd) is None


def test_a_module_prefix_is_taken_off():
    keys = load_manifest(MANIFEST)
    found = recognise({f"module.{k}": torch.zeros(0) for k in keys})
    assert found is not None and found[0] is VINET_A and found[1] == "vinet-a"
    assert list(found[2]) == list(keys)


def test_the_family_and_its_published_checkpoints_are_declared():
    manifest = json.loads(MANIFEST.read_text())
    assert VINET_A in FAMILIES and VINET_A.label == "ViNet-A"
    assert VINET_A.clip_len == T and VINET_A.input_size == SIZE
    assert VINET_A.published_unmapped == 0  # the published procedure maps every frame
    assert VINET_A.postprocess is vinet_procedure.postprocess
    (variant,) = VINET_A.variants
    assert variant.fixed_input == SIZE and not variant.hears and variant.arch == "vinet-a"
    files = manifest["checkpoint"]["published_files"]
    assert DEFAULT_FILES["vinet-a"] == files["DHF1K"] == variant.default_file
    entries = published("vinet-a")
    assert [c.file for c in entries] == list(files.values())
    assert [c.name for c in entries] == [
        "vinet-a-dhf1k", "vinet-a-hollywood", "vinet-a-ucf", "vinet-a-etmd-av-split1",
        "vinet-a-mvva-split1",
    ]  # fmt: skip
    for c in entries:
        assert c.licence == LICENCE and c.manual and c.trained_on
        assert c.page == "https://github.com/ViNet-Saliency/vinet_v2"
        assert "Google Drive" in c.where and "no direct URL" in c.where
    assert len({c.name for c in CHECKPOINTS}) == len(CHECKPOINTS)
    assert describe("vinet-a") == "a ViNet-A checkpoint"


# --- frames in ------------------------------------------------------------------------------


def test_frames_are_resized_and_normalized_with_0_45_and_0_225():
    rgb = np.empty((48, 64, 3), np.uint8)
    rgb[...] = (51, 102, 204)
    x = frame_to_tensor(rgb)
    assert x.shape == (3, *SIZE) and x.dtype == torch.float32
    for c, v in enumerate((51, 102, 204)):
        torch.testing.assert_close(x[c], torch.full(SIZE, (v / 255 - 0.45) / 0.225))
    # the same antialiased, 8-bit rounded resize as ViNet's transform
    noise = np.random.default_rng(6).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    imagenet = vinet_procedure.frame_to_tensor(noise, SIZE)
    mean = torch.tensor(vinet_procedure.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(vinet_procedure.IMAGENET_STD).view(3, 1, 1)
    pixels = torch.round((imagenet * std + mean) * 255)
    ours = torch.round((frame_to_tensor(noise) * 0.225 + 0.45) * 255)
    assert torch.equal(ours, pixels)


# --- which clip predicts which frame -----------------------------------------------------


def window_rule(t: int, n: int, policy: str) -> list[int]:
    """The published rule restated: the window t-32 ... t+31, its odd positions, each
    clamped to the video (reference) or mirrored into it (numpy's reflect padding)."""
    window = np.arange(t - 32, t + 32)
    if policy == "reference":
        frames = np.clip(window, 0, n - 1)
    else:
        frames = np.pad(np.arange(n), (64, 64), mode="reflect")[window + 64]
    return frames[1::2].tolist()


LENGTHS = (1, 2, 31, 33, 64, 100)


@pytest.mark.parametrize("policy", ["mirror", "reference"])
@pytest.mark.parametrize("n", LENGTHS)
def test_every_frame_gets_the_window_rules_clip(n, policy):
    schedule = WindowClips(policy)
    for t in range(n):
        indices, span = schedule.plan(t, n)
        assert indices == clip_indices(t, n, policy) == window_rule(t, n, policy), t
        assert len(indices) == T and span == (min(indices), max(indices))
        # never further back than keep_behind, nor further ahead than the look-ahead
        assert t - schedule.keep_behind <= min(indices) and max(indices) <= t + 31
        if n >= t + 32:  # a stream that has not reached the end plans the same clip
            assert schedule.plan(t, None)[0] == indices
        if policy == "mirror" and n > 1:
            assert t not in indices  # reflections keep the odd distances to t


def test_start_middle_and_end_spelled_out():
    odd = list(range(1, 32, 2))  # 1, 3, ..., 31
    n = 100
    # middle: 16 frames before t and 16 after it, t itself left out
    assert clip_indices(50, n, "reference") == list(range(19, 82, 2))
    assert clip_indices(50, n, "reference")[::4] == [19, 27, 35, 43, 51, 59, 67, 75]  # slow
    assert clip_indices(50, n, "mirror") == clip_indices(50, n, "reference")
    # start: copies of frame 0, or its mirror image
    assert clip_indices(0, n, "reference") == [0] * 16 + odd
    assert clip_indices(0, n, "mirror") == odd[::-1] + odd
    assert clip_indices(1, n, "reference") == [0] * 16 + list(range(2, 33, 2))
    # end: copies of the last frame, or its mirror image
    assert clip_indices(99, n, "reference") == list(range(68, 99, 2)) + [99] * 16
    assert clip_indices(99, n, "mirror") == list(range(68, 99, 2)) + list(range(98, 67, -2))
    # short videos
    assert clip_indices(0, 1, "reference") == clip_indices(0, 1, "mirror") == [0] * 32
    assert clip_indices(0, 3, "reference") == [0] * 16 + [1] + [2] * 15
    assert clip_indices(1, 2, "reference") == clip_indices(0, 2, "reference") == [0] * 16 + [1] * 16


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="warm-up"):
        WindowClips("clamp")
    with pytest.raises(ValueError, match="warm-up"):
        clip_indices(0, 5, "clamp")
    with pytest.raises(IndexError):
        clip_indices(5, 5)


class CountedFrames:
    """Frames 0 ... n-1 as a stream that counts what was read."""

    def __init__(self, n: int):
        self.n, self.read = n, 0

    def __iter__(self):
        for i in range(self.n):
            self.read += 1
            yield i


@pytest.mark.parametrize("policy", ["mirror", "reference"])
@pytest.mark.parametrize("n", LENGTHS)
def test_iter_clips_streams_with_31_frames_of_look_ahead(n, policy):
    stream = CountedFrames(n)
    seen = []
    for t, frame, clip in iter_clips(stream, WindowClips(policy)):
        assert frame == t and list(clip) == clip_indices(t, n, policy)
        assert stream.read == min(n, t + 32)  # frame t+31 read, and nothing further
        seen.append(t)
    assert seen == list(range(n))


# --- the pipeline: a stand-in that reads its clips back, and the real network --------------


LEVEL0, LEVEL_STEP = 10, 2  # grey level of frame i: 10 + 2 i


class StandIn(nn.Module):
    """Recognised as ViNet-A by its ``arch``; notes the frame indices of each clip (read
    from the grey levels) and returns a ramp."""

    arch = "vinet-a"

    def __init__(self):
        super().__init__()
        self.clips: list[list[int]] = []

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = clip.shape
        assert (c, t, h, w) == (3, T, *SIZE)
        grey = (clip[:, 0].float() * 0.225 + 0.45) * 255  # (B, 32, 256, 456)
        assert float((grey.amax(dim=(2, 3)) - grey.amin(dim=(2, 3))).max()) < 1e-3
        levels = grey.mean(dim=(2, 3)).numpy()
        self.clips += np.rint((levels - LEVEL0) / LEVEL_STEP).astype(int).tolist()
        ramp = torch.linspace(0, 1, SIZE[0] * SIZE[1]).view(1, *SIZE)
        return ramp.expand(b, *SIZE)


def write_frames(folder, n: int):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((12, 16, 3), LEVEL0 + LEVEL_STEP * i, dtype=np.uint8)
        cv2.imwrite(str(folder / f"img_{i + 1:05d}.png"), img)
    return folder


@pytest.mark.parametrize("policy", ["mirror", "reference"])
@pytest.mark.parametrize("n", [2, 5])
def test_predict_gives_each_frame_its_clip(tmp_path, n, policy):
    model = StandIn()
    p = Predictor(model=model, device="cpu", precision="fp32", warmup=policy, batch_size=3)
    assert p.family is VINET_A and p.input_size == SIZE and p.warmup == policy
    maps = list(p.iter_maps(write_frames(tmp_path / "frames", n), fps=25))
    assert [i for i, _ in maps] == list(range(n))
    assert all(m.shape == (12, 16) for _, m in maps)  # the frame's size
    per_frame = [clip_indices(t, n, policy) for t in range(n)]
    computed = [c for i, c in enumerate(per_frame) if i == 0 or c != per_frame[i - 1]]
    assert model.clips == computed  # a clip equal to the one before is computed once


def test_the_default_warm_up_is_mirror_and_reference_is_the_published_clamp():
    assert VINET_A.warmups == ("mirror", "reference")
    assert Predictor(model=StandIn(), device="cpu").warmup == "mirror"


def test_predict_end_to_end_with_a_tamed_checkpoint(tamed_file, tmp_path):
    """The real network from a file as published: a 2-frame video gets two maps at the
    frame's size; under the published clamp both frames have the same clip (16 copies of
    each frame), computed once."""
    video = write_video(tmp_path / "clip.mp4", n_frames=2, size=(48, 64))
    p = Predictor(weights=tamed_file, device="cpu", precision="fp32", warmup="reference")
    assert p.family is VINET_A and p.arch == "vinet-a" and p.input_size == SIZE
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in p.model.modules())
    forward, calls = p.model.forward, []
    p.model.forward = lambda clip: calls.append(clip.shape[0]) or forward(clip)
    maps = p.predict(video)
    assert calls == [1]
    assert maps.shape == (2, 48, 64) and maps.dtype == np.float32
    np.testing.assert_array_equal(maps[0], maps[1])
    assert maps.min() == 0.0 and maps.max() == 1.0
    assert maps[0].std() > 0.1  # the tamed weights use the range, not one small blob
    info = p.run_info(video)
    assert info.clip_len == T and info.extra["family"] == "vinet-a"
    assert "256x456" in info.postprocess


def test_other_input_sizes_are_refused_in_one_line(tamed_file, tmp_path):
    with pytest.raises(OptionError, match="224x384: ViNet-A works only at 256x456"):
        Predictor(weights=tamed_file, device="cpu", input_size=(224, 384))
    video = write_video(tmp_path / "clip.mp4", n_frames=2, size=(48, 64))
    out = tmp_path / "out"
    r = runner.invoke(app, ["predict", str(video), "-w", str(tamed_file), "-o", str(out),
                            "--input-size", "224x384"])  # fmt: skip
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in ("--input-size", "224x384", "256x456"))
    assert not out.exists()
