"""A re-enactment of the authors' STAViS test procedure, for parity tests and benchmarks.

Written from the facts in ``shared/docs/conventions.md``, section "STAViS" (not from the
authors' code); 1-based frame numbers as theirs:

1. the video is extracted to one JPEG file per frame, ``img_00001.jpg ...`` (cv2, quality
   ``JPEG_QUALITY``; the published frames came extracted, at a quality not stated), and
   its soundtrack to a mono 16-bit wav at 22 050 Hz (channels averaged);
2. their loader: ``Image.open(f).convert('RGB').resize((320, 240))``. Pillow >= 7 makes
   that bicubic; their requirements pinned Pillow 5.2, whose default was nearest, so the
   re-enactment names ``Image.NEAREST`` explicitly. Then Pillow bilinear to 112 x 112,
   values 0-255 as floats (their ``ToTensor`` with norm value 1), minus the ActivityNet
   mean;
3. their exhaustive test loop: clip j = 1 ... N-1 holds frames j ... min(N, j+15),
   loop-padded to 16 by cycling its own indices; its map is saved for frame j+8;
4. their audio: the wav read as 32-bit integers times 2^-23; frame k spans samples
   int(max(0, (k-1)/f*Fs - n/2)) ... int(min(L, (k-1)/f*Fs + n/2)), n = Fs/f; a clip
   hears from the start of its first (padded) index to the end, inclusive, of its last;
   that excerpt times ``numpy.hanning`` of its length, centred in 35 280 zeros, as
   (1, 1, 35280);
5. batches of ``batch_size`` clips (theirs: 128), a short one padded to that size by
   repeating its first sample, the copies dropped; the model in eval mode, fp32, loaded
   from the snapshot as theirs (``state_dict``, ``module.`` removed; strict for the
   audio-visual head, not for the visual one); the fused logits through a sigmoid;
6. each map min-max scaled to 0-255, truncated to uint8, saved as JPEG at quality 75
   (imageio 2.3's default; written with Pillow) as ``pred_sal_{j+8:06d}.jpg``;
7. their MATLAB evaluation, in floats: the JPEG read back to [0, 1], min-max normalised,
   blurred at 112 x 112 with a 13 x 13 Gaussian (sigma 2, ``fspecial``), symmetric
   borders, then ``imresize`` (bicubic, antialiased) to the frame's size, nothing
   renormalised. Only the maps of frames 9 ... N are read.

Lossless options, to tell apart what the two JPEG steps cost: ``frame_format="png"``
extracts lossless frames, and every run also returns the maps of step 7 computed on the
float sigmoid maps (no 8-bit JPEG between the model and the MATLAB step).

The network is salcli's (``salcli.models.stavis.Stavis``, golden-parity tested against theirs),
unfolded; ``imresize`` is ``salcli.metrics.imresize_matlab``. Run as a script, it times
salcli against the re-enactment on a generated clip and prints the figures::

    .venv/bin/python benchmarks/stavis_authors_pipeline.py [--frames 64] [--size 360x640]
        [--precisions fp32,bf16] [--audiovisual/--visual] [--weights PATH]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

JPEG_QUALITY = 95  # cv2.IMWRITE_JPEG_QUALITY of the extracted frames (not stated by them)
MAP_JPEG_QUALITY = 75  # imageio 2.3.0's default JPEG quality, their saved maps
FRAME_NAME = "img_{:05d}.{}"  # 1-based, as video_frames/<DB>/<video>/
MAP_NAME = "pred_sal_{:06d}.jpg"  # 1-based frame the map belongs to (clip j -> j + 8)
LOAD_W, LOAD_H = 320, 240  # their loader's resize, Pillow's (width, height)
SAMPLE_SIZE = 112  # pixels, their sample_size
CLIP_LEN = 16  # frames, their sample_duration
TARGET_OFFSET = CLIP_LEN // 2  # clip j's map is saved for frame j + 8
ACTIVITYNET_MEAN = (114.7748, 107.7354, 99.4750)  # RGB, on 0-255 values
WAV_RATE = 22_050  # Hz of the extracted wav
WAV_SCALE = 2.0**-23  # their int32 samples -> float (a 16-bit v becomes v * 2^-7)
BUFFER = int(WAV_RATE / 10 * CLIP_LEN)  # 35 280 samples: 22 050 Hz at 10 fps, 16 frames
THEIR_BATCH = 128  # clips per batch in their test scripts
DEFAULT_BATCH = 8  # clips per batch here (128 clips of activations do not fit a small CPU)
MATLAB_SIGMA = 2.0  # postprocessMap(map, 2), pixels at 112 x 112
MATLAB_KSIZE = 2 * math.ceil(3 * MATLAB_SIGMA) + 1  # 13: fspecial's kernel side


@dataclass
class TheirMaps:
    """What the evaluation reads of one re-enacted run: frames 9 ... N (1-based)."""

    frames: list[int]  # 1-based frame numbers, 9 ... N
    maps: np.ndarray  # (N-8, H, W) float64: saved JPEG maps -> MATLAB post-processing
    float_maps: np.ndarray  # (N-8, H, W) float64: float sigmoid maps -> MATLAB step
    raw: np.ndarray  # (N-8, 112, 112) float32: the sigmoid maps
    predict_s: float = 0.0  # seconds: frame files -> saved maps (the model phase)
    clips: int = 0  # clips through the model (padded copies not counted)


# --- 1. extraction ------------------------------------------------------------------


def extract_frames(video: str | Path, folder: str | Path, frame_format: str = "jpg") -> int:
    """Every frame of ``video`` as ``img_00001.jpg ...`` (or ``.png``, lossless) in
    ``folder``; returns the number of frames."""
    from salcli.media.decode import open_video

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if frame_format == "jpg" else []
    n = 0
    with open_video(video) as reader:
        for frame in reader:
            path = folder / FRAME_NAME.format(frame.index + 1, frame_format)
            if not cv2.imwrite(str(path), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR), params):
                raise OSError(f"could not write {path}")
            n += 1
    return n


def extract_wav(video: str | Path, path: str | Path) -> Path:
    """The first audio stream of ``video`` as a mono 16-bit wav at 22 050 Hz (channels
    averaged, as ``ffmpeg -ac 1`` mixes a stereo pair), from its first decoded sample."""
    import av
    import soundfile

    chunks = []
    with av.open(str(video)) as container:
        resampler = av.AudioResampler(format="fltp", rate=WAV_RATE)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().mean(axis=0))  # (n,) float in [-1, 1)
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().mean(axis=0))
    mono = np.concatenate(chunks) if chunks else np.zeros(0)
    pcm = np.clip(np.rint(mono * 32768.0), -32768, 32767).astype(np.int16)
    soundfile.write(str(path), pcm, WAV_RATE, subtype="PCM_16")
    return Path(path)


# --- 2. their loader ------------------------------------------------------------------


def load_frame(path: Path) -> torch.Tensor:
    """One frame file -> (3, 112, 112) float32, 0-255 minus the ActivityNet mean."""
    from PIL import Image

    with Image.open(path) as im:
        img = im.convert("RGB").resize((LOAD_W, LOAD_H), Image.NEAREST)  # Pillow 5.2's default
    img = img.resize((SAMPLE_SIZE, SAMPLE_SIZE), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32).copy()).permute(2, 0, 1)  # (3, h, w)
    mean = torch.tensor(ACTIVITYNET_MEAN, dtype=torch.float32).view(3, 1, 1)
    return x - mean


# --- 3. their clips --------------------------------------------------------------------


def their_clips(n: int, *, all_clips: bool = True) -> list[tuple[int, list[int]]]:
    """(j, the 1-based frames of clip j) for j = 1 ... N-1, loop-padded to 16; with
    ``all_clips=False`` only the clips whose maps the evaluation reads (j + 8 <= N)."""
    out = []
    for j in range(1, n):
        if not all_clips and j + TARGET_OFFSET > n:
            break
        listed = list(range(j, min(n, j + CLIP_LEN - 1) + 1))
        out.append((j, [listed[i % len(listed)] for i in range(CLIP_LEN)]))
    return out


# --- 4. their audio -------------------------------------------------------------------


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples float32, rate): the wav as 32-bit integers times 2^-23."""
    import soundfile

    data, rate = soundfile.read(str(path), dtype="int32", always_2d=True)
    if data.shape[1] != 1:
        raise ValueError(f"{path}: their excerpt copy needs a mono wav")
    return (data[:, 0] * WAV_SCALE).astype(np.float32), int(rate)


