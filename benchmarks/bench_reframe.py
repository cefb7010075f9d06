"""How fast ``salcli reframe`` is from maps already on disk, stage by stage, beside a
plain decode + encode of the same frames.

Writes a generated video (an object crossing a textured scene, a cut every ``--shot``
frames) and its maps as ``predict``'s float16 HDF5 stack in a temporary folder, then
times:

- the whole run (``Reframer.write``: both passes, the ``mp4`` output), in frames/s;
- each stage, timed frame by frame in a run of the same two passes without the decode
  thread: decoding (twice), reading the maps, the saliency profiles, the shot detector,
  the path solver (every shot), cutting the windows out, and encoding;
- the baseline: one decode of the source and one encode of pictures of the output's
  size (a fixed crop), with the MP4 writer's codec and settings.

The issue's bar: the path solver and the cropping take < 10 % of the run.

    .venv/bin/python benchmarks/bench_reframe.py [--frames 750] [--width 1280] [--height 720]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import h5py
import numpy as np

from salcli.media.decode import open_video
from salcli.media.writers.mp4 import MP4_CRF, MP4_PRESET, _pick_video_codec
from salcli.reframing.analyse import build_track
from salcli.reframing.geometry import layout
from salcli.reframing.maps import MapStack
from salcli.reframing.options import ReframeOptions
from salcli.reframing.profiles import bin_edges, profile
from salcli.reframing.render import crop_picture
from salcli.reframing.run import Reframer
from salcli.reframing.shots import ShotDetector

FPS = 25
OBJECT_SHARE = 0.1  # the object's side, of the frame's height
SOURCE_BITRATE = 8_000_000  # bits/s of the generated source (H.264 when available)


def build(folder: Path, n: int, h: int, w: int, shot: int) -> tuple[Path, Path]:
    """The source video and its maps' stack."""
    rng = np.random.default_rng(0)
    video, stack = folder / "bench.mp4", folder / "bench.h5"
    side = max(8, int(h * OBJECT_SHARE))
    with av.open(str(video), "w") as out, h5py.File(stack, "w") as maps:
        vs = out.add_stream(_pick_video_codec(av), rate=FPS)
        vs.width, vs.height, vs.pix_fmt, vs.bit_rate = w, h, "yuv420p", SOURCE_BITRATE
        data = maps.create_dataset("saliency", (n, h, w), np.float16, chunks=(1, h, w))
        maps.attrs.update({"source": str(video), "model": "bench", "width": w, "height": h})
        background = None
        for i in range(n):
            if i % shot == 0:  # a cut: another scene
                background = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
                background[..., (i // shot) % 3] += 100
            t = (i % shot) / shot
            x = int((w - side) * (0.5 + 0.45 * np.sin(2 * np.pi * t)))
            y = (h - side) // 2
            frame = background.copy()
            frame[y : y + side, x : x + side] = 250
            sal = np.zeros((h, w), np.float32)
            sal[y : y + side, x : x + side] = 1.0
            data[i] = cv2.GaussianBlur(sal, (0, 0), side / 4)
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts, vf.time_base = i, Fraction(1, FPS)
            out.mux(vs.encode(vf))
        out.mux(vs.encode())
    return video, stack


class Encoder:
    """Pictures of ``size`` encoded as the MP4 writer encodes them."""

    def __init__(self, path: Path, size: tuple[int, int]):
        self._out = av.open(str(path), "w")
        self._vs = self._out.add_stream(_pick_video_codec(av), rate=FPS)
        self._vs.width, self._vs.height, self._vs.pix_fmt = size[0], size[1], "yuv420p"
        self._vs.options = {"crf": str(MP4_CRF), "preset": MP4_PRESET}

    def add(self, rgb: np.ndarray) -> None:
        self._out.mux(self._vs.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))

    def close(self) -> None:
        self._out.mux(self._vs.encode())
        self._out.close()


class Clock:
    """Seconds spent per stage, summed over calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, stage: str, fn, *args):
        start = time.perf_counter()
        value = fn(*args)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
        return value

    def frames(self, stage: str, video: Path):
        """The frames of ``video``, their decoding timed as ``stage``."""
        frames = iter(open_video(video))
        while (frame := self.run(stage, next, frames, None)) is not None:
            yield frame


def stages(video: Path, stack_path: Path, opts: ReframeOptions, folder: Path):
    """Seconds of each stage, streamed frame by frame as a run does (without its decode
    thread, so each stage is seen alone); the track; the number of shots."""
    meta = open_video(video).meta
    lay = layout(meta.width, meta.height, opts)
    edges = bin_edges(lay.span)
    clock = Clock()
    stack = MapStack(stack_path)
    detector = ShotDetector(meta.fps, opts.shot_threshold, opts.min_shot)
    rows, times = [], []
    for frame in clock.frames("decode (pass 1)", video):
        saliency = clock.run("read maps", stack.map, frame.index)
        rows.append(clock.run("profiles", profile, saliency, lay.axis, edges)[0])
        clock.run("shot detector", detector.add, frame.rgb)
        times.append(frame.time)
    stack.close()
    shots = detector.shots()
    args = (str(video), meta.fps, lay, edges, np.stack(rows), np.asarray(times), shots, opts)
    track = clock.run("path solver", build_track, *args)
    windows = track.windows()
    encoder = Encoder(folder / "stages.mp4", (lay.out_w, lay.out_h))
    for frame in clock.frames("decode (pass 2)", video):
        picture = clock.run("crop", crop_picture, track, frame.index, frame.rgb,
                            windows[frame.index])  # fmt: skip
        clock.run("encode", encoder.add, picture)
    clock.run("encode", encoder.close)
    return clock.seconds, track, len(shots)


def baseline(video: Path, size: tuple[int, int], folder: Path) -> float:
    """One decode and one encode of a fixed crop at the output's size, streamed."""
    start = time.perf_counter()
    encoder = Encoder(folder / "baseline.mp4", size)
    for frame in open_video(video):
        encoder.add(np.ascontiguousarray(frame.rgb[: size[1], : size[0]]))
    encoder.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=750)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--shot", type=int, default=250, help="frames between cuts")
    parser.add_argument("--aspect", default="9:16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        video, stack = build(folder, args.frames, args.height, args.width, args.shot)
        opts = ReframeOptions(aspect=args.aspect, maps_from=stack)
        parts, track, n_shots = stages(video, stack, opts, folder)  # (imports paid here)
        start = time.perf_counter()
        Reframer(opts).write(video, folder / "out", record=False)
        total = time.perf_counter() - start
        lay = track.layout
        base = baseline(video, (lay.out_w, lay.out_h), folder)
    n = args.frames
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}")
    print(f"video: {n} frames {args.width}x{args.height}, {n_shots} shots -> "
          f"{lay.out_w}x{lay.out_h} ({args.aspect}); codec {_pick_video_codec(av)}")  # fmt: skip
    print(f"whole run (both passes, mp4): {total:.2f} s, {n / total:.1f} frames/s")
    print(f"plain decode + encode of the same frames: {base:.2f} s, {n / base:.1f} frames/s; "
          f"the run takes {total / base:.2f} x that")  # fmt: skip
    staged = sum(parts.values())
    print("stages, streamed one after the other (share of their sum):")
    for name, seconds in parts.items():
        print(f"  {name:<16} {seconds:7.3f} s  {100 * seconds / staged:5.1f} %")
    ours = parts["path solver"] + parts["crop"]
    print(f"path solver + crop: {100 * ours / staged:.1f} % of the stages, "
          f"{100 * ours / total:.1f} % of the whole run")  # fmt: skip


if __name__ == "__main__":
    main()
