"""TASED-Net through predict and evaluate, on generated videos with the deterministic
checkpoint: the reference warm-up is the clips by hand, batches and overlap reuse give
the same maps, the CLI writes every format, short videos get every map, and salcli's
maps match a re-enactment of the authors' one-forward-per-frame procedure."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from helpers import (
    DATA,
    REPO_ROOT,
    SMALL_INPUT,
    h5_frames,
    make_av_dataset,
    saved,
    write_video,
)
from typer.testing import CliRunner

from salcli.cli import app
from salcli.evaluation import evaluate as E
from salcli.inference.predictor import Predictor
from salcli.media.decode import open_video
from salcli.models import tased_procedure as TP
from salcli.models.tased import TASED, fold_batchnorm
from salcli.models.vinet_procedure import clip_indices
from salcli.testing import deterministic_state_dict, load_manifest

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import tased_authors_pipeline as tap  # noqa: E402

T = 32  # frames per clip
FRAME_SIZE = (48, 64)  # (H, W) of the generated videos
SHORT = 40  # frames: under the 63 the authors' script needs
MIN_CC = 0.999  # per frame against the authors' procedure (the issue's bar)
# Maps of the same frames from other batch compositions (batch size, overlap reuse): the
# sums are grouped differently, fp32 rounding can move an argmax on a near-tie and with
# it a patch of the raw map (tased.section.md); after the sigma-7 blur such a move stays
# small. Measured here: at most 2e-4 (the section: 6e-4 on real frames at full size).
BATCH_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return deterministic_state_dict(load_manifest(DATA / "tased.keys.json"))


@pytest.fixture(scope="module")
def checkpoint(state, tmp_path_factory):
    return saved(state, tmp_path_factory.mktemp("tased") / "TASED_updated.pt")


@pytest.fixture(scope="module")
def short_video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", n_frames=SHORT,
                       size=FRAME_SIZE)  # fmt: skip


def _maps(checkpoint, video, **kw):
    opts = dict(device="cpu", precision="fp32", input_size=SMALL_INPUT, channels_last=False)
    return Predictor(checkpoint, **{**opts, **kw}).predict(video)


@pytest.mark.slow
def test_reference_maps_are_the_reversed_clips_by_hand(checkpoint, state, short_video):
    """Frame t's map is TASED-Net on clip_indices(t, reference), post-processed as the
    authors do and resized to the frame; after frame 31 the warm-ups agree."""
    torch.set_num_threads(2)
    with open_video(short_video) as reader:
        frames = [f.rgb for f in reader]
    model = TASED().eval()
    model.load_state_dict(state)
    model = fold_batchnorm(model)  # as predict runs a loaded file
    x = torch.stack([TP.frame_to_tensor(f, SMALL_INPUT) for f in frames], dim=1)  # (3, N, h, w)
    ours = _maps(checkpoint, short_video, warmup="reference", batch_size=1, reuse=False)
    assert ours.shape == (SHORT, *FRAME_SIZE)
    for t in (0, 7, 30, SHORT - 1):
        clip = x[:, clip_indices(t, SHORT, T, "reference")][None]
        with torch.inference_mode():
            want = TP.postprocess(model(clip)[0].numpy(), *FRAME_SIZE)
        assert np.abs(ours[t] - want).max() < 1e-5, t
    mirror = _maps(checkpoint, short_video, warmup="mirror", batch_size=1, reuse=False)
    assert np.abs(mirror[T - 1 :] - ours[T - 1 :]).max() < 1e-5
    # frame 0's clip is frames 31 ... 0 under both; frames 1 ... 30 differ
    assert np.abs(mirror[1 : T - 1] - ours[1 : T - 1]).max(axis=(1, 2)).min() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("batch_size,reuse", [(3, False), (4, True)])
def test_batches_and_overlap_reuse_give_the_same_maps(checkpoint, short_video, batch_size, reuse):
    torch.set_num_threads(2)
    one = _maps(checkpoint, short_video, warmup="reference", batch_size=1, reuse=False)
    many = _maps(checkpoint, short_video, warmup="reference", batch_size=batch_size, reuse=reuse)
    assert np.abs(many - one).max() <= BATCH_TOLERANCE


def test_cli_writes_every_format(checkpoint, tmp_path):
    videos = [write_video(tmp_path / f"v{i}.mp4", n_frames=n) for i, n in enumerate((3, 34))]
    out = tmp_path / "maps"
    r = CliRunner().invoke(app, [
        "predict", *map(str, videos), "--weights", str(checkpoint), "--precision", "fp32",
        "--input-size", f"{SMALL_INPUT[0]}x{SMALL_INPUT[1]}", "-o", str(out),
        "--format", "png,h5,mp4", "--batch-size", "2", "--warmup", "reference", "--jsonl",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    for stem, n in (("v0", 3), ("v1", 34)):
        assert len(list((out / stem).glob("*.png"))) == n
        assert h5_frames(out / f"{stem}.h5") == (n, 48, 64)
        assert (out / f"{stem}_saliency.mp4").is_file()
    import h5py

    with h5py.File(out / "v1.h5") as f:
        attrs = dict(f.attrs)
        maps = f["saliency"][:]
    assert attrs["model"] == "tased" and attrs["warmup"] == "reference"
    assert "sigma 7" in attrs["postprocess"] and np.isclose(maps.max(), 1.0, atol=1e-2)


def test_short_videos_get_every_map_where_the_authors_give_none(state, short_video, tmp_path):
    model = TASED().eval()
    model.load_state_dict(state)
    theirs = tap.run(model, short_video, tmp_path / "authors", input_size=SMALL_INPUT)
    assert len(theirs.maps) == 0  # their script skips a video under 63 frames
    for warmup in ("reference", "mirror"):
        ours = Predictor(model=model, precision="fp32", warmup=warmup,
                         input_size=SMALL_INPUT).predict(short_video)  # fmt: skip
        assert ours.shape == (SHORT, *FRAME_SIZE) and np.isfinite(ours).all()


def test_reference_maps_match_the_authors_procedure(state, tmp_path):
    """64 frames at the model's size (no resize on either side), lossless frame files:
    salcli's defaults (batches, overlap reuse) against one forward pass per frame, on
    the authors' 8-bit route."""
    torch.set_num_threads(2)
    model = TASED().eval()
    model.load_state_dict(state)
    n = 2 * T
    video = write_video(tmp_path / "clip.mp4", n_frames=n, size=SMALL_INPUT)
    ours = Predictor(model=model, precision="fp32", warmup="reference",
                     input_size=SMALL_INPUT).predict(video)  # fmt: skip
    theirs = tap.run(model, video, tmp_path / "authors", input_size=SMALL_INPUT)
    assert ours.shape == theirs.maps.shape == (n, *SMALL_INPUT)
    assert len(list((tmp_path / "authors" / "maps").glob("*.png"))) == n
    # Their files are int(255 g / max g): compared on that 8-bit route (the float maps
    # against 8-bit files would measure the truncation, CC ~0.998 on these flat maps).
    ours_u8 = np.floor(ours.astype(np.float64) * TP.PIXEL_MAX)
    cc = [np.corrcoef(a.ravel(), b.ravel().astype(np.float64))[0, 1]
          for a, b in zip(ours_u8, theirs.maps, strict=True)]  # fmt: skip
    assert min(cc) >= MIN_CC, cc
    # the float route: within one 8-bit step of their files (plus batch rounding)
    step = 1.0 / TP.PIXEL_MAX
    assert np.abs(ours - theirs.maps / TP.PIXEL_MAX).max() <= step + BATCH_TOLERANCE


def test_evaluate_runs_it(checkpoint, tmp_path):
    root = tmp_path / "data"
    make_av_dataset(root, "DIEM", {"film": 3}, wav=False)

    def factory(weights, audio, **options):  # evaluate's own, at the small input size
        return Predictor(weights, audio=audio, input_size=SMALL_INPUT, **options)

    res = E.evaluate("diem", root=root, weights=checkpoint, warmup="reference",
                     precision="fp32", predictor_factory=factory)  # fmt: skip
    assert res.videos[0].frames == 3 and res.conventions["warmup"] == "reference"
    assert "TASED-Net" in res.conventions["source"]
    assert all(math.isfinite(res.overall[m]) for m in ("cc", "kld", "sim"))
