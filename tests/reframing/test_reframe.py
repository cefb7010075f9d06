"""``salcli reframe`` on generated videos whose saliency is known: an object moving left to
right, a cut to a still scene, an object leaving the frame; maps given as ``predict``'s
HDF5 stacks (the truth) or made by the stand-in model (``helpers.use_fast_model``)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from helpers import (
    OBJECT,
    encode,
    errors,
    lines,
    luma,
    predict,
    runner,
    scene_frames,
    scene_maps,
    temps,
    use_fast_model,
    write_stack,
)

import salcli
from salcli.cli import app
from salcli.media.decode import open_video
from salcli.reframing.path import PathSettings
from salcli.reframing.track import CropTrack

SIZE = (72, 160)  # (H, W) of the scenes
FPS = 25
MOVING = [8 + 3 * i for i in range(40)]  # 3 px a frame: within 0.5 widths/s (3.2 px)
STILL = [24] * 25  # after the cut, on the other side of the frame
LEAVING = [100 + 3 * i for i in range(22)] + [None] * 10  # out of the frame at the right
SHARP = {"qmax": "2"}  # MPEG-4 quantiser cap: the texture survives (the replay test sees it)
SLACK = 1e-3  # pixels: the path is written to 1e-4 px; the LP meets its bounds to 1e-6
REPLAY_TOLERANCE = 2.0  # mean |luma difference| (0-255), lossless MP4 vs JSON crops (YUV rounding)


def scenes() -> tuple[list[np.ndarray], np.ndarray]:
    """The three shots' frames and maps, each shot its own background (the cuts)."""
    parts = [(MOVING, 0, 1), (STILL, 3, 2), (LEAVING, 5, 0)]
    frames = [f for xs, seed, tint in parts for f in scene_frames(xs, SIZE, seed=seed, tint=tint)]
    maps = np.concatenate([scene_maps(xs, SIZE) for xs, _, _ in parts])
    return frames, maps


@pytest.fixture(scope="module")
def reframed(tmp_path_factory) -> dict:
    """The scenes encoded with sound, their maps as a stack, reframed to 9:16 in every
    format through the command line."""
    d = tmp_path_factory.mktemp("scenes")
    frames, maps = scenes()
    video = encode(d / "talk.mp4", frames, fps=FPS, audio_rate=16000, codec_options=SHARP)
    write_stack(d / "maps" / "talk.h5", maps, video)
    args = ["reframe", str(video), "--maps-from", str(d / "maps"), "-f", "mp4,json,debug"]
    result = runner.invoke(app, args)
    track = CropTrack.load(d / "talk_9x16.json")
    return {"dir": d, "video": video, "result": result, "track": track, "maps": maps}


def shot_ranges(n_frames: list[int]) -> list[tuple[int, int]]:
    bounds = np.cumsum([0, *n_frames])
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


SHOTS = shot_ranges([len(MOVING), len(STILL), len(LEAVING)])


def test_the_command_writes_every_format_and_says_what_it_keeps(reframed):
    r, d = reframed["result"], reframed["dir"]
    assert r.exit_code == 0, r.stderr
    for name in ("talk_9x16.mp4", "talk_9x16.json", "talk_9x16_debug.mp4", "talk_9x16.salcli.json"):
        assert (d / name).is_file(), name
    assert "saliency inside the window" in r.stderr and "worst shot" in r.stderr
    assert not temps(d)


def test_shots_are_found_at_the_cuts(reframed):
    track = reframed["track"]
    assert [(s.start, s.stop) for s in track.shots] == SHOTS
    assert track.shots[1].decision == "still"
    assert track.shots[0].decision == "track"


def test_the_window_holds_the_object_wherever_it_fits(reframed):
    track = reframed["track"]
    xs = MOVING + STILL + LEAVING
    width = SIZE[1]
    for i, ((x, _, w, _), left) in enumerate(zip(track.windows(), xs, strict=True)):
        if left is None or left + OBJECT > width:
            continue  # the object is not (wholly) in the frame
        assert x <= left and left + OBJECT <= x + w, f"frame {i}: window {x}..{x + w}"


