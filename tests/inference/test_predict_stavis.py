"""`salcli predict` with STAViS end to end, and which frames and samples each clip gets.

Two kinds of tests:

- the pipeline with a stand-in model (``Predictor(model=...)``, recognised as STAViS by
  its ``arch`` and ``audiovisual`` attributes) that notes what it receives: frames of
  distinct constant grey levels (so a clip's frame indices can be read back from its
  tensor) and a wav of known samples (so each clip's audio input can be rebuilt by hand
  from the published rules);
- the real network with the tamed published-format checkpoint (tests/conftest.py
  ``stavis_checkpoint``), both heads, on small generated videos with sound, fp32 unless
  a test is about another precision.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction

import av
import cv2
import h5py
import numpy as np
import pytest
import soundfile
import torch
from helpers import write_video
from torch import nn
from typer.testing import CliRunner

from salcli.cli import app
from salcli.errors import OptionError, WeightsError
from salcli.inference.predictor import Predictor
from salcli.models.registry import STAVIS
from salcli.models.stavis import ACTIVITYNET_MEAN

runner = CliRunner()

FPS = 25  # frames/s of every generated input
RATE = 22_050  # Hz, STAViS's audio rate
SPAN = RATE // FPS  # 882 samples of audio per frame at 25 fps
HALF_SPAN = SPAN / 2  # their n/2
BUFFER = 35_280  # samples of the model's audio input
CLIP = 16  # frames per clip
CENTRE = 8  # position in its clip of the frame a map belongs to
LEVEL0, LEVEL_STEP = 10, 5  # grey level of frame i: 10 + 5 i (frames 0 ... 48)
FRAME_SIZE = (16, 24)  # (H, W) of the stand-in's frames
VIDEO_SIZE = (48, 64)  # (H, W) of conftest.write_video's frames
PCM_SCALE = 2.0**-7  # a 16-bit sample v becomes v * 2^-7 (SoundNet's range)
MAX_SPREAD = 2.0  # grey levels a decoded constant frame may vary by (a lossy codec)


def _run(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def _errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("salcli: error:")]


def _cc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b, strict=True)])


# --- a stand-in model and inputs whose content says where it comes from ----------------


class StandIn(nn.Module):
    """Recognised as STAViS (``arch``, ``audiovisual``); notes, per clip, the frame indices
    read from the grey levels and the audio input it gets."""

    arch = "stavis"

    def __init__(self, audiovisual: bool):
        super().__init__()
        self.audiovisual = audiovisual
        self.clips: list[list[int]] = []
        self.sounds: list[np.ndarray | None] = []
        self.batches: list[int] = []

    def forward(self, clip: torch.Tensor, audio: torch.Tensor | None = None) -> torch.Tensor:
        b, c, t, h, w = clip.shape
        assert (c, t, h, w) == (3, CLIP, 112, 112)
        grey = clip[:, 0].float() + ACTIVITYNET_MEAN[0]  # (B, 16, 112, 112), 0-255
        spread = grey.amax(dim=(2, 3)) - grey.amin(dim=(2, 3))  # (B, 16)
        assert float(spread.max()) <= MAX_SPREAD  # each frame one grey level
        levels = grey.mean(dim=(2, 3)).numpy()
        self.clips += np.rint((levels - LEVEL0) / LEVEL_STEP).astype(int).tolist()
        if audio is None:
            self.sounds += [None] * b
        else:
            assert tuple(audio.shape) == (b, 1, 1, BUFFER)  # time last
            self.sounds += list(audio[:, 0, 0].numpy().copy())
        self.batches.append(b)
        ramp = torch.linspace(0, 1, 112 * 112).view(1, 112, 112)
        return ramp.expand(b, 112, 112) * (1 + torch.arange(b).view(b, 1, 1))


def write_frames(folder, n: int):
    """Frames img_00001.png ... of grey level 10 + 5 i (lossless)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.full((*FRAME_SIZE, 3), LEVEL0 + LEVEL_STEP * i, dtype=np.uint8)
        cv2.imwrite(str(folder / f"img_{i + 1:05d}.png"), img)
    return folder