def clip_excerpt(wav: np.ndarray, rate: int, fps: float, frames: list[int]) -> np.ndarray:
    """(1, 1, 35280) float32: the audio input of the clip of 1-based ``frames``."""
    n = rate / fps
    length = wav.shape[0]
    start = int(max(0.0, (frames[0] - 1) / fps * rate - n / 2))
    end = int(min(length, (frames[-1] - 1) / fps * rate + n / 2))
    excerpt = wav[start : end + 1]
    out = np.zeros(BUFFER, dtype=np.float32)
    if excerpt.size:
        windowed = excerpt * np.hanning(excerpt.size).astype(np.float32)
        at = BUFFER // 2 - excerpt.size // 2
        out[at : at + excerpt.size] = windowed
    return out[None, None, :]


# --- 5. the model ---------------------------------------------------------------------


def load_model(path: str | Path, *, audiovisual: bool) -> torch.nn.Module:
    """Their way: the snapshot's ``state_dict`` with ``module.`` removed, loaded into
    the network (strict for the audio-visual head), eval mode, fp32."""
    from salcli.models.stavis import Stavis

    snapshot = torch.load(path, map_location="cpu", weights_only=True)
    if snapshot.get("arch") != "resnet-50":
        raise ValueError(f"{path}: arch {snapshot.get('arch')!r}, not resnet-50")
    state = {k.removeprefix("module."): v for k, v in snapshot["state_dict"].items()}
    model = Stavis(audiovisual=audiovisual)
    model.load_state_dict(state, strict=audiovisual)
    return model.eval()


