"""salcli's ``--warmup reference`` maps against a re-enactment of the authors' procedure.

The re-enactment (benchmarks/authors_pipeline.py) goes through JPEG files, PIL's
antialiased bilinear resize and 8-bit map files, one fp32 clip per frame at batch 1;
issue 5 asks for a per-frame CC of at least 0.999 with salcli's maps on the same weights.

Measured at 224x384 with the deterministic (random-valued) checkpoint on generated
clips, the JPEG re-encoding alone costs about 1e-3 of CC (0.9988 on smooth content,
0.9967 on pixel noise), while the same procedure on lossless frame files agrees to
0.9998+: everything salcli controls (resize, normalization, warm-up, post-processing)
is checked with lossless frames at the 0.999 bar; the JPEG run is held to a looser bar.
A trained checkpoint on a real clip is expected to be less sensitive to JPEG noise.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from helpers import DATA, REPO_ROOT, write_video

pytest.importorskip("PIL")
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

import authors_pipeline as ap  # noqa: E402

from salcli.inference.predictor import Predictor  # noqa: E402
from salcli.models.vinet import ViNet  # noqa: E402
from salcli.models.vinet_procedure import clip_indices  # noqa: E402
from salcli.testing import deterministic_state_dict, load_manifest  # noqa: E402

MIN_CC = 0.999  # per frame, issue 5
MIN_CC_JPEG = 0.995  # per frame, through JPEG q95 files, random-valued weights


@pytest.fixture(scope="module")
def vinet():
    model = ViNet().eval()
    model.load_state_dict(deterministic_state_dict(load_manifest(DATA / "vinet.keys.json")))
    return model


def _per_frame_cc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array(
        [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b, strict=True)],
        dtype=np.float64,
    )


@pytest.mark.parametrize("n", [1, 5, 34, 63, 70])
@pytest.mark.parametrize("procedure,rule", [("vinet", "reversed"), ("vinet-s", "clamped")])
def test_reenactment_schedule_is_the_reference_policy(n, procedure, rule):
    seen = {}
    for t, held, flipped in ap.SCHEDULES[procedure](n):
        seen[t] = held[::-1] if flipped else held
    assert sorted(seen) == list(range(n))
    assert all(seen[t] == clip_indices(t, n, policy="reference", reference=rule) for t in range(n))


def _parity(model, tmp_path, n_frames, frame_size, input_size, frame_format="jpg"):
    video = write_video(tmp_path / "clip.mp4", n_frames=n_frames, size=frame_size)
    ours = Predictor(
        model=model, device="cpu", precision="fp32", warmup="reference", input_size=input_size
    ).predict(video)
    theirs = ap.run(
        model,
        video,
        tmp_path / "authors",
        input_size=input_size,
        frame_format=frame_format,
        procedure=model.arch,
    )
    assert ours.shape == theirs.maps.shape == (n_frames, *frame_size)
    assert len(list((tmp_path / "authors" / "maps").glob("*.png"))) == n_frames
    return _per_frame_cc(ours, theirs.maps.astype(np.float32) / 255.0)


@pytest.mark.parametrize("frame_format,bar", [("png", MIN_CC), ("jpg", MIN_CC)])
def test_reference_maps_match_the_authors_procedure_small(vinet, tmp_path, frame_format, bar):
    torch.set_num_threads(2)
    cc = _parity(vinet, tmp_path, 10, (96, 128), (32, 64), frame_format)
    assert cc.min() >= bar, cc


@pytest.mark.slow
@pytest.mark.parametrize("frame_format,bar", [("png", MIN_CC), ("jpg", MIN_CC_JPEG)])
def test_reference_maps_match_the_authors_procedure_full_size(vinet, tmp_path, frame_format, bar):
    cc = _parity(vinet, tmp_path, 3, (180, 320), (224, 384), frame_format)
    assert cc.min() >= bar, cc


def test_vinet_s_reference_maps_match_the_authors_procedure(tmp_path):
    """ViNet-S's scripts: causal clips clamped at frame 0, their maps rounded up a half
    level; lossless frames, so the 0.999 bar."""
    from salcli.models.vinet_s import ViNetS

    torch.set_num_threads(2)
    model = ViNetS().eval()
    model.load_state_dict(deterministic_state_dict(load_manifest(DATA / "vinet_s.keys.json")))
    cc = _parity(model, tmp_path, 6, (96, 128), (32, 64), "png")
    assert cc.min() >= MIN_CC, cc


@pytest.mark.slow
def test_vinet_e_maps_match_the_authors_ensemble_script(tmp_path):
    """ViNet-E: salcli's ensemble of the two files against the E script's loop (each model
    on its own frames and clip of frame t, ViNet-S bicubic to 256x456, averaged, then
    ViNet-A's post-processing) on lossless frames, at the published sizes."""
    from salcli.models.registry import load_checkpoint
    from salcli.testing import tamed_state_dict

    torch.set_num_threads(2)
    files = []
    for arch in ap.ENSEMBLE:
        path = tmp_path / f"{arch}.pt"
        torch.save(tamed_state_dict(DATA / f"{arch.replace('-', '_')}.keys.json"), path)
        files.append(path)
    video = write_video(tmp_path / "clip.mp4", n_frames=3, size=(96, 160))
    ours = Predictor(files, device="cpu", precision="fp32", warmup="reference").predict(video)
    models = [load_checkpoint(path, audio=False)[2] for path in files]  # fp32, not folded
    theirs = ap.run(models, video, tmp_path / "authors", frame_format="png", procedure="vinet-e")
    assert ours.shape == theirs.maps.shape == (3, 96, 160)
    cc = _per_frame_cc(ours, theirs.maps.astype(np.float32) / 255.0)
    assert cc.min() >= MIN_CC, cc
