"""STAViS: the network against the authors' outputs, its published checkpoint format, and
the published test procedure (frames, clips, audio excerpts, post-processing)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from helpers import DATA, STAVIS_ENVELOPE, STAVIS_PUBLISHED_TOLERANCE

from salcli.errors import WeightsError
from salcli.media.audio import AudioTrack
from salcli.metrics import imresize_matlab
from salcli.models.checkpoints import load_file
from salcli.models.registry import load_checkpoint
from salcli.models.stavis import (
    ACTIVITYNET_MEAN,
    AUDIO_BUFFER,
    CLIP_LEN,
    INPUT_SIZE,
    LOOK_AHEAD,
    TARGET_INDEX,
    Stavis,
    detect,
    fold_batchnorm,
    spatial_softmax,
    unwrap_checkpoint,
)
from salcli.models.stavis_procedure import (
    BLUR_SIZE,
    ClipPlan,
    audio_batch,
    clip_audio,
    clip_plan,
    excerpt_span,
    frame_to_tensor,
    gaussian_taps,
    place_excerpt,
    postprocess,
    published_clip,
    resize_bilinear,
    resize_nearest,
)
from salcli.testing import STAVIS_OPTIMIZERS as OPTIMIZERS
from salcli.testing import STAVIS_TAMING as TAMING
from salcli.testing import fill_tensor, load_manifest, relative_error, rounding_envelope

MANIFESTS = {"visual": "stavis_visual.keys.json", "audiovisual": "stavis_audiovisual.keys.json"}
PREFIX = "module."
NAIVE_EXP_LIMIT = math.log(np.finfo(np.float32).max)  # 88.72: exp overflows fp32 above it
FS = 22_050  # Hz
SPAN = FS // 25  # 882 samples per frame at 25 fps
MID = AUDIO_BUFFER // 2  # 17 640


def snapshot(state_dict: dict[str, torch.Tensor]) -> dict:
    """Wrapped as train.py saved the published files (epoch 60)."""
    empty = {"state": {}, "param_groups": []}
    return {"epoch": 61, "arch": "resnet-50", "state_dict": state_dict} | {
        name: dict(empty) for name in OPTIMIZERS
    }


def filled(manifest: str) -> dict[str, torch.Tensor]:
    """The fill rule, each tensor seeded from its key as written (``module.`` included)."""
    return {k: fill_tensor(k, shape) for k, shape in load_manifest(DATA / manifest).items()}


def reference_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    clip = np.random.default_rng(20200615).standard_normal((1, 3, CLIP_LEN, 112, 112))
    audio = 0.1 * np.random.default_rng(20200616).standard_normal((1, 1, 1, AUDIO_BUFFER))
    return torch.from_numpy(clip.astype(np.float32)), torch.from_numpy(audio.astype(np.float32))


def real_range_clip(size: int = 112, seed: int = 5) -> torch.Tensor:
    """Random pixels 0-255 minus the ActivityNet mean: values of about +-150, as real video."""
    pixels = np.random.default_rng(seed).integers(0, 256, (1, 3, CLIP_LEN, size, size))
    mean = np.asarray(ACTIVITYNET_MEAN, np.float32)[None, :, None, None, None]
    return torch.from_numpy(pixels.astype(np.float32) - mean)


def tamed(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v * 2.0 ** TAMING[k] if k in TAMING else v for k, v in state_dict.items()}


@pytest.fixture(scope="module")
def published_file(tmp_path_factory):
    """The published audio-visual layout rebuilt by the fill rule, saved as torch.save'd
    training snapshot (``module.`` keys, four empty SGD states)."""
    path = tmp_path_factory.mktemp("stavis") / "audiovisual_split1_save_60.pth"
    torch.save(snapshot(filled(MANIFESTS["audiovisual"])), path)
    return path


@pytest.fixture(scope="module")
def models(published_file):
    """Both variants with the filled weights (both manifests have the same keys, so the
    fill rule gives both the same tensors), loaded through ``load_model``."""
    return {av: load_model(published_file, audiovisual=av) for av in (False, True)}


def load_model(path, *, audiovisual: bool) -> Stavis:
    """The model of a STAViS file as predict loads it (``salcli.models.registry``)."""
    family, variant, model = load_checkpoint(path, audio=audiovisual)
    assert family.name == "stavis" and variant.hears is audiovisual
    return model


def read_state(path) -> dict:
    """The state_dict of a STAViS file, unwrapped as the family unwraps it."""
    return unwrap_checkpoint(load_file(path))


@pytest.fixture(scope="module")
def tamed_models(models):
    """Both variants with the tamed weights, for real-range inputs."""
    out = {}
    for av, model in models.items():
        out[av] = Stavis(audiovisual=av).eval()
        out[av].load_state_dict(tamed(model.state_dict()), strict=True)
    return out


# --- the network --------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["visual", "audiovisual"])
def test_state_dict_is_the_published_one(variant):
    manifest = json.loads((DATA / MANIFESTS[variant]).read_text())
    published = {k[len(PREFIX) :]: tuple(v) for k, v in manifest["keys"].items()}
    own = Stavis(audiovisual=variant == "audiovisual").state_dict()
    assert list(own) == list(published)  # same keys, same order
    assert {k: tuple(v.shape) for k, v in own.items()} == published
    dtypes = {k[len(PREFIX) :]: v for k, v in manifest["dtypes"].items()}
    assert {k: str(v.dtype).removeprefix("torch.") for k, v in own.items()} == dtypes
    assert manifest["model"]["audiovisual"] == (variant == "audiovisual")


@pytest.mark.parametrize("audiovisual", [False, True], ids=["visual", "audiovisual"])
def test_golden_parity(models, audiovisual):
    """The published tolerance against the authors' logits, for the model as loaded and
    with BatchNorm folded (as predict runs it); the two are fp32 roundings of the same
    exact logits, each within the rounding envelope E of them, so within 2E of each other
    (helpers.py says where both bounds come from)."""
    name = "audiovisual" if audiovisual else "visual"
    expected = np.load(DATA / f"stavis_{name}.expected.npy")
    clip, audio = reference_inputs()
    model = models[audiovisual]
    folded = fold_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    with torch.inference_mode():
        logits = model.logits(clip, audio)
        saliency = model(clip, audio)
        got = folded.logits(clip, audio).numpy()
    assert logits.shape == expected.shape == (1, 1, 112, 112)
    assert saliency.shape == (1, 112, 112) and saliency.dtype == torch.float32
    torch.testing.assert_close(saliency, torch.sigmoid(logits[:, 0]))
    assert relative_error(logits.numpy(), expected) <= STAVIS_PUBLISHED_TOLERANCE
    assert relative_error(got, expected) <= STAVIS_PUBLISHED_TOLERANCE
    assert relative_error(got, logits.numpy()) <= 2 * STAVIS_ENVELOPE[audiovisual]


def test_folding_batchnorm_is_exact_up_to_rounding(tamed_models):
    """In float64 folding changes nothing but rounding; in fp32, on the tamed weights and a
    real-range clip, the model as loaded and folded each land within the rounding
    envelope of the exact logits (``salcli.testing.rounding_envelope``)."""
    clip, audio = real_range_clip(16), 50.0 * reference_inputs()[1]
    model = tamed_models[True]
    folded = fold_batchnorm(copy.deepcopy(model))
    assert fold_batchnorm(folded) is folded  # folding twice changes nothing
    model64 = copy.deepcopy(model).double()
    a64, bound, _ = rounding_envelope(
        lambda: model64.logits(clip.double(), audio.double()), relative_error
    )
    with torch.inference_mode():
        a, b = model.logits(clip, audio), folded.logits(clip, audio)
        b64 = fold_batchnorm(model64).logits(clip.double(), audio.double())
    assert relative_error(b64.numpy(), a64) < 1e-12
    assert relative_error(a.numpy(), a64) <= bound and relative_error(b.numpy(), a64) <= bound


def test_batch_of_one_and_batch_items_are_independent(models):
    """Their fusion squeezes the batch axis away (a batch of one fails); here every item
    of a batch gets the map it gets alone: both within the rounding envelope of the exact
    logits of the batch."""
    model = models[True]
    clip = torch.randn(2, 3, CLIP_LEN, 16, 16, generator=torch.Generator().manual_seed(1))
    audio = 0.1 * torch.randn(2, 1, 1, AUDIO_BUFFER, generator=torch.Generator().manual_seed(0))
    model64 = copy.deepcopy(model).double()
    exact, bound, _ = rounding_envelope(
        lambda: model64.logits(clip.double(), audio.double()), relative_error
    )
    with torch.inference_mode():
        both = model.logits(clip, audio)
        alone = [model.logits(clip[i : i + 1], audio[i : i + 1]) for i in range(2)]
    assert both.shape == (2, 1, 16, 16)
    for i in range(2):
        assert relative_error(both[i].numpy(), exact[i]) <= bound
        assert relative_error(alone[i][0].numpy(), exact[i]) <= bound
    assert not torch.allclose(alone[0], alone[1])


def test_audio_matters_only_to_the_audiovisual_head(models):
    clip = torch.randn(1, 3, CLIP_LEN, 16, 16, generator=torch.Generator().manual_seed(2))
    quiet, loud = torch.zeros(1, 1, 1, AUDIO_BUFFER), reference_inputs()[1]
    with torch.inference_mode():
        visual = [models[False].logits(clip, a) for a in (None, quiet, loud)]
        av = [models[True].logits(clip, a) for a in (quiet, loud)]
        with pytest.raises(ValueError, match="needs audio"):
            models[True].logits(clip, None)
        with pytest.raises(ValueError, match=r"\(B, 1, 1, N\)"):
            models[True].logits(clip, loud.reshape(1, 1, AUDIO_BUFFER, 1))  # AViNet's layout
    assert torch.equal(visual[0], visual[1]) and torch.equal(visual[0], visual[2])
    assert not torch.allclose(av[0], av[1])


def test_spatial_softmax_is_theirs_where_theirs_is_finite():
    gen = torch.Generator().manual_seed(0)
    x = (
        torch.randn(3, 1, 14, 14, generator=gen)
        * torch.tensor([5.0, 20.0, 20.0])[:, None, None, None]
    )
    x[2, 0, 3, 4] = 100.0  # exp(100) overflows fp32: theirs is inf / inf there
    ours = spatial_softmax(x)
    theirs = torch.exp(x) / torch.exp(x).sum(dim=(2, 3), keepdim=True)  # no max subtracted
    assert torch.isfinite(theirs[:2]).all() and torch.isnan(theirs[2]).any()
    torch.testing.assert_close(ours[:2], theirs[:2], rtol=1e-5, atol=1e-30)
    assert torch.isfinite(ours).all() and ours[2, 0, 3, 4] > 0.999
    torch.testing.assert_close(ours.sum(dim=(2, 3)), torch.ones(3, 1))


def test_tamed_weights_keep_real_video_finite_where_the_plain_fill_overflows(models, tamed_models):
    """On pixels minus the mean (+-150) the plain fill drives attention logits far past
    88.7, where their exp(x)/sum(exp(x)) is inf/inf (every map NaN); salcli's maps stay
    finite. With the tamed weights every logit is moderate and the two softmaxes agree."""
    clip = real_range_clip(32)
    audio = 50.0 * reference_inputs()[1]
    with torch.inference_mode():
        plain = models[True].intermediates(clip, audio)
        calm = tamed_models[True].intermediates(clip, audio)
    assert max(a.max().item() for a in plain["attention_logits"]) > NAIVE_EXP_LIMIT
    assert torch.isfinite(plain["logits"]).all()
    assert max(a.abs().max().item() for a in calm["attention_logits"]) < 20
    assert torch.isfinite(calm["logits"]).all() and calm["logits"].abs().max() < 20
    for a in calm["attention_logits"]:
        naive = torch.exp(a) / torch.exp(a).sum(dim=(2, 3), keepdim=True)
        torch.testing.assert_close(spatial_softmax(a), naive, rtol=1e-5, atol=1e-12)


@pytest.fixture(scope="module")
def folded_tamed(tamed_models):
    return {av: fold_batchnorm(copy.deepcopy(m)) for av, m in tamed_models.items()}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("audiovisual", [False, True], ids=["visual", "audiovisual"])
def test_half_precision_autocast_on_cpu(folded_tamed, audiovisual, dtype):
    model = folded_tamed[audiovisual]  # as predict runs a loaded checkpoint
    clip, audio = real_range_clip(16), 50.0 * reference_inputs()[1]
    with torch.inference_mode():
        ref = model(clip, audio)
        with torch.autocast("cpu", dtype=dtype):
            out = model(clip, audio)
    assert out.dtype == torch.float32  # the heads, the fusion and the sigmoid run in fp32
    a, b = out.numpy().ravel(), ref.numpy().ravel()
    assert np.corrcoef(a, b)[0, 1] >= 0.999
    assert len(np.unique(a)) >= 0.9 * len(np.unique(b))  # not quantized to a few levels


# --- checkpoints ----------------------------------------------------------------------------


def test_published_snapshot_loads_unchanged(published_file, models):
    obj = torch.load(published_file, map_location="cpu", weights_only=True)
    assert (
        list(obj)
        == json.loads((DATA / MANIFESTS["audiovisual"]).read_text())["checkpoint"]["entries"]
    )
    sd = read_state(published_file)
    assert not any(k.startswith(PREFIX) for k in sd)
    torch.testing.assert_close(sd["conv1.weight"], obj["state_dict"]["module.conv1.weight"])
    for av in (False, True):
        assert models[av].audiovisual == av and not models[av].training


def test_snapshot_with_or_without_prefix_and_bare_state_dicts(tmp_path, published_file):
    sd = read_state(published_file)
    small = {k: sd[k] for k in list(sd)[:3]}  # enough to tell the unwrapping apart
    for obj in (
        snapshot({PREFIX + k: v for k, v in sd.items()}),
        snapshot(dict(sd)),
        dict(sd),
        {PREFIX + k: v for k, v in sd.items()},
    ):
        assert detect(obj) == "stavis"
        assert list(unwrap_checkpoint(obj)) == list(sd)
    assert detect(small) is None
    bare = tmp_path / "bare.pth"
    torch.save(dict(sd), bare)
    assert load_model(bare, audiovisual=True).fuseav.weight.shape == (1, 128, 1, 1)


@pytest.mark.parametrize(
    "manifest", ["vinet.keys.json", "avinet_bilinear.keys.json", "soundnet.keys.json"]
)
def test_other_families_are_not_recognized(manifest):
    keys = load_manifest(DATA / manifest)
    assert detect({k: torch.zeros(1) for k in keys}) is None
    assert detect({PREFIX + k: torch.zeros(1) for k in keys}) is None
    with pytest.raises(WeightsError, match="not STAViS"):
        unwrap_checkpoint({k: torch.zeros(1) for k in keys})


def test_bad_checkpoints_are_one_line_errors(tmp_path, published_file):
    sd = read_state(published_file)
    cases = {
        "arch.pth": (snapshot(dict(sd)) | {"arch": "resnet-101"}, "arch is 'resnet-101'"),
        "shape.pth": (dict(sd) | {"fuse.weight": torch.zeros(1, 32, 1, 1)}, "fuse.weight"),
        "missing.pth": ({k: v for k, v in sd.items() if k != "fuseav.bias"}, "1 missing"),
        "junk.pth": (None, "not a readable PyTorch checkpoint"),
    }
    for name, (obj, message) in cases.items():
        path = tmp_path / name
        if obj is None:
            path.write_bytes(b"not a checkpoint")
        else:
            torch.save(obj, path)
        with pytest.raises(WeightsError, match=message) as err:
            load_model(path, audiovisual=True)
        assert "\n" not in str(err.value) and name in str(err.value)
    with pytest.raises(WeightsError, match="not found"):
        load_model(tmp_path / "absent.pth", audiovisual=True)


class _Payload:
    """Not a tensor: a pickle holding it could run code when loaded."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"epoch": 61, "arch": "resnet-50", "state_dict": {}, "x": _Payload()}, path)
    with pytest.raises(WeightsError, match="refused, the file holds Python objects"):
        load_model(path, audiovisual=True)


