"""The prediction pipeline end to end: API and CLI on tiny generated videos."""

from __future__ import annotations

import json

import av
import h5py
import numpy as np
import pytest
import torch
from helpers import SMALL_INPUT
from typer.testing import CliRunner

from salcli.cli import app
from salcli.errors import InputError
from salcli.inference.predictor import Predictor
from salcli.models.vinet import ViNet

runner = CliRunner()
SIZE = f"{SMALL_INPUT[0]}x{SMALL_INPUT[1]}"


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return ViNet().eval()


def _run(*args):
    return runner.invoke(app, ["predict", *map(str, args)])


def test_api_one_map_per_frame(make_video, small_model):
    video = make_video(n_frames=35, size=(48, 64))
    p = Predictor(model=small_model, input_size=SMALL_INPUT, device="cpu", batch_size=6)
    indices, maps = zip(*p.iter_maps(video), strict=True)
    assert list(indices) == list(range(35))
    maps = np.stack(maps)
    assert maps.shape == (35, 48, 64) and maps.dtype == np.float32
    assert float(maps.min()) == 0.0 and float(maps.max()) == 1.0


def test_batch_size_does_not_change_maps(make_video, small_model):
    video = make_video(n_frames=9)
    kw = dict(model=small_model, input_size=SMALL_INPUT, device="cpu", precision="fp32")
    a = Predictor(batch_size=2, **kw).predict(video)
    b = Predictor(batch_size=5, **kw).predict(video)
    # float noise of batch-shaped kernels only (min-max normalization magnifies it)
    assert np.abs(a - b).max() < 5e-3
    assert min(np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b, strict=True)) > 0.9999


@pytest.mark.parametrize("n", [1, 5])
@pytest.mark.parametrize("warmup", ["mirror", "reference"])
def test_short_videos_get_every_map(make_video, small_model, n, warmup):
    video = make_video(n_frames=n)
    p = Predictor(model=small_model, input_size=SMALL_INPUT, device="cpu", warmup=warmup)
    assert p.predict(video).shape == (n, 48, 64)


def test_warmup_policies_differ_only_in_first_frames(make_video, small_model):
    video = make_video(n_frames=34)
    kw = dict(
        model=small_model, input_size=SMALL_INPUT, device="cpu", batch_size=8, precision="fp32"
    )
    a = Predictor(warmup="mirror", **kw).predict(video)
    b = Predictor(warmup="reference", **kw).predict(video)
    assert np.abs(a[31:] - b[31:]).max() < 5e-3
    assert np.abs(a[:31] - b[:31]).max() > 5e-2