def _run_batch(model, clips: list[torch.Tensor], sounds: list[np.ndarray], batch: int):
    """Sigmoid maps (len(clips), 112, 112) of one batch, padded to ``batch`` by
    repeating its first sample (their test does; the copies are dropped)."""
    real = len(clips)
    clips = clips + [clips[0]] * (batch - real)
    sounds = sounds + [sounds[0]] * (batch - real)
    x = torch.stack(clips)  # (B, 3, 16, 112, 112)
    a = torch.from_numpy(np.stack(sounds))  # (B, 1, 1, 35280)
    with torch.no_grad():
        logits = model.logits(x, a)  # (B, 1, 112, 112): the last of their {'sal': [...]}
    return torch.sigmoid(logits)[:real, 0].numpy()


# --- 6. their saved maps, 7. their MATLAB post-processing --------------------------------


def save_map(saliency: np.ndarray, path: Path) -> None:
    """Min-max to 0-255, truncated to uint8, JPEG at quality 75 (Pillow)."""
    from PIL import Image

    lo, hi = float(saliency.min()), float(saliency.max())
    scaled = (saliency - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(saliency)
    Image.fromarray(scaled.astype(np.uint8), mode="L").save(path, quality=MAP_JPEG_QUALITY)


def _fspecial_gaussian(size: int = MATLAB_KSIZE, sigma: float = MATLAB_SIGMA) -> np.ndarray:
    """MATLAB's ``fspecial('gaussian', size, sigma)``: (size, size), sums to 1."""
    half = (size - 1) / 2.0
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    h = np.exp(-(x * x + y * y) / (2.0 * sigma * sigma))
    h[h < np.finfo(np.float64).eps * h.max()] = 0.0
    return h / h.sum()


def matlab_postprocess(m: np.ndarray, height: int, width: int) -> np.ndarray:
    """Their eval step on a [0, 1] map (112, 112): min-max, 13 x 13 blur with symmetric
    borders, imresize to (height, width); float64, not renormalised."""
    from scipy.signal import convolve2d

    from salcli.metrics import imresize_matlab

    m = np.asarray(m, dtype=np.float64)
    lo, hi = m.min(), m.max()
    m = (m - lo) / (hi - lo) if hi > lo else np.full_like(m, 0.5)
    kernel = _fspecial_gaussian()
    pad = kernel.shape[0] // 2
    padded = np.pad(m, pad, mode="symmetric")  # MATLAB 'symmetric': the edge repeated
    blurred = convolve2d(padded, kernel[::-1, ::-1], mode="valid")  # imfilter correlates
    return imresize_matlab(blurred, (height, width))


def read_map(path: Path) -> np.ndarray:
    """A saved map as MATLAB's ``im2double(imread(f))``, first channel."""
    from PIL import Image

    with Image.open(path) as im:
        a = np.asarray(im)
    return (a if a.ndim == 2 else a[:, :, 0]).astype(np.float64) / 255.0


# --- the whole procedure ------------------------------------------------------------------


def predict_folder(
    model: torch.nn.Module,
    frames_dir: Path,
    n: int,
    fps: float,
    frame_size: tuple[int, int],
    *,
    wav: Path | None,
    out_dir: Path,
    frame_format: str = "jpg",
    batch_size: int = DEFAULT_BATCH,
    all_clips: bool = True,
) -> TheirMaps:
    """Steps 2-7 on extracted frames (and wav): the maps of frames 9 ... N."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if wav is not None:
        samples, rate = read_wav(wav)
    else:  # visual only: their loader still reads a wav; the head ignores it
        samples, rate = np.zeros(0, dtype=np.float32), WAV_RATE
    cache: dict[int, torch.Tensor] = {}  # 1-based frame -> (3, 112, 112); files are read once

    def frame(k: int) -> torch.Tensor:
        if k not in cache:
            cache[k] = load_frame(frames_dir / FRAME_NAME.format(k, frame_format))
        return cache[k]

    started = time.perf_counter()
    plan = their_clips(n, all_clips=all_clips)
    raw: dict[int, np.ndarray] = {}  # 1-based frame -> sigmoid map
    for b in range(0, len(plan), batch_size):
        part = plan[b : b + batch_size]
        clips = [torch.stack([frame(k) for k in ks], dim=1) for _, ks in part]  # (3, 16, h, w)
        sounds = [clip_excerpt(samples, rate, fps, ks) for _, ks in part]
        for (j, _), m in zip(part, _run_batch(model, clips, sounds, batch_size), strict=True):
            save_map(m, out_dir / MAP_NAME.format(j + TARGET_OFFSET))
            raw[j + TARGET_OFFSET] = m
        for k in [k for k in cache if k < (part[-1][0] + 1)]:
            del cache[k]  # later clips start after this batch's last start
    predict_s = time.perf_counter() - started
    read = list(range(TARGET_OFFSET + 1, n + 1))  # the evaluation reads frames 9 ... N
    h, w = frame_size
    maps = [matlab_postprocess(read_map(out_dir / MAP_NAME.format(f)), h, w) for f in read]
    floats = [matlab_postprocess(raw[f], h, w) for f in read]
    shape = (0, h, w)
    return TheirMaps(
        frames=read,
        maps=np.stack(maps) if maps else np.zeros(shape),
        float_maps=np.stack(floats) if floats else np.zeros(shape),
        raw=np.stack([raw[f] for f in read]) if read else np.zeros((0, SAMPLE_SIZE, SAMPLE_SIZE)),
        predict_s=predict_s,
        clips=len(plan),
    )


def run(
    weights: str | Path,
    video: str | Path,
    workdir: str | Path,
    *,
    audiovisual: bool,
    frame_format: str = "jpg",
    batch_size: int = DEFAULT_BATCH,
    all_clips: bool = True,
    model: torch.nn.Module | None = None,
) -> TheirMaps:
    """The whole re-enactment on ``video``: extraction (frames, and the wav for the
    audio-visual head), then their procedure with the snapshot ``weights``. Returns
    their maps of frames 9 ... N (``TheirMaps``)."""
    from salcli.media.decode import probe

    workdir = Path(workdir)
    meta = probe(video)
    n = extract_frames(video, workdir / "frames", frame_format)
    wav = extract_wav(video, workdir / "audio.wav") if audiovisual else None
    model = model or load_model(weights, audiovisual=audiovisual)
    return predict_folder(
        model,
        workdir / "frames",
        n,
        meta.fps,
        (meta.height, meta.width),
        wav=wav,
        out_dir=workdir / "maps",
        frame_format=frame_format,
        batch_size=batch_size,
        all_clips=all_clips,
    )


def per_frame_cc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each pair of maps."""
    return np.array([np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b, strict=True)])