# --- frames in ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(240, 320), (288, 384), (360, 640), (1080, 1920), (97, 131)])
def test_frame_transform_is_pillow_exactly(size):
    """Both resizes equal Pillow's (NEAREST named, as Pillow < 7 defaulted to; then
    BILINEAR) to the gray level; 384 columns is a width where the closed form
    floor((k + 1/2) s) of the nearest index picks other columns than Pillow."""
    from PIL import Image

    rgb = np.random.default_rng(size[0]).integers(0, 256, (*size, 3), dtype=np.uint8)
    loaded = np.asarray(Image.fromarray(rgb).resize((320, 240), Image.NEAREST))
    np.testing.assert_array_equal(resize_nearest(rgb, 240, 320), loaded)
    small = np.asarray(Image.fromarray(loaded).resize((112, 112), Image.BILINEAR))
    np.testing.assert_array_equal(resize_bilinear(loaded, 112, 112), small)
    h, w = size[0] // 2 + 1, size[1] // 3 + 1  # the width shrinks more: Pillow's order
    direct = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
    np.testing.assert_array_equal(resize_bilinear(rgb, h, w), direct)
    x = frame_to_tensor(rgb)
    assert x.shape == (3, INPUT_SIZE, INPUT_SIZE) and x.dtype == torch.float32
    theirs = torch.from_numpy(small.astype(np.float32)).permute(2, 0, 1)
    for c, m in enumerate(ACTIVITYNET_MEAN):
        theirs[c].sub_(m)  # their Normalize(mean, [1, 1, 1])
    assert torch.equal(x, theirs)
    if size[1] == 384:
        rows = np.floor((np.arange(240) + 0.5) * size[0] / 240).astype(int)
        cols = np.floor((np.arange(320) + 0.5) * size[1] / 320).astype(int)
        assert (rgb[rows[:, None], cols[None, :]] != loaded).any()