def write_wav(path, n: int, seed: int = 0) -> np.ndarray:
    """n frames' worth of 16-bit noise as a mono 22 050 Hz wav; returns the samples as the
    model hears them (v * 2^-7)."""
    pcm = np.random.default_rng(seed).integers(-20000, 20000, n * SPAN).astype(np.int16)
    soundfile.write(str(path), pcm, RATE, subtype="PCM_16")
    return pcm.astype(np.float64) * PCM_SCALE


# --- the published rules, restated by hand ------------------------------------------------


def _loop_pad(listed: list[int]) -> list[int]:
    return [listed[i % len(listed)] for i in range(CLIP)]


def _bounce(i: int, n: int) -> int:
    """Position i < 0 mirrored about frame 0 (not repeated), bouncing off frame n-1."""
    p = -i
    while p > n - 1:
        p = abs(2 * (n - 1) - p) if n > 1 else 0
    return p


def expected_clip(f: int, n: int, warmup: str) -> tuple[list[int], int, int]:
    """(0-based frames of frame f's clip, first and last frame its audio spans).

    Frames f >= 8: their clip j = f - 7 (1-based): frames f-8 ... min(N, f+8)-1, loop
    padded; it hears from its first to its last listed index. Frames 0-7: "reference"
    takes their first clip (frame 8's); "mirror" puts frames 8-f ... 1 before frame 0 and
    hears what plays at f-8 ... min(f+7, n-1)."""
    if f >= CENTRE or warmup == "reference":
        start = max(f - CENTRE, 0)
        clip = _loop_pad(list(range(start, min(n, start + CLIP))))
        return clip, clip[0], clip[-1]
    before = [_bounce(i, n) for i in range(f - CENTRE, 0)]
    clip = _loop_pad(before + list(range(min(n, f + CENTRE))))
    return clip, f - CENTRE, min(f + CENTRE - 1, n - 1)


def expected_audio(timeline: np.ndarray, first: int, last: int) -> np.ndarray:
    """The model's audio input for a clip hearing frames first ... last: frame k spans
    int((k/f) Fs -+ n/2) (start clamped at 0, or floored before the video; end at L), the
    excerpt start ... end inclusive times numpy's Hann window, centred in 35 280 zeros."""
    length = timeline.shape[0]
    centre = first * (1.0 / FPS) * RATE - HALF_SPAN
    start = int(max(0.0, centre)) if first >= 0 else math.floor(centre)
    end = int(min(length, last * (1.0 / FPS) * RATE + HALF_SPAN))
    stop = min(end + 1, length)
    excerpt = np.zeros(stop - start)
    real = max(0, start)
    excerpt[real - start :] = timeline[real:stop]  # before the video: silence
    windowed = excerpt.astype(np.float32) * np.hanning(excerpt.size).astype(np.float32)
    out = np.zeros(BUFFER, dtype=np.float32)
    at = BUFFER // 2 - excerpt.size // 2
    out[at : at + excerpt.size] = windowed
    return out


# --- which frames and which samples each clip gets -------------------------------------


def test_a_stand_in_is_recognised_as_stavis():
    for audiovisual, name in ((True, "stavis-audiovisual"), (False, "stavis-visual")):
        p = Predictor(model=StandIn(audiovisual), device="cpu", precision="fp32")
        assert p.family is STAVIS and p.variant.name == name and p.audio is audiovisual
        assert p.input_size == (112, 112) and p.schedule.length == CLIP
    with pytest.raises(WeightsError, match="visual only"):
        Predictor(model=StandIn(False), audio=True, device="cpu")


def computed_once(per_frame: list) -> list:
    """The clips the model computes, in order: one per frame, but a clip equal to the one
    before it is not computed again (the engine keeps the last clip's map)."""
    return [c for i, c in enumerate(per_frame) if i == 0 or c != per_frame[i - 1]]


