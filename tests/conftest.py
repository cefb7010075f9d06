"""Shared fixtures: tiny media files encoded with PyAV, small models and checkpoints."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

DATA = Path(__file__).parent / "data"
SMALL_INPUT = (32, 64)  # (H, W) model input used by the fast end-to-end tests


@pytest.fixture(autouse=True)
def _no_weights_but_the_tests_own(tmp_path_factory, monkeypatch):
    """No test sees weights it did not put there itself: the cache (``$SALCLI_WEIGHTS``) is
    an empty folder of its own, no extra registry is merged in, and the checkout's
    ``weights/`` folder, where a developer may keep the published files, is an empty one.
    Each test finds what it files and nothing an earlier test, or the user, left."""
    import salcli.weights.cache

    monkeypatch.setenv("SALCLI_WEIGHTS", str(tmp_path_factory.mktemp("cache") / "weights"))
    monkeypatch.delenv("SALCLI_REGISTRY", raising=False)
    checkout = tmp_path_factory.mktemp("checkout") / "weights"
    monkeypatch.setattr(salcli.weights.cache, "repo_weights_dir", lambda: checkout)


@pytest.fixture(autouse=True)
def _auto_precision_is_fp32_on_every_cpu(monkeypatch):
    """``precision="auto"`` picks bf16 on CPUs with native bf16 and fp32 elsewhere, so a
    test that names no precision would take another path on another CPU. Here "auto"
    means fp32 on every CPU; tests of a precision name it (bf16 and fp16 run on any CPU,
    emulated where the CPU lacks them), and tests of "auto" itself patch this again."""
    import salcli.inference.hardware

    monkeypatch.setattr(salcli.inference.hardware, "cpu_has_native_bf16", lambda: False)


def moving_frames(n: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """n RGB frames of a bright square moving over a textured background."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 80, size=(height, width, 3), dtype=np.uint8)
    frames = []
    side = max(2, min(height, width) // 4)
    for i in range(n):
        f = base.copy()
        x = (i * 3) % max(1, width - side)
        y = (i * 2) % max(1, height - side)
        f[y : y + side, x : x + side] = (250, 240, 200)
        frames.append(f)
    return frames


def write_video(
    path: Path,
    n_frames: int = 40,
    size: tuple[int, int] = (48, 64),
    fps: int = 25,
    *,
    codec: str = "mpeg4",
    pix_fmt: str = "yuv420p",
    audio_rate: int | None = None,
    audio_layout: str = "stereo",
    tone_hz: float = 440.0,
) -> Path:
    """Encode a small test video (and optionally a sine soundtrack) with PyAV."""
    import av

    h, w = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        as_ = None
        if audio_rate:
            as_ = out.add_stream("aac", rate=audio_rate, layout=audio_layout)
        for i, rgb in enumerate(moving_frames(n_frames, h, w)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        if as_ is not None:
            total = int(audio_rate * n_frames / fps)
            t = np.arange(total) / audio_rate
            mono = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
            channels = 2 if audio_layout == "stereo" else 1
            block = 1024
            for start in range(0, total, block):
                chunk = np.tile(mono[start : start + block], (channels, 1))
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=audio_layout)
                af.sample_rate = audio_rate
                af.pts = start
                af.time_base = Fraction(1, audio_rate)
                for pkt in as_.encode(af):
                    out.mux(pkt)
            for pkt in as_.encode():
                out.mux(pkt)
    return path


def write_audio_only(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """A file with an AAC soundtrack of silence and no video stream."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=rate, layout="mono")
        for start in range(0, int(seconds * rate), 1024):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, start
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def sub_app(register):
    """A bare Typer app with one of salcli's command modules registered on it."""
    import typer

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    return app


@pytest.fixture
def make_video(tmp_path):
    def make(name: str = "clip.mp4", **kw) -> Path:
        return write_video(tmp_path / name, **kw)

    return make


@pytest.fixture(scope="session")
def vinet_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised ViNet state_dict saved as the published files are."""
    from salcli.models.vinet import ViNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "ViNet_DHF1K.pt"
    torch.save(ViNet().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def avinet_checkpoints(tmp_path_factory) -> dict[str, Path]:
    from salcli.models.vinet import AViNet

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("avweights")
    paths = {}
    for fusion in ("bilinear", "transformer", "concat"):
        paths[fusion] = folder / f"AViNet_{fusion}.pt"
        torch.save(AViNet(fusion).state_dict(), paths[fusion])
    return paths


@pytest.fixture(scope="session")
def stavis_checkpoint(tmp_path_factory) -> Path:
    """A STAViS file as published (the training snapshot), with the reference README's
    tamed fill (real video keeps its logits moderate). Both variants load it."""
    from salcli.testing import load_manifest, stavis_snapshot

    path = tmp_path_factory.mktemp("stavis") / "audiovisual_split1_save_60.pth"
    manifest = load_manifest(DATA / "stavis_audiovisual.keys.json")
    torch.save(stavis_snapshot(manifest, tamed=True), path)
    return path