def test_the_path_keeps_its_bounds_within_shots_and_jumps_only_at_cuts(reframed):
    track = reframed["track"]
    lay = track.layout
    ps = PathSettings.of(lay.travel, lay.length, lay.span, FPS, 0.5, 1.0)  # the defaults
    for start, stop in SHOTS:
        x = track.positions[start:stop]
        assert np.abs(np.diff(x)).max(initial=0.0) <= ps.v_max + SLACK
        assert np.abs(np.diff(x, 2)).max(initial=0.0) <= ps.a_max + SLACK
    still = track.pixel_positions()[slice(*SHOTS[1])]
    assert np.ptp(still) == 0  # a still shot: not a pixel of wobble
    cut = SHOTS[1][0]
    assert abs(track.positions[cut] - track.positions[cut - 1]) > 10 * ps.v_max


def test_when_the_object_leaves_the_window_rests(reframed):
    track = reframed["track"]
    start, stop = SHOTS[2]
    gone = start + LEAVING.index(None)
    assert np.ptp(track.pixel_positions()[gone:stop]) == 0


def _decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    frames, times = [], []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.time))
    return frames, times


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return sum(float(f.samples) for f in c.decode(s)) / s.rate


def test_the_video_has_the_source_frames_times_size_and_sound(reframed):
    d, track = reframed["dir"], reframed["track"]
    out, times = _decoded(d / "talk_9x16.mp4")
    src, src_times = _decoded(reframed["video"])
    assert len(out) == len(src) == track.frames
    assert np.allclose(times, src_times, atol=1e-3)
    h, w = out[0].shape[:2]
    assert (w, h) == (40, 72) and abs(w / h - 9 / 16) < 0.02
    frame_time = 1.0 / FPS
    assert abs(_audio_seconds(d / "talk_9x16.mp4") - _audio_seconds(reframed["video"])) < 2 * (
        frame_time
    )


def test_the_json_replays_to_the_pixels_of_the_mp4(reframed, tmp_path):
    """The JSON's windows cut from the decoded source are the MP4's pictures (rendered
    lossless here, so that the comparison is of pixels, not of the encoder)."""
    d = reframed["dir"]
    data = json.loads((d / "talk_9x16.json").read_text())
    track = CropTrack.load(d / "talk_9x16.json")
    (mp4,) = salcli.reframe_render(track, reframed["video"], tmp_path, ("mp4",), mp4_crf=0)
    out, _ = _decoded(mp4)
    src, _ = _decoded(reframed["video"])
    assert set(data["frames"][0]) == {"frame", "time", "x", "y", "w", "h", "shot"}
    replay, shifted = [], []
    for f, rgb, got in zip(data["frames"], src, out, strict=True):
        x, y, w, h = f["x"], f["y"], f["w"], f["h"]
        seen = luma(got)  # luma: 4:2:0 chroma is shared by pixel pairs, cut at odd x
        replay.append(np.abs(luma(rgb[y : y + h, x : x + w]) - seen).mean())
        x2 = x + 2 if x + 2 + w <= rgb.shape[1] else x - 2  # two pixels off
        shifted.append(np.abs(luma(rgb[y : y + h, x2 : x2 + w]) - seen).mean())
    assert max(replay) < REPLAY_TOLERANCE
    assert min(shifted) > 4 * max(replay)  # a window two pixels off would be seen


def test_the_debug_video_shows_the_source_beside_the_crop(reframed):
    out, _ = _decoded(reframed["dir"] / "talk_9x16_debug.mp4")
    assert len(out) == reframed["track"].frames
    assert out[0].shape[:2] == (72, 160 + 40)


def test_a_rerun_is_skipped_and_a_new_aspect_is_written_beside(reframed):
    d, video = reframed["dir"], reframed["video"]
    args = ["reframe", str(video), "--maps-from", str(d / "maps"), "-f", "json", "--jsonl"]
    (first,) = lines(runner.invoke(app, args))
    assert first["status"] == "skipped"
    (square,) = lines(runner.invoke(app, [*args, "--aspect", "1:1"]))
    assert square["status"] == "done" and 0.0 < square["saliency_kept"] <= 1.0
    assert (d / "talk_1x1.json").is_file()