@pytest.mark.parametrize("warmup", ["mirror", "reference"])
@pytest.mark.parametrize("n", [1, 5, 8, 9, 12, 16, 17, 40])
def test_each_clip_gets_its_frames_and_samples(tmp_path, n, warmup):
    frames = write_frames(tmp_path / "frames", n)
    timeline = write_wav(tmp_path / "sound.wav", n)
    model = StandIn(audiovisual=True)
    p = Predictor(model=model, device="cpu", precision="fp32", warmup=warmup, batch_size=3)
    maps = list(p.iter_maps(frames, fps=FPS, audio_path=tmp_path / "sound.wav"))
    assert [i for i, _ in maps] == list(range(n))  # every frame exactly one map, in order
    assert all(m.shape == FRAME_SIZE for _, m in maps)
    assert max(model.batches) <= 3
    expected = computed_once([expected_clip(f, n, warmup) for f in range(n)])
    assert len(model.clips) == len(expected)  # one clip per frame, repeats computed once
    for i, (clip, first, last) in enumerate(expected):
        assert model.clips[i] == clip, i
        np.testing.assert_allclose(
            model.sounds[i], expected_audio(timeline, first, last), atol=2e-4, err_msg=f"{i}"
        )
    if warmup == "mirror" or n == 1:
        assert len(model.clips) == n  # every frame has a clip of its own


@pytest.mark.parametrize("audiovisual, batch", [(True, 2), (True, 12), (False, 3)])
def test_the_reference_warm_up_computes_frame_8s_clip_once(tmp_path, audiovisual, batch):
    """Frames 0-8 share one clip under "reference": the model computes it once, whatever
    the batches (within a batch and across them), and frames 0-8 get the same map."""
    n = 20
    frames = write_frames(tmp_path / "frames", n)
    write_wav(tmp_path / "sound.wav", n)
    audio = {"audio_path": tmp_path / "sound.wav"} if audiovisual else {}
    model = StandIn(audiovisual=audiovisual)
    p = Predictor(model=model, device="cpu", precision="fp32", warmup="reference", batch_size=batch)
    maps = np.stack([m for _, m in p.iter_maps(frames, fps=FPS, **audio)])
    assert model.clips == [expected_clip(f, n, "reference")[0] for f in range(8, n)]
    assert model.clips[0] == list(range(16))
    assert max(model.batches) <= batch
    for f in range(8):
        np.testing.assert_array_equal(maps[f], maps[8])


def test_start_middle_and_loop_padded_end_spelled_out(tmp_path):
    n = 40
    frames = write_frames(tmp_path / "frames", n)
    timeline = write_wav(tmp_path / "sound.wav", n)
    seen = {}
    for warmup in ("mirror", "reference"):
        model = StandIn(audiovisual=True)
        p = Predictor(model=model, device="cpu", precision="fp32", warmup=warmup)
        list(p.iter_maps(frames, fps=FPS, audio_path=tmp_path / "sound.wav"))
        seen[warmup] = model
    mirror, reference = seen["mirror"], seen["reference"]
    # the reference clips of frames 0-8 are one clip, computed once: frame f >= 9's clip
    # is the model's (f - 8)-th
    reference.clips[1:1] = reference.clips[:1] * 8
    reference.sounds[1:1] = reference.sounds[:1] * 8
    # start: frames 0-7
    assert mirror.clips[0] == [8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6, 7]
    assert mirror.clips[5] == [3, 2, 1, *range(13)]
    assert all(reference.clips[f] == list(range(16)) for f in range(9))  # frame 8's clip
    # the mirror's frame 0 hears f-8 ... f+7 on the timeline: silence before the video
    # (8.5 frames of silence, then 7.5 of sound; a sample of slack for float rounding)
    before = int(8 * SPAN + HALF_SPAN)  # samples of silence at the excerpt's front
    length = 16 * SPAN + 1  # a full clip's excerpt: 14 113 samples at 25 fps
    at = BUFFER // 2 - length // 2
    assert not mirror.sounds[0][: at + before - 1].any()
    sound = mirror.sounds[0][at + before + 1 : at + length - 1]
    assert np.count_nonzero(sound) > 0.99 * sound.size
    assert not mirror.sounds[0][at + length + 1 :].any()
    # middle: frames 8 ... 32, the same under both policies
    for f in range(8, 33):
        assert mirror.clips[f] == reference.clips[f] == list(range(f - 8, f + 8))
        np.testing.assert_array_equal(mirror.sounds[f], reference.sounds[f])
    # end: loop padded as their clip 32 ... (frame 39 = their clip 32: 32 ... 40, 32 ... 38)
    assert mirror.clips[39] == [*range(31, 40), *range(31, 38)]
    assert mirror.clips[35] == [*range(27, 40), 27, 28, 29]
    # ... which hears up to its last listed frame (37), not the video's last (39)
    np.testing.assert_allclose(mirror.sounds[39], expected_audio(timeline, 31, 37), atol=2e-4)
    assert np.abs(mirror.sounds[39] - expected_audio(timeline, 31, 39)).max() > 1.0