# --- benchmark ------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def main(argv: list[str] | None = None) -> None:
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from helpers import write_video

    from salcli.inference.predictor import Predictor
    from salcli.testing import load_manifest, stavis_snapshot

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=64, help="frames of the generated clip")
    ap.add_argument("--size", default="360x640", help="HxW of the generated clip")
    ap.add_argument("--video", help="a video with sound instead of the generated clip")
    ap.add_argument("--precisions", default="fp32,bf16", help="salcli precisions to time")
    ap.add_argument("--visual", action="store_true", help="the visual-only head")
    ap.add_argument("--weights", help="a STAViS snapshot (default: the tamed fill)")
    ap.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="clips per batch")
    args = ap.parse_args(argv)
    audiovisual = not args.visual
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        weights = args.weights
        if weights is None:
            weights = tmp / "audiovisual_split1_save_60.pth"
            manifest = load_manifest(ROOT / "tests" / "data" / "stavis_audiovisual.keys.json")
            torch.save(stavis_snapshot(manifest, tamed=True), weights)
        video = args.video or write_video(
            tmp / "clip.mp4", n_frames=args.frames, size=_size(args.size), audio_rate=WAV_RATE
        )
        print(
            f"STAViS ({'audio-visual' if audiovisual else 'visual'}), {video}; torch threads "
            f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f} on "
            f"{os.cpu_count()} CPUs"
        )
        ours = {}
        for precision in args.precisions.split(","):
            p = Predictor(weights, audio=audiovisual, precision=precision, device="cpu",
                          warmup="reference", on_warning=lambda m: None)  # fmt: skip
            started = time.perf_counter()
            ours[precision] = p.predict(video)
            took = time.perf_counter() - started
            n = len(ours[precision])
            print(
                f"salcli {precision}: {n} maps in {took:.1f} s = {n / took:.2f} maps/s "
                f"(decode, transform, model, post-processing; batch {p.batch_size})"
            )
        theirs = run(weights, video, tmp / "authors", audiovisual=audiovisual,
                     batch_size=args.batch_size)  # fmt: skip
        print(
            f"re-enactment: {theirs.clips} clips in {theirs.predict_s:.1f} s = "
            f"{len(theirs.frames) / theirs.predict_s:.2f} evaluated maps/s (JPEG files -> "
            f"saved maps, batch {args.batch_size})"
        )
        print(f"load average now {os.getloadavg()[0]:.2f}")
        for precision, maps in ours.items():
            mapped = maps[TARGET_OFFSET:]
            for label, their in (
                ("published route", theirs.maps),
                ("float maps", theirs.float_maps),
            ):
                cc = per_frame_cc(mapped, their)
                print(f"CC salcli {precision} vs theirs ({label}), frames 9-{len(maps)}: "
                      f"min {cc.min():.5f}, mean {cc.mean():.5f}")  # fmt: skip


if __name__ == "__main__":
    main()