def test_maps_of_another_video_are_refused_and_the_others_go_on(tmp_path):
    frames, maps = scenes()
    good = encode(tmp_path / "good.mp4", frames[:20])
    short = encode(tmp_path / "short.mp4", frames[:20])
    small = encode(tmp_path / "small.mp4", [f[:, :80].copy() for f in frames[:20]])
    named = encode(tmp_path / "named.mp4", frames[:20])
    stacks = tmp_path / "maps"
    write_stack(stacks / "good.h5", maps[:20], good)
    write_stack(stacks / "short.h5", maps[:12], short)  # fewer maps than frames
    write_stack(stacks / "small.h5", maps[:20], small)  # maps of another size
    write_stack(stacks / "named.h5", maps[:20], tmp_path / "other.mp4")  # another video's
    out = tmp_path / "out"
    paths = [str(p) for p in (good, short, small, named)]
    r = runner.invoke(app, ["reframe", *paths, "--maps-from", str(stacks), "-o", str(out)])
    assert r.exit_code == 1
    errs = errors(r)
    assert len(errs) == 3 and all("Traceback" not in e for e in errs)
    assert any("short.h5: 12 maps" in e for e in errs)
    assert any("160x72" in e and "80x72" in e for e in errs)
    assert any("other.mp4" in e for e in errs)
    assert sorted(p.name for p in out.iterdir()) == ["good_9x16.mp4", "good_9x16.salcli.json"]
    assert not temps(out)


