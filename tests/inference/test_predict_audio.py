"""`salcli predict --audio`: AViNet end to end on small generated videos with sound."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from helpers import SMALL_INPUT
from typer.testing import CliRunner

from salcli.cli import app

runner = CliRunner()
SIZE = f"{SMALL_INPUT[0]}x{SMALL_INPUT[1]}"


def _run(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def _fusion_precisions() -> list:
    params = []
    for fusion in ("transformer", "concat", "bilinear"):
        for precision in ("fp32", "bf16", "fp16"):
            # bilinear runs at 224x384 only: minutes where a half precision is emulated
            slow = fusion == "bilinear" and precision != "fp32"
            params.append(pytest.param(fusion, precision, marks=[pytest.mark.slow] if slow else []))
    return params


@pytest.mark.parametrize("fusion,precision", _fusion_precisions())
def test_audio_each_fusion(fusion, precision, make_video, avinet_checkpoints, tmp_path):
    # AViNet(B)'s bilinear layer is tied to the 224x384 bottleneck: one frame at full size
    n, size = (1, "224x384") if fusion == "bilinear" else (4 if precision == "fp32" else 2, SIZE)
    video = make_video(n_frames=n, audio_rate=48000)
    out = tmp_path / "o"
    r = _run(
        video,
        "--audio",
        "--fusion",
        fusion,
        "--weights",
        avinet_checkpoints[fusion],
        "-o",
        out,
        "-f",
        "h5",
        "--input-size",
        size,
        "--precision",
        precision,
        "--jsonl",
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["frames"] == n
    with h5py.File(out / "clip.h5") as f:
        assert f["saliency"].shape == (n, 48, 64)
        assert f.attrs["model"] == fusion and f.attrs["precision"] == precision
        assert all(len(np.unique(m)) > 256 for m in f["saliency"][:])  # never a few levels


def test_fusion_mismatch_is_refused(make_video, avinet_checkpoints, tmp_path):
    video = make_video(n_frames=2, audio_rate=22050)
    r = _run(
        video,
        "--audio",
        "--fusion",
        "bilinear",
        "--weights",
        avinet_checkpoints["transformer"],
        "-o",
        tmp_path / "o",
    )
    assert r.exit_code == 3
    assert "transformer" in r.stderr and "bilinear" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_avinet_weights_without_audio_flag(make_video, avinet_checkpoints, tmp_path):
    video = make_video(n_frames=2)
    r = _run(video, "--weights", avinet_checkpoints["concat"], "-o", tmp_path / "o")
    assert r.exit_code == 3 and "--audio" in r.stderr
    assert "the AViNet (concat) checkpoint listens to the soundtrack" in r.stderr


def test_no_audio_track_fails_unless_silence_allowed(make_video, avinet_checkpoints, tmp_path):
    video = make_video(n_frames=3)  # no soundtrack
    args = [
        video,
        "--audio",
        "--weights",
        avinet_checkpoints["concat"],
        "--input-size",
        SIZE,
        "-o",
        tmp_path / "o",
        "-f",
        "h5",
    ]
    r = _run(*args)
    assert r.exit_code == 1
    assert "no audio" in r.stderr.lower() and "--allow-silence" in r.stderr
    assert not (tmp_path / "o" / "clip.h5").exists()
    r = _run(*args, "--allow-silence")
    assert r.exit_code == 0, r.output
    assert "silence" in r.stderr
    with h5py.File(tmp_path / "o" / "clip.h5") as f:
        assert f["saliency"].shape == (3, 48, 64)


def test_sound_changes_the_maps(make_video, avinet_checkpoints):
    from salcli.inference.predictor import Predictor

    p = Predictor(
        avinet_checkpoints["concat"],
        audio=True,
        input_size=SMALL_INPUT,
        device="cpu",
        allow_silence=True,
    )
    loud = p.predict(make_video("loud.mp4", n_frames=3, audio_rate=22050))
    with pytest.warns(UserWarning, match="silence"):
        quiet = p.predict(make_video("quiet.mp4", n_frames=3))  # no soundtrack
    assert loud.shape == quiet.shape == (3, 48, 64)
    assert np.abs(loud - quiet).max() > 1e-3