def test_a_video_file_with_sound_feeds_the_published_audio(tmp_path):
    """The video-file route: a clip's audio is stavis_procedure.clip_audio of its plan on
    the file's own track, and the visual head gets no sound at all."""
    from salcli.media.audio import AudioTrack
    from salcli.models.stavis_procedure import clip_audio, clip_plan

    n = 20
    video = tmp_path / "grey.mp4"
    with av.open(str(video), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)  # lossless: grey levels within 1
        vs.width, vs.height, vs.pix_fmt = FRAME_SIZE[1], FRAME_SIZE[0], "yuv420p"
        vs.options = {"crf": "0"}
        aus = out.add_stream("aac", rate=RATE, layout="mono")
        for i in range(n):
            img = np.full((*FRAME_SIZE, 3), LEVEL0 + LEVEL_STEP * i, dtype=np.uint8)
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, FPS)
            out.mux(vs.encode(vf))
        out.mux(vs.encode())
        t = np.arange(n * SPAN) / RATE
        tone = (0.3 * np.sin(2 * np.pi * 300 * t * (1 + t))).astype(np.float32)  # a chirp
        for s in range(0, tone.size, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, s : s + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = RATE, s, Fraction(1, RATE)
            out.mux(aus.encode(af))
        out.mux(aus.encode())
    hears, deaf = StandIn(audiovisual=True), StandIn(audiovisual=False)
    for model in (hears, deaf):
        p = Predictor(model=model, device="cpu", precision="fp32", batch_size=4)
        assert [i for i, _ in p.iter_maps(video)] == list(range(n))
    assert hears.clips == deaf.clips == [expected_clip(f, n, "mirror")[0] for f in range(n)]
    assert deaf.sounds == [None] * n
    with AudioTrack.open(video) as track:
        for f in range(n):
            want = clip_audio(track, clip_plan(f, n, "mirror"), FPS)
            np.testing.assert_allclose(hears.sounds[f], want, atol=1e-4)


# --- the real network end to end -----------------------------------------------------------


TONED = 9  # frames: 0-7 (the warm-up) and 8, the first their procedure maps
SHORT = 3  # frames


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stavis_media")
    return {
        "toned": write_video(folder / "toned.mp4", n_frames=TONED, audio_rate=RATE),
        "short": write_video(folder / "short.mp4", n_frames=SHORT, audio_rate=RATE),
        "silent": write_video(folder / "silent.mp4", n_frames=SHORT),  # short's frames
    }


def _predictor(checkpoint, **kw) -> Predictor:
    return Predictor(checkpoint, device="cpu", **{"precision": "fp32", **kw})


@pytest.fixture(scope="module")
def visual_maps(stavis_checkpoint, media):
    return _predictor(stavis_checkpoint, batch_size=2).predict(media["toned"])


@pytest.fixture(scope="module")
def av_maps(stavis_checkpoint, media):
    return _predictor(stavis_checkpoint, audio=True, batch_size=2).predict(media["toned"])


def test_cli_visual_every_format_rerun_and_resume(stavis_checkpoint, media, visual_maps, tmp_path):
    out = tmp_path / "out"
    args = ["-o", out, "-w", stavis_checkpoint, "--precision", "fp32", "--jsonl"]
    r = _run(media["toned"], *args, "-f", "png,h5,mp4", "--h5-dtype", "float32", "-b", 4)
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout)
    assert line["status"] == "done" and line["frames"] == TONED
    pngs = sorted((out / "toned").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:04d}.png" for i in range(1, TONED + 1)]
    with h5py.File(out / "toned.h5") as f:
        maps = f["saliency"][:]
        assert maps.shape == (TONED, *VIDEO_SIZE) and maps.dtype == np.float32
        assert f.attrs["model"] == "stavis-visual" and int(f.attrs["clip_len"]) == CLIP
        assert f.attrs["warmup"] == "mirror" and f.attrs["precision"] == "fp32"
        assert "13x13" in f.attrs["postprocess"]
    # batch 4 (CLI) and batch 2 (API): the same maps up to float rounding
    assert np.abs(maps - visual_maps).max() < 1e-3 and _cc(maps, visual_maps).min() > 0.99999
    assert float(maps.min()) == 0.0 and float(maps.max()) == 1.0
    first = cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE)
    assert np.abs(first.astype(float) - np.rint(maps[0] * 255)).max() <= 1
    with av.open(str(out / "toned_saliency.mp4")) as c:
        vs = c.streams.video[0]
        assert (vs.codec_context.width, vs.codec_context.height) == VIDEO_SIZE[::-1]
        assert sum(1 for _ in c.decode(vs)) == TONED
        assert len(c.streams.audio) == 1  # the soundtrack kept
    record = json.loads((out / "toned.salcli.json").read_text())
    assert record["frames"] == TONED and record["model"] == "stavis-visual"
    assert set(record["formats"]) == {"png", "h5", "mp4"}
    # a re-run skips it; with another video it goes on where it stopped
    r = _run(media["toned"], media["short"], *args, "-f", "h5")
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["status"] for x in r.stdout.splitlines()] == ["skipped", "done"]
    with h5py.File(out / "short.h5") as f:
        assert f["saliency"].shape == (SHORT, *VIDEO_SIZE)
    # the other head's maps are not taken for these
    r = _run(media["toned"], *args, "-f", "h5", "--audio")
    assert r.exit_code == 1
    assert len(_errors(r)) == 1 and "made with another model" in _errors(r)[0]