@pytest.mark.parametrize(
    ("aspect", "extra", "size"),
    [
        ("21:9", [], (168, 72)),  # wider than the source: the frame between bars
        ("1:1", ["--size", "64x64"], (64, 64)),  # narrower, scaled
        ("4:5", ["--pad", "always", "--bars", "solid", "--bar-color", "ff0000"], (160, 200)),
    ],
)
def test_aspects_wider_and_narrower_than_the_source(tmp_path, aspect, extra, size):
    frames, maps = scenes()
    video = encode(tmp_path / "v.mp4", frames[:10])
    write_stack(tmp_path / "v.h5", maps[:10], video)
    r = runner.invoke(app, ["reframe", str(video), "-a", aspect, "--maps-from",
                            str(tmp_path / "v.h5"), "--jsonl", *extra])  # fmt: skip
    assert r.exit_code == 0, r.stderr
    (done,) = lines(r)
    out, _ = _decoded(Path(done["outputs"][0]))
    assert len(out) == 10 and (out[0].shape[1], out[0].shape[0]) == size
    if "solid" in extra:  # red bars above and below the whole frame
        assert out[0][2, size[0] // 2, 0] > 200 and out[0][2, size[0] // 2, 1] < 60


@pytest.mark.parametrize(
    ("n", "size", "rotation"),
    [(1, SIZE, None), (3, SIZE, None), (12, (71, 157), None), (12, SIZE, 90)],
    ids=["one-frame", "three-frames", "odd-size", "rotated"],
)
def test_short_odd_and_rotated_videos(tmp_path, n, size, rotation):
    xs = [30 + 2 * i for i in range(n)]
    frames = scene_frames(xs, size)
    video = encode(tmp_path / "v.mp4", [f[: size[0] // 2 * 2, : size[1] // 2 * 2] for f in frames],
                   rotation=rotation)  # fmt: skip
    meta = open_video(video).meta
    w, h = meta.width, meta.height  # as shown: rotated videos are upright
    maps = scene_maps(xs, (h, w)) if rotation is None else np.ones((n, h, w), np.float32)
    write_stack(tmp_path / "v.h5", maps, video)
    track = salcli.reframe(video, "9:16", maps_from=tmp_path / "v.h5", pad="never")
    assert track.frames == n
    written = salcli.reframe_render(track, video, tmp_path / "out", ("mp4", "json"))
    out, _ = _decoded(written[0])
    lay = track.layout
    assert len(out) == n and (out[0].shape[1], out[0].shape[0]) == (lay.out_w, lay.out_h)
    assert lay.out_w % 2 == 0 and lay.out_h % 2 == 0
    if rotation is not None:
        assert (w, h) == (size[0], size[1])  # upright: portrait
        assert lay.axis == 1  # a portrait source cut to 9:16 slides up-down


def test_maps_from_the_model(tmp_path, vinet_checkpoint, monkeypatch):
    """The stand-in model's map is the frame's brightness: the bright object."""
    use_fast_model(monkeypatch)
    video = encode(tmp_path / "m.mp4", scene_frames(MOVING[:30], SIZE))
    r = runner.invoke(app, ["reframe", str(video), "--weights", str(vinet_checkpoint),
                            "--input-size", "32x64", "-f", "json,debug", "--jsonl"])  # fmt: skip
    assert r.exit_code == 0, r.stderr
    (done,) = lines(r)
    assert done["status"] == "done" and done["saliency_kept"] > 0.5
    track = CropTrack.load(tmp_path / "m_9x16.json")
    x = track.windows()[:, 0]
    inside = (x <= np.array(MOVING[:30])) & (np.array(MOVING[:30]) + OBJECT <= x + 40)
    assert inside.mean() >= 0.8
    assert (tmp_path / "m_9x16_debug.mp4").is_file() and not temps(tmp_path)


def test_bad_options_exit_2_with_one_line(tmp_path):
    video = encode(tmp_path / "v.mp4", scene_frames([10, 12], SIZE))
    for bad, needle in ((["--aspect", "9:x"], "--aspect"), (["--mode", "fly"], "--mode"),
                        (["--size", "100x100"], "--size")):  # fmt: skip
        r = runner.invoke(app, ["reframe", str(video), *bad])
        assert r.exit_code == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_frame_folders_stdin_and_shards(tmp_path):
    """A folder of frames and a video, named on stdin, split over two shards."""
    frames, maps = scenes()
    folder = tmp_path / "inputs" / "shot"
    folder.mkdir(parents=True)
    for i, rgb in enumerate(frames[:12], start=1):
        cv2.imwrite(str(folder / f"{i:04d}.png"), rgb[..., ::-1])
    video = encode(tmp_path / "inputs" / "clip.mp4", frames[:10])
    stacks = tmp_path / "maps"
    write_stack(stacks / "shot.h5", maps[:12], folder)
    write_stack(stacks / "clip.h5", maps[:10], video)
    out = tmp_path / "out"
    names = f"{folder}\n{video}\n"
    done = []
    for shard in ("1/2", "2/2"):
        args = ["reframe", "-", "--maps-from", str(stacks), "-o", str(out), "--shard", shard,
                "--jsonl", "-f", "json"]  # fmt: skip
        r = runner.invoke(app, args, input=names)
        assert r.exit_code == 0, r.stderr
        done += [line["path"] for line in lines(r)]
    assert sorted(done) == sorted([str(folder), str(video)])  # each once
    assert CropTrack.load(out / "shot_9x16.json").frames == 12
    assert CropTrack.load(out / "clip_9x16.json").frames == 10


@pytest.mark.slow
def test_a_shot_longer_than_one_solve_keeps_its_bounds(tmp_path):
    """2500 frames in one shot: solved on key frames (``MAX_LP_FRAMES``), the bounds kept
    and the object held in the window wherever it moves within the speed limit."""
    n = 2500
    period = 250  # frames: the object swings across the frame and back
    xs = [int(72 + 60 * np.sin(2 * np.pi * i / period)) for i in range(n)]  # < 1.6 px/frame
    video = encode(tmp_path / "long.mp4", scene_frames(xs, SIZE))
    write_stack(tmp_path / "long.h5", scene_maps(xs, SIZE), video)
    track = salcli.reframe(video, "9:16", maps_from=tmp_path / "long.h5", mode="track")
    assert track.frames == n and len(track.shots) == 1
    lay = track.layout
    ps = PathSettings.of(lay.travel, lay.length, lay.span, FPS, 0.5, 1.0)
    assert np.abs(np.diff(track.positions)).max() <= ps.v_max + SLACK
    assert np.abs(np.diff(track.positions, 2)).max() <= ps.a_max + SLACK
    x = track.windows()[:, 0]
    inside = (x <= np.array(xs)) & (np.array(xs) + OBJECT <= x + lay.crop_w)
    assert inside.mean() > 0.95


def test_maps_written_by_predict_are_read_back(tmp_path, vinet_checkpoint, monkeypatch):
    """``salcli predict -r -o maps -f h5`` then ``salcli reframe -r --maps-from maps``: each
    video of a tree finds its own stack."""
    use_fast_model(monkeypatch)
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    encode(corpus / "a.mp4", scene_frames(MOVING[:8], SIZE))
    encode(corpus / "sub" / "b.mp4", scene_frames(MOVING[:6], SIZE, seed=4))
    maps = tmp_path / "maps"
    r = predict(corpus, "-r", "-o", maps, "-f", "h5", "-q", weights=vinet_checkpoint)
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "out"
    r = runner.invoke(app, ["reframe", str(corpus), "-r", "--maps-from", str(maps), "-o",
                            str(out), "-f", "json", "--jsonl"])  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert sorted(line["status"] for line in lines(r)) == ["done", "done"]
    assert CropTrack.load(out / "a_9x16.json").frames == 8
    assert CropTrack.load(out / "sub" / "b_9x16.json").frames == 6