def test_frame_transform_rejects_other_layouts():
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        frame_to_tensor(np.zeros((3, 240, 320), np.uint8))
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        frame_to_tensor(np.zeros((240, 320, 3), np.float32))


# --- which clip predicts which frame ----------------------------------------------------------


def their_test_clips(n: int) -> dict[int, list[int]]:
    """Their dataset's test clips, written out from the procedure (1-based frames): clip j
    = j ... min(N, j+15) for j = 1 ... N-1, loop-padded, saved as frame j + 8; the
    evaluation reads the frames <= N. Returns {0-based frame: 0-based clip}."""
    out = {}
    for j in range(1, n):
        indices = list(range(j, min(n + 1, j + CLIP_LEN)))
        for index in indices:  # their LoopPadding appends while it iterates
            if len(indices) >= CLIP_LEN:
                break
            indices.append(index)
        if j + 8 <= n:
            out[j + 8 - 1] = [i - 1 for i in indices]
    return out


@pytest.mark.parametrize("n", [64, 24, 16, 12, 9, 8])
@pytest.mark.parametrize("warmup", ["mirror", "reference"])
def test_every_frame_they_map_gets_their_clip(n, warmup):
    theirs = their_test_clips(n)
    assert sorted(theirs) == list(range(TARGET_INDEX, n))  # frames 0-7 never mapped
    for f, indices in theirs.items():
        plan = clip_plan(f, n, warmup)
        assert list(plan.indices) == indices
        assert (plan.audio_first, plan.audio_last) == (indices[0], indices[-1])