def test_cli_audiovisual_h5_and_jsonl(stavis_checkpoint, media, av_maps, visual_maps, tmp_path):
    out = tmp_path / "out"
    r = _run(media["toned"], "--audio", "-o", out, "-w", stavis_checkpoint, "-f", "h5",
             "--h5-dtype", "float32", "-b", 3, "--precision", "fp32", "--jsonl")  # fmt: skip
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout)
    assert line["status"] == "done" and line["frames"] == TONED and line["error"] is None
    with h5py.File(out / "toned.h5") as f:
        maps = f["saliency"][:]
        assert f.attrs["model"] == "stavis-audiovisual"
    assert np.abs(maps - av_maps).max() < 1e-3 and _cc(maps, av_maps).min() > 0.99999
    assert np.abs(av_maps - visual_maps).max() > 0.05  # the other head


def test_no_sound_fails_in_one_line_unless_allowed(stavis_checkpoint, media, tmp_path):
    out = tmp_path / "out"
    args = [media["silent"], "--audio", "-o", out, "-w", stavis_checkpoint, "-f", "h5,png",
            "--h5-dtype", "float32", "--precision", "fp32"]  # fmt: skip
    r = _run(*args)
    assert r.exit_code == 1
    assert len(_errors(r)) == 1 and "no audio" in _errors(r)[0].lower()
    assert "--allow-silence" in _errors(r)[0] and "Traceback" not in r.output
    assert not out.exists() or not any(out.iterdir())
    r = _run(*args, "--allow-silence")
    assert r.exit_code == 0, r.output
    assert "silence" in r.stderr
    with h5py.File(out / "silent.h5") as f:
        quiet = f["saliency"][:]
    assert quiet.shape == (SHORT, *VIDEO_SIZE)
    toned = _predictor(stavis_checkpoint, audio=True).predict(media["short"])
    assert np.abs(quiet - toned).max() > 1e-2  # the same frames: the sound made the difference


