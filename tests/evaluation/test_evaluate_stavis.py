"""`salcli evaluate` with STAViS: the audio-visual protocol, a model per split, and the
published evaluation's unmapped frames 1-8 under ``--warmup reference``."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
import torch
from helpers import make_av_dataset
from typer.testing import CliRunner

from salcli.cli import app
from salcli.cli._console import flag_of
from salcli.cli.evaluate import caption
from salcli.errors import UsageError
from salcli.evaluation import evaluate as E
from salcli.evaluation.sources import PredictorRun
from salcli.models.registry import STAVIS, VINET

UNMAPPED = 8  # frames 1-8: STAViS's published procedure maps none of them
METRICS = ("cc", "nss", "auc_j", "sauc", "sim")  # what STAViS reports


class FamilyPredictor:
    """A Predictor of a given family and warm-up (what ``PredictorRun`` reads of one) whose
    maps are the frames' first channel (so the scores do not depend on the warm-up: what
    is scored is what changes)."""

    def __init__(self, family, warmup: str, variant: str):
        self.family, self.warmup = family, warmup
        self.variant = family.variant(variant)
        self.weights_path = None

    def domain_for(self, source):
        return None  # the family has no domains (UNISAL's have)

    def iter_maps(self, source, *, fps=None, audio_path=None):
        for i, p in enumerate(sorted(source.iterdir())):
            yield i, cv2.imread(str(p), cv2.IMREAD_COLOR)[:, :, 0].astype(np.float32) / 255


@pytest.fixture
def diem(tmp_path):
    root = tmp_path / "data"
    make_av_dataset(root, "DIEM", {"film": 12, "short": 6})
    return root


def _evaluate(root, predictor, **kw):
    run = PredictorRun(predictor)
    return E.evaluate("diem", root=root, predictor=run, metrics=METRICS, **kw)


def test_reference_warmup_leaves_the_published_unmapped_frames_unscored(diem):
    stavis = "stavis-audiovisual"
    ref = _evaluate(diem, FamilyPredictor(STAVIS, "reference", stavis), audio=True)
    mirror = _evaluate(diem, FamilyPredictor(STAVIS, "mirror", stavis), audio=True)
    film_ref, short_ref = ref.videos
    film_mirror, short_mirror = mirror.videos
    # frames 9-12 of film are scored, the same scores as under "mirror"; "short" (6 frames)
    # has none their procedure evaluates
    assert (film_ref.frames, film_ref.skipped) == (12 - UNMAPPED, UNMAPPED)
    assert (short_ref.frames, short_ref.skipped) == (0, 6)
    assert (film_mirror.frames, short_mirror.frames) == (12, 6)
    np.testing.assert_array_equal(film_ref.frame_scores, film_mirror.frame_scores[UNMAPPED:])
    assert all(math.isnan(short_ref.scores[m]) for m in METRICS)
    assert ref.overall == pytest.approx(film_ref.scores)  # the mean over scored videos
    c = ref.conventions
    assert c["warmup"] == "reference" and c["frames_unmapped"] == UNMAPPED + 6
    assert c["frames_scored"] == 12 - UNMAPPED and c["frames_skipped"] == UNMAPPED + 6
    assert "frames 1-8" in c["unmapped_rule"] and "STAViS" in c["unmapped_rule"]
    assert c["source"] == "model (STAViS (audio-visual), audio)"
    assert "14 not scored" in caption(ref) and "--warmup reference" in caption(ref)
    doc = json.loads(ref.to_json())
    assert doc["videos"]["short"]["skipped"] == 6 and doc["videos"]["short"]["cc"] is None
    m = mirror.conventions
    assert m["warmup"] == "mirror" and m["frames_unmapped"] == 0
    assert m["unmapped_rule"].startswith("none") and "not scored" not in caption(mirror)


def test_a_family_that_maps_every_frame_keeps_them_all(diem):
    res = _evaluate(diem, FamilyPredictor(VINET, "reference", "vinet"))
    assert res.conventions["frames_unmapped"] == 0 and res.conventions["frames_scored"] == 18
    visual = _evaluate(diem, FamilyPredictor(STAVIS, "reference", "stavis-visual"))
    assert visual.conventions["source"] == "model (STAViS (visual), visual only)"
    assert visual.conventions["frames_scored"] == 12 - UNMAPPED


def test_model_options_are_usage_errors_where_they_do_not_apply(diem, tmp_path):
    with pytest.raises(UsageError, match="warmup 'sideways'") as err:
        E.evaluate("diem", root=diem, weights="w.pth", warmup="sideways")
    assert err.value.spelled(flag_of).startswith("--warmup 'sideways'")
    with pytest.raises(UsageError, match="precision 'fp8'") as err:
        E.evaluate("diem", root=diem, weights="w.pth", precision="fp8")
    assert err.value.spelled(flag_of).startswith("--precision 'fp8'")
    with pytest.raises(UsageError, match="do not apply to predictions") as err:
        E.evaluate("diem", root=diem, predictions=tmp_path, warmup="reference")
    assert err.value.spelled(flag_of).endswith("do not apply to --predictions")
    vinet = PredictorRun(FamilyPredictor(VINET, "mirror", "vinet"))
    with pytest.raises(UsageError, match="predictor"):
        E.evaluate("diem", root=diem, predictor=vinet, warmup="reference")


def test_options_reach_the_predictor_factory(diem):
    made = []

    def factory(weights, audio, **options):
        made.append((weights, audio, options))
        warmup = options.get("warmup", "mirror")
        return PredictorRun(FamilyPredictor(STAVIS, warmup, "stavis-audiovisual"))

    res = E.evaluate("diem", root=diem, weights="audiovisual_split{split}_save_60.pth",
                     audio=True, warmup="reference", precision="fp32",
                     predictor_factory=factory)  # fmt: skip
    assert made == [
        (f"audiovisual_split{s}_save_60.pth", True, {"warmup": "reference", "precision": "fp32"})
        for s in "123"
    ]
    assert res.conventions["source"] == (
        "model (STAViS (audio-visual), audio), weights audiovisual_split{split}_save_60.pth"
    )
    assert res.conventions["frames_unmapped"] == 3 * (UNMAPPED + 6)


# --- the real network, tamed published-format checkpoints ------------------------------


@pytest.fixture(scope="module")
def split_weights(stavis_checkpoint, tmp_path_factory):
    """audiovisual_split{1,2,3}_save_60.pth: splits 1 and 3 the tamed checkpoint, split 2
    with its last layer halved (other maps, so a split's own model shows)."""
    folder = tmp_path_factory.mktemp("stavis_splits")
    snapshot = torch.load(stavis_checkpoint, weights_only=True)
    for k in "13":
        torch.save(snapshot, folder / f"audiovisual_split{k}_save_60.pth")
    state = snapshot["state_dict"]
    state["module.fuseav.weight"] = state["module.fuseav.weight"] * 0.5
    torch.save(snapshot, folder / "audiovisual_split2_save_60.pth")
    return folder


def test_diem_per_split_as_the_paper(split_weights, tmp_path):
    root = tmp_path / "data"
    n = 10  # frames: 9 and 10 are the ones their procedure maps
    make_av_dataset(root, "DIEM", {"film": n})
    template = str(split_weights / "audiovisual_split{split}_save_60.pth")
    out = tmp_path / "scores.json"
    r = CliRunner().invoke(app, [
        "evaluate", "--dataset", "diem", "--root", str(root), "--split", "all",
        "--weights", template, "--audio", "--warmup", "reference", "--precision", "fp32",
        "--metrics", ",".join(METRICS), "--json", str(out), "--quiet",
    ])  # fmt: skip
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    c = doc["conventions"]
    assert c["source"] == f"model (STAViS (audio-visual), audio), weights {template}"
    for s in "123":
        assert c["per_split"][s].endswith(f"audiovisual_split{s}_save_60.pth")
        assert c["per_split"][s].startswith("model (STAViS (audio-visual), audio)")
    assert c["warmup"] == "reference" and c["frames_unmapped"] == 3 * UNMAPPED
    assert c["frames_scored"] == 3 * (n - UNMAPPED) and c["predictions"] == "floats"
    assert "one test list scored with each split's model" in c["aggregation"]
    splits = doc["splits"]
    assert splits["1"] == splits["3"] and splits["1"]["cc"] != splits["2"]["cc"]
    for m in METRICS:
        mean = np.mean([splits[s][m] for s in "123"])
        assert doc["overall"][m] == pytest.approx(mean, abs=2e-6)  # JSON: 6 decimals
    # the mapped frames score as salcli's own (mirror) run scores those frames
    alone = E.evaluate("diem", root=root, split="1", audio=True, precision="fp32",
                       weights=split_weights / "audiovisual_split1_save_60.pth",
                       metrics=METRICS)  # fmt: skip
    assert alone.conventions["frames_scored"] == n and alone.conventions["warmup"] == "mirror"
    video = doc["videos"]["film@1"]
    assert video["frames"] == n - UNMAPPED and video["skipped"] == UNMAPPED
    mapped = alone.videos[0].frame_scores[UNMAPPED:].mean(axis=0)
    assert [video[m] for m in METRICS] == pytest.approx(list(mapped), abs=1e-4)