def test_clip_start_middle_and_loop_padded_end():
    n = 64
    assert clip_plan(32, n).indices == tuple(range(24, 40))
    assert clip_plan(32, n).indices[TARGET_INDEX] == 32 and LOOK_AHEAD == 7
    end = clip_plan(63, n)  # their clip 56: 56 ... 64, 56 ... 62 (1-based)
    assert end.indices == (*range(55, 64), *range(55, 62)) and end.audio_last == 61
    assert clip_plan(56, n).indices == tuple(range(48, 64))  # the last clip with no padding
    # the start: mirrored about frame 0 (not repeated), the frame keeps its place 8
    first = clip_plan(0, n)
    assert first.indices == (8, 7, 6, 5, 4, 3, 2, 1, *range(8))
    assert (first.audio_first, first.audio_last) == (-8, 7)
    assert clip_plan(7, n).indices == (1, *range(15))
    # reference: frames 0-7 get their first clip, the one frame 8 gets
    for f in range(TARGET_INDEX + 1):
        assert clip_plan(f, n, "reference") == ClipPlan(f, tuple(range(16)), 0, 15)
        assert clip_plan(f, n, "reference").inputs == clip_plan(8, n).inputs


@pytest.mark.parametrize("n", [15, 12, 9, 8, 5, 2, 1])
def test_short_videos_give_every_frame_a_clip(n):
    for f in range(n):
        mirror, reference = clip_plan(f, n), clip_plan(f, n, "reference")
        for plan in (mirror, reference):
            assert len(plan.indices) == CLIP_LEN and all(0 <= i < n for i in plan.indices)
        assert mirror.indices[TARGET_INDEX] == f  # the mirror keeps the frame's place
        if f >= TARGET_INDEX:
            assert mirror == reference
        else:  # the mirror's audio always covers frame f
            assert mirror.audio_first == f - 8 and mirror.audio_last == min(n - 1, f + 7)
            assert reference.indices == published_clip(0, n)
    if n == 1:
        assert clip_plan(0, 1).indices == (0,) * CLIP_LEN
    if n == 5:  # 0 ... 4 cycled, as their LoopPadding
        assert published_clip(0, 5) == (0, 1, 2, 3, 4) * 3 + (0,)
        assert clip_plan(2, 5).indices == (2, 3, 4, 3, 2, 1, 0, 1, 2, 3, 4, 2, 3, 4, 3, 2)