@pytest.mark.parametrize("audio,size", [(False, "224x224"), (True, "96x96")])
def test_fusion_and_other_input_sizes_are_refused(stavis_checkpoint, media, tmp_path, audio, size):
    flags = ["--audio"] if audio else []
    for extra, words in (
        (["--fusion", "bilinear"], ("--fusion", "STAViS", "no fusion")),
        (["--input-size", size], ("--input-size", size, "112x112")),
    ):
        r = _run(media["toned"], *flags, "-w", stavis_checkpoint, "-o", tmp_path / "o", *extra)
        assert r.exit_code == 2, (extra, r.output)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and all(w in lines[0] for w in words), lines
        assert not (tmp_path / "o").exists()
    with pytest.raises(OptionError, match="112x112"):
        _predictor(stavis_checkpoint, audio=audio, input_size=(224, 384))


def test_warmups_differ_in_frames_0_to_7_only(stavis_checkpoint, media, visual_maps):
    reference = _predictor(stavis_checkpoint, warmup="reference", batch_size=3)
    maps = reference.predict(media["toned"])
    assert reference.run_info().warmup == "reference"
    np.testing.assert_allclose(maps[8:], visual_maps[8:], atol=1e-3)  # their clips
    for f in range(8):  # "reference": frame 8's map
        np.testing.assert_allclose(maps[f], maps[8], atol=1e-3)
        assert np.abs(visual_maps[f] - maps[f]).max() > 1e-2  # "mirror": a clip of its own


@pytest.mark.parametrize("warmup", ["mirror", "reference"])
@pytest.mark.parametrize("audio", [False, True], ids=["visual", "audiovisual"])
def test_a_one_frame_video_gets_one_map(stavis_checkpoint, make_video, warmup, audio):
    video = make_video(n_frames=1, audio_rate=RATE)
    maps = _predictor(stavis_checkpoint, audio=audio, warmup=warmup).predict(video)
    assert maps.shape == (1, *VIDEO_SIZE) and np.isfinite(maps).all()
    assert float(maps.max()) == 1.0 and float(maps.min()) == 0.0


HALF_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _half(stavis_checkpoint, make_video, precision: str, n: int) -> None:
    video = make_video(n_frames=n, audio_rate=RATE)
    warned: list[str] = []
    fp32 = _predictor(stavis_checkpoint, audio=True).predict(video)
    p = _predictor(stavis_checkpoint, audio=True, precision=precision, on_warning=warned.append)
    assert p.precision == precision and p.dtype == HALF_DTYPES[precision]
    half = p.predict(video)
    assert half.shape == fp32.shape == (n, *VIDEO_SIZE) and half.dtype == np.float32
    assert _cc(half, fp32).min() >= 0.999
    assert all(len(np.unique(m)) > 256 for m in half)  # the map is not quantized


@pytest.mark.slow
def test_bf16_matches_fp32(stavis_checkpoint, make_video):
    """One clip: bf16 is emulated, slowly, on CPUs without AVX512-BF16 or AMX."""
    _half(stavis_checkpoint, make_video, "bf16", n=1)


@pytest.mark.slow
def test_fp16_matches_fp32(stavis_checkpoint, make_video):
    """fp16 is emulated on most CPUs (about 15x slower than fp32 for STAViS on this one)."""
    _half(stavis_checkpoint, make_video, "fp16", n=1)