def test_cli_png_h5_mp4(make_video, vinet_checkpoint, tmp_path):
    video = make_video(n_frames=33, size=(48, 64), audio_rate=44100)
    out = tmp_path / "out"
    r = _run(
        video,
        "-o",
        out,
        "--format",
        "png,h5,mp4",
        "--weights",
        vinet_checkpoint,
        "--input-size",
        SIZE,
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    pngs = sorted((out / "clip").glob("*.png"))
    assert [p.name for p in pngs[:2]] == ["0001.png", "0002.png"] and len(pngs) == 33
    with h5py.File(out / "clip.h5") as f:
        sal = f["saliency"]
        assert sal.shape == (33, 48, 64) and sal.dtype == np.float16
        assert sal.chunks == (1, 48, 64) and sal.compression is not None
        assert 0.0 <= float(np.min(sal[:])) and float(np.max(sal[:])) <= 1.0
        ts = f["timestamps"][:]
        assert ts.shape == (33,) and np.allclose(np.diff(ts), 1 / 25, atol=1e-3)
        for key in (
            "fps",
            "source",
            "model",
            "weights_sha256",
            "clip_len",
            "warmup",
            "salcli_version",
        ):
            assert key in f.attrs
        assert f.attrs["model"] == "vinet" and int(f.attrs["clip_len"]) == 32
        assert len(f.attrs["weights_sha256"]) == 64
    with av.open(str(out / "clip_saliency.mp4")) as c:
        vs = c.streams.video[0]
        assert (vs.codec_context.width, vs.codec_context.height) == (64, 48)
        assert sum(1 for _ in c.decode(vs)) == 33
        assert len(c.streams.audio) == 1
    record = json.loads((out / "clip.salcli.json").read_text())
    assert record["frames"] == 33 and set(record["formats"]) == {"png", "h5", "mp4"}
    # png and h5 hold the same maps
    import cv2

    first = cv2.imread(str(pngs[0]), cv2.IMREAD_GRAYSCALE)
    with h5py.File(out / "clip.h5") as f:
        assert np.abs(first.astype(float) - np.rint(f["saliency"][0] * 255)).max() <= 1


def test_cli_rerun_skips_and_overwrite_redoes(make_video, vinet_checkpoint, tmp_path):
    video = make_video(n_frames=3)
    args = [
        video,
        "-o",
        tmp_path / "o",
        "--weights",
        vinet_checkpoint,
        "--input-size",
        SIZE,
        "--jsonl",
    ]
    first = _run(*args)
    assert first.exit_code == 0
    assert json.loads(first.stdout.strip())["status"] == "done"
    again = _run(*args)
    assert json.loads(again.stdout.strip())["status"] == "skipped"
    forced = _run(*args, "--overwrite")
    assert json.loads(forced.stdout.strip())["status"] == "done"


@pytest.mark.parametrize("kind", ["missing", "text", "empty"])
def test_bad_inputs_fail_with_one_line_and_leave_nothing(kind, tmp_path, vinet_checkpoint):
    path = tmp_path / "bad.mp4"
    if kind == "text":
        path.write_text("this is not a video\n" * 20)
    elif kind == "empty":
        path.write_bytes(b"")
    out = tmp_path / "out"
    r = _run(path, "-o", out, "--weights", vinet_checkpoint, "--input-size", SIZE, "-f", "png,h5")
    assert r.exit_code == 1
    errors = [line for line in r.stderr.splitlines() if line.startswith("salcli: error:")]
    assert len(errors) == 1 and "bad.mp4" in errors[0]
    assert "Traceback" not in r.output
    assert not out.exists() or not any(out.iterdir())


def test_one_bad_file_does_not_stop_the_batch(make_video, tmp_path, vinet_checkpoint):
    good = make_video("good.mp4", n_frames=2)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    out = tmp_path / "o"
    r = _run(bad, good, "-o", out, "--weights", vinet_checkpoint, "--input-size", SIZE, "--jsonl")
    assert r.exit_code == 1
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["status"] for x in lines] == ["failed", "done"]
    assert len(list((out / "good").glob("*.png"))) == 2


def test_missing_weights_exit_3_one_line(make_video, tmp_path, monkeypatch):
    monkeypatch.setenv("SALCLI_WEIGHTS", str(tmp_path / "nothing"))
    monkeypatch.chdir(tmp_path)
    video = make_video(n_frames=2)
    r = _run(video, "-o", tmp_path / "o")
    assert r.exit_code == 3
    assert len(r.stderr.strip().splitlines()) == 1
    assert "ViNet_DHF1K.pt" in r.stderr and not (tmp_path / "o").exists()


def test_usage_errors_exit_2(make_video, vinet_checkpoint):
    video = make_video(n_frames=2)
    r = _run(video, "--format", "gif", "--weights", vinet_checkpoint)
    assert r.exit_code == 2 and "--format" in r.stderr
    r = _run(video, "--warmup", "sideways", "--weights", vinet_checkpoint)
    assert r.exit_code == 2


def test_open_errors_are_input_errors(tmp_path, small_model):
    p = Predictor(model=small_model, input_size=SMALL_INPUT, device="cpu")
    with pytest.raises(InputError, match="no such file"):
        p.predict(tmp_path / "nope.mp4")


def test_cli_stride_still_writes_every_frame(make_video, vinet_checkpoint, tmp_path):
    video = make_video(n_frames=7)
    out = tmp_path / "o"
    r = _run(
        video,
        "-o",
        out,
        "-f",
        "h5",
        "--stride",
        3,
        "--weights",
        vinet_checkpoint,
        "--input-size",
        SIZE,
        "--quiet",
    )
    assert r.exit_code == 0, r.output
    with h5py.File(out / "clip.h5") as f:
        assert f["saliency"].shape == (7, 48, 64)
    assert _run(video, "--stride", 0, "--weights", vinet_checkpoint).exit_code == 2