def test_clip_plan_rejects_bad_requests():
    with pytest.raises(ValueError, match="outside"):
        clip_plan(10, 10)
    with pytest.raises(ValueError, match="at least one frame"):
        clip_plan(0, 0)
    with pytest.raises(ValueError, match="unknown warm-up"):
        clip_plan(0, 10, "repeat")


# --- audio in -----------------------------------------------------------------------------


def test_excerpt_spans_by_hand_at_25_fps():
    n = 64
    full = excerpt_span(clip_plan(9, n), 25, None)  # frames 1 ... 16
    assert full == (SPAN - SPAN // 2, 16 * SPAN + SPAN // 2 + 1) == (441, 14554)
    assert full[1] - full[0] == 16 * SPAN + 1 == 14_113
    first = excerpt_span(clip_plan(8, n), 25, None)  # starts at frame 0: clamped at 0
    assert first == (0, 15 * SPAN + SPAN // 2 + 1) == (0, 13_672)
    end = excerpt_span(clip_plan(63, n), 25, None)  # hears frames 55 ... 61 only
    assert end == (55 * SPAN - 441, 61 * SPAN + 441 + 1) == (48_069, 54_244)
    mirror = excerpt_span(clip_plan(0, n), 25, None)  # frames -8 ... 7: a full length
    assert mirror == (-8 * SPAN - 441, 7 * SPAN + 441 + 1) and mirror[1] - mirror[0] == 14_113
    assert excerpt_span(clip_plan(0, n, "reference"), 25, None) == first
    # the end is clamped at the audio's length; past it, nothing
    assert excerpt_span(clip_plan(40, n), 25, 30_000) == (32 * SPAN - 441, 30_000)
    assert excerpt_span(clip_plan(63, n), 25, 40_000) == (48_069, 48_069)
    # their int() rounding of fractional spans: 29.97 fps
    plan = clip_plan(20, n)
    n_samples = FS / 29.97
    start = int(max(0.0, 12 * (1 / 29.97) * FS - n_samples / 2))
    stop = int(27 * (1 / 29.97) * FS + n_samples / 2) + 1
    assert excerpt_span(plan, 29.97, None) == (start, stop)


def test_place_excerpt_is_their_hann_window_centred():
    rng = np.random.default_rng(0)
    for size in (14_113, 13_672, 1, 2):
        x = rng.standard_normal(size).astype(np.float32)
        out = place_excerpt(x)
        start = MID - size // 2
        expected = np.hanning(size).astype(np.float32) * x
        np.testing.assert_array_equal(out[start : start + size], expected)
        assert not out[:start].any() and not out[start + size :].any()
    assert not place_excerpt(np.zeros(0, np.float32)).any()
    longer = rng.standard_normal(AUDIO_BUFFER + 11).astype(np.float32)  # at 10 fps
    windowed = np.hanning(longer.size).astype(np.float32) * longer
    off = longer.size // 2 - MID
    np.testing.assert_array_equal(place_excerpt(longer), windowed[off : off + AUDIO_BUFFER])


def test_clip_audio_from_a_wav(tmp_path):
    import soundfile as sf

    n_frames, fps = 40, 25
    pcm = np.random.default_rng(3).integers(-20_000, 20_000, n_frames * SPAN, dtype=np.int16)
    path = tmp_path / "clip.wav"
    sf.write(path, pcm, FS, subtype="PCM_16")
    wav = pcm.astype(np.float32) * 2.0**-7  # their int32 * 2**-23 of a 16-bit sample
    plans = [clip_plan(f, n_frames) for f in (0, 8, 20, 39)]
    with AudioTrack.open(path) as track:
        batch = audio_batch(track, plans, fps)
    assert batch.shape == (4, 1, 1, AUDIO_BUFFER) and batch.dtype == np.float32
    for row, plan in zip(batch, plans, strict=True):
        start, stop = excerpt_span(plan, fps, len(wav))
        heard = np.concatenate([np.zeros(max(0, -start), np.float32), wav[max(0, start) : stop]])
        np.testing.assert_array_equal(row[0, 0], place_excerpt(heard))
    # the mirrored first clip: a full-length window whose first 7 497 samples are the
    # silence before the video, so the audio starts where it plays, not at the left edge
    assert excerpt_span(plans[0], fps, len(wav)) == (-7497, 7 * SPAN + 442)
    assert np.flatnonzero(batch[0, 0, 0])[0] == MID - 14_113 // 2 + 7497
    with AudioTrack.open(path) as track:
        np.testing.assert_array_equal(clip_audio(track, plans[2], fps), batch[2, 0, 0])


# --- maps out -----------------------------------------------------------------------------


def _matlab_blur(m: np.ndarray) -> np.ndarray:
    """imfilter(m, fspecial('gaussian', 13, 2), 'symmetric', 'conv'), written out in 2-D."""
    r = BLUR_SIZE // 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    h = np.exp(-(x * x + y * y) / (2 * 2.0**2))
    h[h < np.finfo(float).eps * h.max()] = 0
    h /= h.sum()
    padded = np.pad(m, r, mode="symmetric")
    out = np.zeros_like(m)
    for dy in range(BLUR_SIZE):
        for dx in range(BLUR_SIZE):
            out += h[dy, dx] * padded[dy : dy + m.shape[0], dx : dx + m.shape[1]]
    return out


def test_postprocess_is_their_matlab_route():
    rng = np.random.default_rng(4)
    sal = rng.random((112, 112)).astype(np.float32) ** 4  # peaky, as saliency is
    sal[40, 60] = 1.5
    g = gaussian_taps()
    assert g.shape == (BLUR_SIZE,) and math.isclose(g.sum(), 1.0)
    m = (sal - sal.min()) / (sal.max() - sal.min())
    theirs = imresize_matlab(_matlab_blur(m.astype(np.float64)), (360, 480))
    raw = postprocess(sal, 360, 480, unit_range=False)
    assert raw.shape == (360, 480) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, theirs, rtol=0, atol=1e-6)
    out = postprocess(sal, 360, 480)
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out, (theirs - theirs.min()) / np.ptp(theirs), atol=1e-6)
    # the blur happens at 112 x 112, before the resize: not ViNet's order
    other = _matlab_blur(imresize_matlab(m.astype(np.float64), (360, 480)))
    assert np.abs(other - theirs).max() > 1e-2
    # shrinking (antialiased) and equal sizes work too; a constant map is 0.5 as theirs
    assert postprocess(sal, 60, 80).shape == (60, 80)
    np.testing.assert_allclose(
        postprocess(sal, 112, 112, unit_range=False), _matlab_blur(m), atol=1e-6
    )
    assert np.all(postprocess(np.full((112, 112), 0.3), 20, 30) == 0.5)
    # bicubic overshoots around a sharp peak (here shrinking): MATLAB's values dip below 0,
    # the default route rescales them to exactly [0, 1]
    peak = np.zeros((112, 112), np.float32)
    peak[50, 60] = 1.0
    assert postprocess(peak, 20, 20, unit_range=False).min() < -1e-4
    assert postprocess(peak, 20, 20).min() == 0.0 and postprocess(peak, 20, 20).max() == 1.0
