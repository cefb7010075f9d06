"""Scoring end to end on tiny datasets: predictions on disk, the model (a fake one, and
one slow test with the real Predictor), the centre baseline, the protocols, JSON/CSV,
and the `evaluate` command."""

from __future__ import annotations

import csv
import io
import json
import math
import stat
import sys
import types

import cv2
import h5py
import numpy as np
import pytest
import typer
from helpers import SMALL_INPUT, H, W, make_av_dataset, make_frame_dataset
from typer.testing import CliRunner

from salcli import metrics as M
from salcli.cli._console import flag_of
from salcli.cli.evaluate import caption, register, table
from salcli.errors import (
    EXIT_USAGE,
    DatasetError,
    InputError,
    NoAudioError,
    OutputError,
    UsageError,
    WeightsError,
)
from salcli.evaluation import evaluate as E
from salcli.evaluation.datasets import Dataset
from salcli.evaluation.report import write_output
from salcli.evaluation.scoring import frame_rng, to_float
from salcli.evaluation.sources import ModelRun, center_map


def write_png_predictions(folder, truth, shape=None):
    for name, frames in truth.items():
        (folder / name).mkdir(parents=True)
        for i, (_, dens) in enumerate(frames):
            img = dens if shape is None else cv2.resize(dens, shape[::-1])
            cv2.imwrite(str(folder / name / f"{i + 1:04d}.png"), img)
    return folder


def write_h5_predictions(folder, truth):
    folder.mkdir(parents=True)
    for name, frames in truth.items():
        stack = np.stack([d.astype(np.float32) / 255 for _, d in frames])  # (N, H, W)
        with h5py.File(folder / f"{name}.h5", "w") as f:
            f.create_dataset("saliency", data=stack.astype(np.float16))
    return folder


@pytest.fixture
def av(tmp_path):
    root = tmp_path / "data"
    truth = make_av_dataset(root, "Coutrot_db2", {"v1": 3, "v2": 4}, empty={"v1": [1]})
    return root, truth


# --- predictions on disk -----------------------------------------------------------


def test_av_png_predictions_all_splits(av, tmp_path):
    root, truth = av
    pred = write_png_predictions(tmp_path / "pred", truth)
    res = E.evaluate("coutrot2", root=root, predictions=pred)
    doc = json.loads(res.to_json())
    assert doc["dataset"] == "coutrot2" and doc["split"] == "all" and doc["protocol"] == "av"
    c = doc["conventions"]
    assert c["predictions"] == "8-bit images" and c["seed"] == 0
    assert c["frames_scored"] == 3 * 6 and c["frames_skipped"] == 3 and c["frames_resized"] == 0
    assert set(doc["overall"]) == {"cc", "nss", "auc_j", "sauc", "sim", "kld"}
    assert set(doc["splits"]) == {"1", "2", "3"}
    # the same video is in each split's list here: keys carry the split
    assert set(doc["videos"]) == {f"v{k}@{s}" for k in (1, 2) for s in "123"}
    v1 = doc["videos"]["v1@1"]
    assert v1["frames"] == 2 and v1["skipped"] == 1 and v1["split"] == "1"
    # the prediction is the density itself: near perfect (jpeg ground truth)
    assert doc["overall"]["cc"] > 0.99 and doc["overall"]["sim"] > 0.95
    assert doc["overall"]["auc_j"] > 0.9 and doc["overall"]["kld"] < 0.3
    # av protocol: mean of per-video means (not of frames); all = mean of splits
    s1 = doc["splits"]["1"]
    assert s1["cc"] == pytest.approx((v1["cc"] + doc["videos"]["v2@1"]["cc"]) / 2, abs=2e-6)
    assert doc["overall"]["nss"] == pytest.approx(
        np.mean([doc["splits"][s]["nss"] for s in "123"]), abs=2e-6
    )


def test_per_video_scores_equal_the_metric_functions(av, tmp_path):
    root, truth = av
    pred = write_png_predictions(tmp_path / "pred", truth)
    res = E.evaluate("coutrot2", root=root, split="2", predictions=pred, metrics="cc,kld,nss")
    assert res.split == "2" and res.metrics == ("cc", "kld", "nss")
    (item,) = [v for v in Dataset("coutrot2", root).videos("2") if v.name == "v2"]
    want = []
    for gt in item.iter_ground_truth():
        p = cv2.imread(str(pred / "v2" / f"{gt.index + 1:04d}.png"), cv2.IMREAD_UNCHANGED)
        want.append([M.cc(p, gt.density), M.kld(p, gt.density), M.nss(p, gt.fixations)])
    got = next(v for v in res.videos if v.name == "v2")
    np.testing.assert_allclose(got.frame_scores, np.array(want), atol=1e-12)
    assert got.scores["cc"] == pytest.approx(np.mean([w[0] for w in want]))


def test_h5_predictions_read_as_floats(av, tmp_path):
    root, truth = av
    pred = write_h5_predictions(tmp_path / "h5", truth)
    res = E.evaluate("coutrot2", root=root, split="1", predictions=pred)
    assert res.conventions["predictions"] == "floats"
    assert res.overall["cc"] > 0.99
    assert res.split == "1" and "splits" not in res.to_dict()


def test_single_h5_file_for_one_video(tmp_path):
    root = tmp_path / "data"
    truth = make_av_dataset(root, "DIEM", {"film": 3})
    stack = np.stack([d for _, d in truth["film"]])  # uint8 stack: "8-bit images"
    with h5py.File(tmp_path / "film.h5", "w") as f:
        f.create_dataset("saliency", data=stack)
    res = E.evaluate("diem", root=root, predictions=tmp_path / "film.h5")
    assert res.split == "1" and res.conventions["predictions"] == "8-bit images"
    assert res.videos[0].frames == 3


def test_smaller_predictions_are_resized(av, tmp_path):
    root, truth = av
    pred = write_png_predictions(tmp_path / "pred", truth, shape=(H // 2, W // 2))
    res = E.evaluate("coutrot2", root=root, split="1", predictions=pred)
    assert res.conventions["frames_resized"] == res.conventions["frames_scored"] == 6
    assert res.overall["cc"] > 0.8


def test_missing_or_short_predictions(av, tmp_path):
    root, truth = av
    pred = write_png_predictions(tmp_path / "pred", truth)
    (pred / "v2" / "0004.png").unlink()
    with pytest.raises(InputError, match="v2: 3 predicted maps for 4 frames"):
        E.evaluate("coutrot2", root=root, split="1", predictions=pred)
    for p in (pred / "v2").iterdir():
        p.unlink()
    (pred / "v2").rmdir()
    with pytest.raises(InputError, match="no predictions for video v2"):
        E.evaluate("coutrot2", root=root, split="1", predictions=pred)
    with pytest.raises(InputError, match="no such"):
        E.evaluate("coutrot2", root=root, split="1", predictions=tmp_path / "nope")


# --- protocols ---------------------------------------------------------------------


def _capture_others(monkeypatch):
    seen = []
    real = M.auc_shuffled

    def spy(p, f, other, **kw):
        seen.append((np.asarray(f) > 0, np.asarray(other) > 0))
        return real(p, f, other, **kw)

    monkeypatch.setattr(M, "auc_shuffled", spy)
    return seen


def test_av_other_fixations_are_the_video_union_minus_current(av, tmp_path, monkeypatch):
    root, truth = av
    pred = write_png_predictions(tmp_path / "pred", truth)
    seen = _capture_others(monkeypatch)
    E.evaluate("coutrot2", root=root, split="1", predictions=pred, metrics="sauc")
    frames = [(name, k) for name in ("v1", "v2") for k in range(len(truth[name]))]
    frames = [fk for fk in frames if fk != ("v1", 1)]  # the empty frame is skipped
    assert len(seen) == len(frames)
    for (name, k), (fix, other) in zip(frames, seen, strict=True):
        union = np.any([f for f, _ in truth[name]], axis=0)
        np.testing.assert_array_equal(fix, truth[name][k][0])
        np.testing.assert_array_equal(other, union & ~fix)


def test_dhf1k_protocol(tmp_path, monkeypatch):
    truth = make_frame_dataset(
        tmp_path / "DHF1K", {"0601": 4, "0602": 7}, empty={"0602": [0]}, seed=3
    )
    pred = tmp_path / "pred"
    for name, frames in truth.items():  # a noisy prediction: scores differ per frame
        (pred / name).mkdir(parents=True)
        rng = np.random.default_rng(int(name))
        for i, (_, d) in enumerate(frames):
            noisy = np.clip(d.astype(float) + 80 * rng.random(d.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(pred / name / f"{i + 1:04d}.png"), noisy)
    seen = _capture_others(monkeypatch)
    res = E.evaluate("dhf1k", root=tmp_path, predictions=pred)
    assert res.protocol == "dhf1k" and res.split == "val"
    # the benchmark's loop scores the frame without fixations too (its density is not empty)
    c = res.conventions
    assert c["frames_scored"] == 11 and c["frames_skipped"] == 0 and c["frames_empty"] == 1
    assert c["empty_frames"] == "scored"
    empty_row = res.videos[1].frame_scores[0]
    assert all(math.isnan(empty_row[res.metrics.index(m)]) for m in ("nss", "auc_j", "sauc"))
    assert all(math.isfinite(empty_row[res.metrics.index(m)]) for m in ("cc", "sim", "kld"))
    # other = union of 10 of the 11 frames' fixations
    all_fix = [f for name in truth for f, _ in truth[name]]
    for _, other in seen:
        assert other.sum() > 0
        assert not (other & ~np.any(all_fix, axis=0)).any()
    # overall = mean over frames, not over videos
    arr = np.concatenate([v.frame_scores for v in res.videos])
    for k, m in enumerate(res.metrics):
        assert res.overall[m] == pytest.approx(np.nanmean(arr[:, k]))
    per_video = np.mean([v.scores["cc"] for v in res.videos])
    assert res.overall["cc"] != pytest.approx(per_video, abs=1e-9)


def test_seeded_and_reproducible(av, tmp_path):
    root, truth = av
    pred = write_png_predictions(tmp_path / "pred", truth)
    kw = {"root": root, "split": "1", "predictions": pred, "metrics": "sauc,auc_j,auc_b"}
    a = E.evaluate("coutrot2", seed=1, **kw)
    b = E.evaluate("coutrot2", seed=1, **kw)
    c = E.evaluate("coutrot2", seed=2, **kw)
    assert a.to_json() == b.to_json()
    assert a.overall["sauc"] != c.overall["sauc"]
    assert abs(a.overall["sauc"] - c.overall["sauc"]) < 0.1  # within the sampling spread


def test_center_baseline(av):
    root, _ = av
    res = E.evaluate("coutrot2", root=root, split="3", baseline="center")
    assert res.conventions["source"].startswith("baseline: centred Gaussian")
    assert all(math.isfinite(v) for v in res.overall.values())
    m = center_map((5, 9))
    assert m.shape == (5, 9) and m[2, 4] == 1.0 and m[0, 0] < m[2, 0] < 1
    with pytest.raises(UsageError):
        E.evaluate("coutrot2", root=root, baseline="middle")


def test_usage_errors(av, tmp_path):
    root, _ = av
    with pytest.raises(UsageError, match="unknown metric"):
        E.evaluate("coutrot2", root=root, baseline="center", metrics="cc,emd")
    with pytest.raises(UsageError):
        E.evaluate("coutrot2", root=root, baseline="center", predictions=tmp_path)
    with pytest.raises(UsageError):
        E.evaluate("coutrot2", root=root, predictions=tmp_path, weights="w.pt")
    assert E.parse_metrics("CC, auc_judd,s-auc,auc_borji") == ("cc", "auc_j", "sauc", "auc_b")


# --- the model ---------------------------------------------------------------------


class FakePredictor(ModelRun):
    """A model run: (0-based index, float32 map in [0, 1] of the frame's size)."""

    def __init__(self):
        self.calls = []

    def iter_maps(self, source, *, fps=None, audio_path=None):
        self.calls.append((source, fps, audio_path))
        files = sorted(source.iterdir())
        for i, p in enumerate(files):
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)[:, :, 0].astype(np.float32) / 255
            yield i, img


def test_model_source_with_fake_predictor(av):
    root, _ = av
    fake = FakePredictor()
    res = E.evaluate("coutrot2", root=root, split="1", predictor=fake, audio=True)
    assert res.conventions["predictions"] == "floats"
    assert res.conventions["source"] == "model (AViNet, audio)"
    assert [(c[0].name, c[1], c[2].name) for c in fake.calls] == [
        ("v1", 25.0, "v1.wav"),
        ("v2", 25.0, "v2.wav"),
    ]
    assert res.overall["cc"] > 0.9  # the frames' first channel is the density here


def test_model_without_wav(tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "DIEM", {"film": 2}, wav=False)
    with pytest.raises(NoAudioError):
        E.evaluate("diem", root=root, predictor=FakePredictor(), audio=True)
    res = E.evaluate("diem", root=root, predictor=FakePredictor())
    assert res.conventions["source"] == "model (ViNet, visual only)"


def test_model_built_lazily_from_salcli_predict(av, monkeypatch):
    root, _ = av
    made = []

    class Predictor(FakePredictor):
        def __init__(self, weights=None, *, audio=False, **kw):
            super().__init__()
            made.append((weights, audio))

    monkeypatch.setitem(
        sys.modules, "salcli.inference.predictor", types.SimpleNamespace(Predictor=Predictor)
    )
    E.evaluate("coutrot2", root=root, split="1", weights="w.pt")
    assert made == [("w.pt", False)]


def test_a_model_is_a_predictor_or_a_model_run(av):
    root, _ = av

    class Maps:  # iter_maps alone does not make a model run
        def iter_maps(self, source, *, fps=None, audio_path=None):
            yield from FakePredictor().iter_maps(source, fps=fps, audio_path=audio_path)

    with pytest.raises(TypeError, match="Predictor or a ModelRun, not Maps"):
        E.evaluate("coutrot2", root=root, split="1", predictor=Maps())


@pytest.mark.slow
def test_real_predictor_on_a_tiny_dataset(tmp_path):
    """The real model (random deterministic weights) over a 2-frame dataset."""
    pytest.importorskip("salcli.inference.predictor")
    import torch

    from salcli.testing import deterministic_state_dict, load_manifest

    sd = deterministic_state_dict(load_manifest("tests/data/vinet.keys.json"))
    torch.save(sd, tmp_path / "vinet.pt")
    root = tmp_path / "d"
    make_av_dataset(root, "DIEM", {"film": 2}, wav=False)
    res = E.evaluate("diem", root=root, weights=tmp_path / "vinet.pt")
    assert res.videos[0].frames == 2 and res.conventions["predictions"] == "floats"
    assert all(math.isfinite(res.overall[m]) for m in ("kld", "sim"))


# --- output formats ----------------------------------------------------------------


def test_csv_and_table(av, tmp_path):
    root, truth = av
    pred = write_png_predictions(tmp_path / "pred", truth)
    res = E.evaluate("coutrot2", root=root, predictions=pred, metrics="cc,sauc")
    rows = list(csv.DictReader(io.StringIO(res.to_csv())))
    assert list(rows[0]) == ["video", "split", "frames", "skipped", "empty", "cc", "sauc"]
    assert [r["video"] for r in rows][-4:] == ["overall:1", "overall:2", "overall:3", "overall"]
    assert rows[-1]["frames"] == "18" and rows[-1]["skipped"] == "3"
    assert float(rows[-1]["cc"]) == pytest.approx(res.overall["cc"], abs=1e-6)
    from rich.console import Console

    con = Console(record=True, width=200)
    con.print(table(res))
    text = " ".join(con.export_text().split())
    assert (
        "overall" in text
        and "sAUC" in text
        and "18 frames scored; 3 without fixations skipped" in text
    )
    assert "8-bit images" in text and "Seed 0" in text


def test_nan_is_null_in_json(tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "DIEM", {"film": 2}, empty={"film": [0, 1]})
    res = E.evaluate("diem", root=root, baseline="center")
    doc = json.loads(res.to_json())
    assert doc["overall"]["cc"] is None and doc["videos"]["film"]["frames"] == 0
    assert doc["conventions"]["frames_skipped"] == 2


# --- the command -------------------------------------------------------------------


def _app():
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:  # a group, so that `evaluate` is a subcommand as in salcli
        pass

    return app


def test_cli_end_to_end(av, tmp_path):
    root, truth = av
    pred = write_png_predictions(tmp_path / "pred", truth)
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    args = ["evaluate", "--dataset", "coutrot2", "--root", str(root), "--split", "1"]
    args += ["--predictions", str(pred), "--json", str(out_json), "--csv", str(out_csv)]
    r = CliRunner().invoke(_app(), args + ["--seed", "3"])
    assert r.exit_code == 0, r.output
    assert "overall" in r.output and "CC" in r.output
    doc = json.loads(out_json.read_text())
    assert doc["split"] == "1" and doc["conventions"]["seed"] == 3
    assert out_csv.read_text().splitlines()[0].startswith("video,split,frames,skipped,empty,cc")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_cli_default_root_and_errors(av, tmp_path, monkeypatch):
    root, _ = av
    monkeypatch.setenv("SALCLI_DATA", str(root))
    r = CliRunner().invoke(
        _app(), ["evaluate", "--dataset", "coutrot2", "--baseline", "center", "--quiet"]
    )
    assert r.exit_code == 0, r.output
    assert r.output.strip() == ""  # --quiet: no table
    monkeypatch.setenv("SALCLI_DATA", str(tmp_path / "empty"))
    r = CliRunner().invoke(_app(), ["evaluate", "--dataset", "diem"])
    assert r.exit_code == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("salcli: error: dataset diem not found")
    assert "Traceback" not in r.output
    r = CliRunner().invoke(_app(), ["evaluate", "--dataset", "nope"])
    assert r.exit_code == EXIT_USAGE and "unknown dataset" in r.stderr
    r = CliRunner().invoke(
        _app(),
        ["evaluate", "-d", "coutrot2", "--root", str(root), "--baseline", "center", "--split", "9"],
    )
    assert r.exit_code == EXIT_USAGE and r.stderr.startswith("salcli: error: --split")


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--seed", "-1"], "--seed must be a non-negative integer, not -1"),
        (["--baseline", "middle"], "--baseline must be 'center', not 'middle'"),
        (["--predictions", "."], "--baseline and --predictions exclude each other"),
        (["--weights", "w.pt"], "--weights / --audio run the model; they do not apply to "
         "--predictions"),
        (["--precision", "fp32"], "--warmup / --precision / --domain run the model; they do "
         "not apply to --predictions"),
        (["--domain", "DHF1K"], "--warmup / --precision / --domain run the model; they do "
         "not apply to --predictions"),
        (["--metrics", " , "], "--metrics names no metric"),
        (["--split", "7"], "--split must be 1, 2, 3 or all, not '7'"),
    ],
)  # fmt: skip
def test_cli_names_the_flags_of_option_errors(av, args, line):
    root, _ = av
    base = ["evaluate", "-d", "coutrot2", "--root", str(root), "--baseline", "center"]
    if args[0] == "--baseline":
        base = base[:-2]
    r = CliRunner().invoke(_app(), base + args)
    assert r.exit_code == EXIT_USAGE and r.stderr == f"salcli: error: {line}\n"


def test_cli_names_the_ray_flag_of_a_cluster_model(av, tmp_path, monkeypatch):
    """The model on a cluster (evaluate's ``model_source``) is --ray on the command line."""
    import contextlib

    import salcli.cli.evaluate as cli

    def on_cluster(cluster, maps_dir, warn):  # a cluster asked for, none started
        return (lambda *a, **kw: None), contextlib.nullcontext()

    monkeypatch.setattr(cli, "_on_cluster", on_cluster)
    args = ["evaluate", "-d", "coutrot2", "--root", str(av[0]), "--predictions", str(tmp_path)]
    r = CliRunner().invoke(_app(), args)
    assert r.exit_code == EXIT_USAGE
    assert r.stderr == (
        "salcli: error: --ray runs the model; it does not apply to --predictions / --baseline\n"
    )


def test_progress_goes_to_on_progress(av, tmp_path):
    """Each split's fixations are read, then each video's maps, frame by frame."""
    root, truth = av
    pred = write_png_predictions(tmp_path / "pred", truth)
    seen = []
    E.evaluate("coutrot2", root=root, split="1", predictions=pred, on_progress=seen.append)
    steps = [(p.videos_done, p.video, p.frames_done, p.frames_total) for p in seen]
    assert {p.videos_total for p in seen} == {2}
    assert steps == [
        (0, None, 0, 2), (0, None, 1, 2), (0, None, 2, 2),
        (0, "v1", 0, 3), (0, "v1", 1, 3), (0, "v1", 2, 3), (0, "v1", 3, 3), (1, "v1", 3, 3),
        (1, "v2", 0, 4), (1, "v2", 1, 4), (1, "v2", 2, 4), (1, "v2", 3, 4), (1, "v2", 4, 4),
        (2, "v2", 4, 4),
    ]  # fmt: skip


# --- the DHF1K benchmark loop: empty frames, float resize, random streams ------------


def _write_dhf1k_frame(vdir, k, dens, fix, pred=None, pred_dir=None):
    """One frame of a DHF1K-layout video: images/, maps/, fixation/ (and a prediction)."""
    for sub in ("images", "maps", "fixation"):
        (vdir / sub).mkdir(parents=True, exist_ok=True)
    name = f"{k:04d}.png"
    cv2.imwrite(str(vdir / "images" / name), np.dstack([dens] * 3))
    cv2.imwrite(str(vdir / "maps" / name), dens)
    cv2.imwrite(str(vdir / "fixation" / name), fix.astype(np.uint8) * 255)
    if pred is not None:
        pred_dir.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(pred_dir / name), pred)


def test_dhf1k_empty_frames_by_hand(tmp_path):
    """Three 2x2 frames: A ordinary, B with no fixation and an all-zero density, C with no
    fixation but a density. Hand-worked values (maps as flat [p00, p01, p10, p11]):
    A: P = [0, 1, 1, 1], D = [1, 0, 0, 1], F = D > 0.
       CC = -0.5 / sqrt(0.75 * 1) = -1/sqrt(3); NSS: z(P) = [-1.5, .5, .5, .5] -> -0.5;
       SIM: p = [0, 1/3, 1/3, 1/3], q = [.5, 0, 0, .5] -> 1/3;
       KLD = .5 ln(eps + .5/eps) + .5 ln(eps + .5/(1/3 + eps)).
    B: P = [1, 0, 0, 0], D = 0: CC NaN (constant D), NSS NaN, SIM 0, KLD 0.
    C: P = D = [1, 0, 0, 0]: CC 1, SIM 1, KLD ln(eps + 1/(1 + eps)) = 0 (to 1e-15), NSS NaN.
    """
    eps = 2.220446049250313e-16
    one = np.array([[255, 0], [0, 0]], np.uint8)
    frames = [  # (density, fixations, prediction)
        (
            np.array([[255, 0], [0, 255]], np.uint8),
            None,
            np.array([[0, 255], [255, 255]], np.uint8),
        ),
        (np.zeros((2, 2), np.uint8), None, one),
        (one, np.zeros((2, 2), bool), one),
    ]
    vdir = tmp_path / "DHF1K" / "val" / "0601"
    for k, (dens, fix, pred) in enumerate(frames, 1):
        fix = dens > 0 if fix is None else fix
        _write_dhf1k_frame(vdir, k, dens, fix, pred, tmp_path / "pred" / "0601")
    cc_a, nss_a, sim_a = -1 / math.sqrt(3), -0.5, 1 / 3
    kld_a = 0.5 * math.log(eps + 0.5 / eps) + 0.5 * math.log(eps + 0.5 / (1 / 3 + eps))
    kw = {"root": tmp_path, "predictions": tmp_path / "pred", "metrics": "cc,nss,sim,kld,auc_j"}

    scored = E.evaluate("dhf1k", **kw)  # the default: as the benchmark's loop
    assert scored.overall["cc"] == pytest.approx((cc_a + 1) / 2, abs=1e-12)
    assert scored.overall["nss"] == pytest.approx(nss_a, abs=1e-12)
    assert scored.overall["sim"] == pytest.approx((sim_a + 0 + 1) / 3, abs=1e-12)
    assert scored.overall["kld"] == pytest.approx((kld_a + 0 + 0) / 3, abs=1e-12)
    rows = scored.videos[0].frame_scores  # (3, 5): B and C have no AUC-J
    assert math.isnan(rows[1, 4]) and math.isnan(rows[2, 4])
    assert scored.overall["auc_j"] == rows[0, 4]
    c = scored.conventions
    assert (c["frames_scored"], c["frames_empty"], c["frames_skipped"]) == (3, 2, 0)
    assert c["empty_frames"] == "scored" and "2 of them without fixations" in caption(scored)

    skipped = E.evaluate("dhf1k", skip_empty=True, **kw)  # the former behaviour
    for m, want in {"cc": cc_a, "nss": nss_a, "sim": sim_a, "kld": kld_a}.items():
        assert skipped.overall[m] == pytest.approx(want, abs=1e-12)
    c = skipped.conventions
    assert (c["frames_scored"], c["frames_empty"], c["frames_skipped"]) == (1, 2, 2)
    assert c["empty_frames"] == "skipped" and "2 without fixations skipped" in caption(skipped)


def _edgy(rng, shape):
    """An 8-bit map with hard edges: bicubic resizing overshoots 0 and 255 on it."""
    m = np.zeros(shape, np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, shape[0] - 2), rng.integers(0, shape[1] - 2)
        m[y : y + 3, x : x + 2] = 255
    return np.maximum(m, rng.integers(0, 40, shape, dtype=np.uint8))


@pytest.mark.parametrize("protocol", ["av", "dhf1k"])
def test_8bit_predictions_are_resized_as_floats(tmp_path, protocol):
    if protocol == "av":
        root = tmp_path / "d"
        truth = make_av_dataset(root, "DIEM", {"film": 4})
        name, args = "diem", {"root": root}
    else:
        truth = make_frame_dataset(tmp_path / "DHF1K", {"0601": 4})
        name, args = "dhf1k", {"root": tmp_path}
    video = next(iter(truth))
    rng = np.random.default_rng(5)
    small = (H // 2 + 1, W // 2 + 3)  # another size, and not a divisor: both passes filter
    preds = [_edgy(rng, small) for _ in truth[video]]
    for k, p in enumerate(preds):
        (tmp_path / "pred" / video).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / "pred" / video / f"{k + 1:04d}.png"), p)
    res = E.evaluate(name, predictions=tmp_path / "pred", metrics="nss,cc,sim", **args)
    assert res.conventions["frames_resized"] == 4
    (item,) = Dataset(name, args["root"]).videos(res.split)
    floats, bytes_ = [], []
    for gt, p in zip(item.iter_ground_truth(), preds, strict=True):
        f = M.imresize_matlab(p.astype(np.float64) / 255, (H, W))  # float, no rounding
        floats.append([M.nss(f, gt.fixations), M.cc(f, gt.density), M.sim(f, gt.density)])
        # the former route: imresize of the uint8 array, rounded and clipped per pass
        bytes_.append([M.nss(p, gt.fixations), M.cc(p, gt.density), M.sim(p, gt.density)])
    got = res.videos[0].frame_scores
    np.testing.assert_allclose(got, np.array(floats), rtol=0, atol=1e-12)
    assert np.abs(got - np.array(bytes_)).max() > 1e-4


@pytest.mark.parametrize("protocol", ["av", "dhf1k"])
def test_sampled_metrics_do_not_depend_on_the_metrics_asked(tmp_path, protocol):
    if protocol == "av":
        make_av_dataset(tmp_path / "d", "DIEM", {"a": 4, "b": 3}, empty={"a": [2]})
        name, kw = "diem", {"root": tmp_path / "d"}
    else:
        make_frame_dataset(tmp_path / "DHF1K", {"0601": 4, "0602": 3}, empty={"0602": [1]})
        name, kw = "dhf1k", {"root": tmp_path}
    kw.update(baseline="center", seed=7)
    full = E.evaluate(name, metrics="cc,nss,auc_j,sauc,sim,kld,auc_b", **kw)
    for alone in ("sauc", "auc_j", "auc_b"):
        part = E.evaluate(name, metrics=f"{alone},sim", **kw)
        assert part.overall[alone] == full.overall[alone]
        k = full.metrics.index(alone)
        for a, b in zip(part.videos, full.videos, strict=True):
            np.testing.assert_array_equal(a.frame_scores[:, 0], b.frame_scores[:, k])
    # a metric's stream is keyed by (seed, video, frame, metric): another seed moves it
    other = E.evaluate(name, metrics="sauc", **{**kw, "seed": 8})
    assert other.overall["sauc"] != full.overall["sauc"]


def _loop_reference(gt, pred, metrics, *, skip_empty=False, streams=None, seed=0):
    """The DHF1K benchmark loop (eval1.m) written out plainly from its conventions:
    every frame of val/*/images/ in folder order; the prediction read as MATLAB's
    double(imread(...)) and its first (red) channel, resized once to the fixation map's
    size as floats; CC, SIM, KLD against maps/ / 255, NSS and AUC-J against the
    fixations; sAUC's other map: the fixations of 10 frames drawn from all frames, their
    1-based points [col row] scaled by [H/H0, W/W0], rounded, points outside dropped;
    the mean of each metric over the frames where it is not NaN. ``streams`` gives the
    random generators salcli uses (for an exact comparison); else one generator seeded
    by ``seed`` for everything, as independent of salcli's draws as MATLAB's are."""
    frames = [
        (vdir.name, img)
        for vdir in sorted((gt / "val").iterdir())
        for img in sorted((vdir / "images").iterdir())
    ]

    def fixations(video, img):
        return cv2.imread(str(gt / "val" / video / "fixation" / img.name), 0) > 0

    own = np.random.default_rng(seed)
    rows = []
    for video, img in frames:
        k = int(img.stem) - 1
        fix = fixations(video, img)
        if skip_empty and not fix.any():
            continue
        dens = cv2.imread(str(gt / "val" / video / "maps" / img.name), 0) / 255.0
        result = cv2.imread(str(pred / video / img.name), cv2.IMREAD_COLOR)[:, :, 2]
        result = M.imresize_matlab(result.astype(np.float64), fix.shape)
        row = {"cc": M.cc(result, dens), "sim": M.sim(result, dens), "kld": M.kld(result, dens)}
        row["nss"] = M.nss(result, fix)

        def gen(m, _v=video, _k=k):
            return streams(_v, _k, m) if streams else own

        row["auc_j"] = M.auc_judd(result, fix, rng=gen("auc_j"))
        n = min(10, len(frames))
        points = []
        for j in gen("sauc_frames").choice(len(frames), size=n, replace=False):
            other = fixations(*frames[j])
            r, c = np.nonzero(other)
            scale = (fix.shape[0] / other.shape[0], fix.shape[1] / other.shape[1])
            points.append(np.stack([c + 1, r + 1], axis=1) * scale)  # [col row] .* rescale
        pts = np.floor(np.concatenate(points) + 0.5).astype(int)  # MATLAB round
        keep = (pts[:, 0] >= 1) & (pts[:, 0] <= fix.shape[1])
        keep &= (pts[:, 1] >= 1) & (pts[:, 1] <= fix.shape[0])
        other_map = np.zeros(fix.shape)
        other_map[pts[keep, 1] - 1, pts[keep, 0] - 1] = 1  # sub2ind(dim, pts(:,2), pts(:,1))
        row["sauc"] = M.auc_shuffled(result, fix, other_map, rng=gen("sauc"))
        rows.append(row)
    out = {}
    for m in metrics:
        vals = np.array([r[m] for r in rows])
        out[m] = float(vals[~np.isnan(vals)].mean())
    return out


@pytest.fixture
def loop_set(tmp_path):
    return make_loop_set(tmp_path)


def make_loop_set(tmp_path):
    """A DHF1K-layout set like the issue's: 3 videos, 36 frames, one frame without
    fixations (and an all-zero density map), one video predicted at another size (colour
    PNGs whose red channel is the map), one video whose frames have another size."""
    gt = tmp_path / "DHF1K"
    truth = make_frame_dataset(gt, {"0601": 12, "0602": 12}, shape=(36, 64), seed=11)
    truth |= make_frame_dataset(gt, {"0603": 12}, shape=(27, 60), seed=12)
    empty_dir = gt / "val" / "0602"
    cv2.imwrite(str(empty_dir / "fixation" / "0005.png"), np.zeros((36, 64), np.uint8))
    cv2.imwrite(str(empty_dir / "maps" / "0005.png"), np.zeros((36, 64), np.uint8))
    rng = np.random.default_rng(13)
    for name, frames in truth.items():
        (tmp_path / "pred" / name).mkdir(parents=True)
        for k, (_, dens) in enumerate(frames, 1):
            noisy = cv2.GaussianBlur(dens + 90 * rng.random(dens.shape), (0, 0), 2)
            p = np.round(255 * noisy / noisy.max()).astype(np.uint8)
            if name == "0601":  # predicted at another size, stored as colour
                p = cv2.resize(p, (40, 22), interpolation=cv2.INTER_AREA)
                p = np.dstack([255 - p, p // 2, p])  # B, G, R: the map is the red channel
            cv2.imwrite(str(tmp_path / "pred" / name / f"{k:04d}.png"), p)
    return gt, tmp_path / "pred"


def test_dhf1k_scores_equal_the_benchmark_loop(loop_set):
    gt, pred = loop_set
    res = E.evaluate("dhf1k", root=gt.parent, predictions=pred, seed=3)
    assert res.conventions["frames_scored"] == 36 and res.conventions["frames_empty"] == 1
    assert res.conventions["frames_resized"] == 12

    def streams(video, k, m):
        return frame_rng(3, video, k, m)

    want = _loop_reference(gt, pred, res.metrics, streams=streams)
    for m in res.metrics:  # the same draws: every metric equal, sAUC's pool included
        assert res.overall[m] == pytest.approx(want[m], abs=1e-12), m
    # MATLAB draws its own numbers: sAUC agrees within its spread, the rest to 2e-3
    ref = [_loop_reference(gt, pred, res.metrics, seed=s) for s in range(3)]
    for m in ("cc", "nss", "auc_j", "sim", "kld"):
        assert abs(res.overall[m] - ref[0][m]) < 2e-3, m
    spread = np.std([r["sauc"] for r in ref]) + 0.005
    assert abs(res.overall["sauc"] - np.mean([r["sauc"] for r in ref])) < 3 * spread

    skipped = E.evaluate("dhf1k", root=gt.parent, predictions=pred, seed=3, skip_empty=True)
    want = _loop_reference(gt, pred, res.metrics, streams=streams, skip_empty=True)
    for m in ("cc", "nss", "auc_j", "sim", "kld", "sauc"):
        assert skipped.overall[m] == pytest.approx(want[m], abs=1e-12), m
    assert skipped.overall["sim"] > res.overall["sim"]  # the empty frame's SIM 0 is gone


def test_av_scores_equal_a_plain_loop(tmp_path):
    """The audio-visual protocol as its MATLAB script loops: per video, sAUC's other map
    is the union of the video's fixation maps with the current frame's pixels removed;
    frames without fixations skipped; per-video means, then their mean."""
    root = tmp_path / "d"
    truth = make_av_dataset(root, "DIEM", {"a": 5, "b": 4}, empty={"a": [3]}, seed=4)
    rng = np.random.default_rng(2)
    for name, frames in truth.items():
        (tmp_path / "pred" / name).mkdir(parents=True)
        for k, (_, dens) in enumerate(frames, 1):
            p = np.clip(dens * 0.6 + 100 * rng.random((H - 3, W + 4)).mean(), 0, 255)
            p = cv2.resize(p.astype(np.uint8), (W + 4, H - 3))
            cv2.imwrite(str(tmp_path / "pred" / name / f"{k:04d}.png"), p)
    res = E.evaluate("diem", root=root, predictions=tmp_path / "pred", seed=1)
    per_video = []
    for item in Dataset("diem", root).videos("1"):
        gts = list(item.iter_ground_truth())
        union = np.any([g.fixations for g in gts], axis=0)
        rows = []
        for g in gts:
            if not g.fixations.any():
                continue
            p = cv2.imread(str(tmp_path / "pred" / item.name / f"{g.index + 1:04d}.png"), 0)
            s = M.imresize_matlab(p / 255.0, g.fixations.shape)  # im2double, then imresize

            def gen(m, _k=g.index, _n=item.name):
                return frame_rng(1, _n, _k, m)

            other = union & ~g.fixations
            rows.append(
                [
                    M.cc(s, g.density),
                    M.nss(s, g.fixations),
                    M.auc_judd(s, g.fixations, rng=gen("auc_j")),
                    M.auc_shuffled(s, g.fixations, other, rng=gen("sauc")),
                    M.sim(s, g.density),
                    M.kld(s, g.density),
                ]
            )
        per_video.append(np.nanmean(np.array(rows), axis=0))
    want = np.mean(per_video, axis=0)
    got = np.array([res.overall[m] for m in ("cc", "nss", "auc_j", "sauc", "sim", "kld")])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert res.conventions["frames_empty"] == 1 and res.conventions["empty_frames"] == "skipped"


def test_to_float_follows_each_protocols_reading():
    p8 = np.array([[0, 51], [255, 7]], np.uint8)
    np.testing.assert_array_equal(to_float(p8, "dhf1k"), p8.astype(np.float64))  # double()
    np.testing.assert_array_equal(to_float(p8, "av"), p8 / 255.0)  # im2double
    p16 = np.array([[0, 65535]], np.uint16)
    np.testing.assert_array_equal(to_float(p16, "av"), [[0.0, 1.0]])
    f = np.array([[0.25, 0.5]], np.float32)
    assert to_float(f, "dhf1k").dtype == np.float64
    np.testing.assert_array_equal(to_float(f, "dhf1k"), f)


# --- one model per split -----------------------------------------------------------


class WeightsPredictor(FakePredictor):
    """Maps that depend on the weights' name: frame's first channel raised to a power
    read from the name (…_<power>.pt), so each checkpoint scores differently."""

    def __init__(self, weights):
        super().__init__()
        self.weights = str(weights)
        self.power = float(self.weights.rsplit("_", 1)[1].removesuffix(".pt"))

    def iter_maps(self, source, *, fps=None, audio_path=None):
        for i, m in super().iter_maps(source, fps=fps, audio_path=audio_path):
            yield i, m**self.power


def _split_lists(root, folder, lists):
    for s, videos in lists.items():
        lines = "".join(f"{v} 25\n".replace(" 25", f" {n} 25") for v, n in videos)
        (root / "fold_lists" / f"{folder}_list_test_{s}_fps.txt").write_text(lines)


def test_weights_per_split_placeholder(tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "Coutrot_db2", {"v1": 3, "v2": 3, "v3": 2})
    _split_lists(root, "Coutrot_db2", {"1": [("v1", 3)], "2": [("v2", 3)], "3": [("v3", 2)]})
    for k in "123":
        (tmp_path / f"w{k}_{k}.pt").write_bytes(b"")  # files: checked before anything runs
    made = []

    def factory(weights, audio):
        made.append((weights, audio))
        return WeightsPredictor(weights)

    template = str(tmp_path / "w{split}_{split}.pt")
    res = E.evaluate("coutrot2", root=root, weights=template, predictor_factory=factory)
    assert [w for w, _ in made] == [str(tmp_path / f"w{k}_{k}.pt") for k in "123"]
    assert res.split == "all" and set(res.splits) == {"1", "2", "3"}
    for k, v in zip("123", res.videos, strict=True):  # split k's video, checkpoint k's maps
        alone = E.evaluate(
            "coutrot2",
            root=root,
            split=k,
            predictor=WeightsPredictor(tmp_path / f"w{k}_{k}.pt"),
            metrics=res.metrics,
        )
        assert v.split == k and v.name == f"v{k}"
        np.testing.assert_array_equal(v.frame_scores, alone.videos[0].frame_scores)
    c = res.conventions
    assert c["source"] == f"model (ViNet, visual only), weights {template}"
    assert set(c["per_split"]) == {"1", "2", "3"}
    assert "mean of the 3 splits" in c["aggregation"]
    # a missing checkpoint is named before any split runs
    (tmp_path / "w3_3.pt").unlink()
    made.clear()
    with pytest.raises(WeightsError, match=r"no checkpoint .*w3_3\.pt"):
        E.evaluate("coutrot2", root=root, weights=template, predictor_factory=factory)
    assert made == []


def test_diem_with_a_model_per_split_scores_its_one_list_three_times(tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "DIEM", {"film": 3})
    res = E.evaluate(
        "diem",
        root=root,
        weights="ck_{split}.pt",  # not files: left to the loader (registry names)
        predictor_factory=lambda w, a: WeightsPredictor(str(w).replace("ck_", "ck_1")),
    )
    assert [v.split for v in res.videos] == ["1", "2", "3"]
    assert [v.name for v in res.videos] == ["film"] * 3
    powers = {s: float(f"1{s}") for s in "123"}  # ck_1{split}: powers 11, 12, 13
    assert res.splits["1"]["cc"] != res.splits["3"]["cc"]
    assert res.overall["cc"] == pytest.approx(np.mean([res.splits[s]["cc"] for s in powers]))
    assert "diem's one test list scored with each split's model" in caption(res)
    one = E.evaluate(
        "diem",
        root=root,
        weights="ck_{split}.pt",
        split="2",
        predictor_factory=lambda w, a: WeightsPredictor(str(w).replace("ck_", "ck_1")),
    )
    assert one.split == "2" and one.overall["cc"] == pytest.approx(res.splits["2"]["cc"])
    with pytest.raises(UsageError):
        E.evaluate("diem", root=root, weights="ck_{split}.pt", predictor=FakePredictor())


def test_predictions_per_split_placeholder(av, tmp_path):
    root, truth = av
    for k in "123":
        write_png_predictions(tmp_path / f"split{k}_results", truth)
    res = E.evaluate("coutrot2", root=root, predictions=tmp_path / "split{split}_results")
    assert res.conventions["per_split"]["2"] == f"predictions {tmp_path / 'split2_results'}"
    with pytest.raises(InputError, match="split1_results: no such"):
        E.evaluate("coutrot2", root=root, predictions=tmp_path / "no" / "split{split}_results")


@pytest.fixture(scope="module")
def two_vinet_checkpoints(tmp_path_factory):
    """Two ViNet checkpoints with different random weights (split 1 = split 3 = A, 2 = B)."""
    import torch

    from salcli.models.vinet import ViNet

    folder = tmp_path_factory.mktemp("split_weights")
    for seed, splits in ((0, "13"), (1, "2")):
        torch.manual_seed(seed)
        sd = ViNet().state_dict()
        for k in splits:
            torch.save(sd, folder / f"vinet_split{k}.pt")
    return folder


def test_real_checkpoint_per_split(tmp_path, two_vinet_checkpoints):
    """The real Predictor, one checkpoint per split: split k's videos are predicted by
    the model loaded from checkpoint k, and checkpoints A and B give different scores."""
    from salcli.inference.predictor import Predictor

    log = []

    class Logged(ModelRun):  # the real Predictor, noting which checkpoint predicts which video
        def __init__(self, weights, audio):
            self.p = Predictor(weights, audio=audio, precision="fp32", input_size=SMALL_INPUT)

        def iter_maps(self, frames, **kw):
            log.append((self.p.weights_path.name, frames.name))
            yield from self.p.iter_maps(frames, **kw)

    root = tmp_path / "d"
    make_av_dataset(root, "Coutrot_db1", {"v1": 2, "v2": 2})
    _split_lists(root, "Coutrot_db1", {"1": [("v1", 2)], "2": [("v2", 2)], "3": [("v2", 2)]})
    template = str(two_vinet_checkpoints / "vinet_split{split}.pt")
    res = E.evaluate("coutrot1", root=root, weights=template, predictor_factory=Logged)
    assert log == [("vinet_split1.pt", "v1"), ("vinet_split2.pt", "v2"), ("vinet_split3.pt", "v2")]
    assert [(v.split, v.name) for v in res.videos] == [("1", "v1"), ("2", "v2"), ("3", "v2")]
    # v2 under checkpoint B (split 2) and under A (split 3, a copy of split 1's)
    assert not np.allclose(res.videos[1].frame_scores, res.videos[2].frame_scores, atol=1e-6)
    assert res.conventions["per_split"]["2"] == "model (ViNet, visual only)"


# --- results to files, pipes and stdout --------------------------------------------


def test_write_output_writes_through_non_regular_files(tmp_path):
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "out.json"
    link.symlink_to(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    write_output(link, '{"a": 1}\n')
    reader.join(timeout=10)
    assert got == ['{"a": 1}\n']
    assert link.is_symlink() and stat.S_ISFIFO(os.stat(fifo).st_mode)  # neither replaced
    # a link to a regular file: its target is replaced, the link stays
    target = tmp_path / "real.csv"
    target.write_text("old")
    (tmp_path / "alias.csv").symlink_to(target)
    write_output(tmp_path / "alias.csv", "new\n")
    assert (tmp_path / "alias.csv").is_symlink() and target.read_text() == "new\n"
    # a character device: written through (/dev/null stays a device)
    write_output("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    with pytest.raises(OutputError, match="is a folder"):
        write_output(tmp_path, "x")
    with pytest.raises(OutputError, match="cannot write"):
        write_output(tmp_path / "no" / "such" / "r.json", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "alias.csv",
        "out.json",
        "pipe",
        "real.csv",
    ]


def test_cli_json_to_stdout(av, tmp_path):
    root, _ = av
    args = ["evaluate", "-d", "coutrot2", "--root", str(root), "--baseline", "center"]
    r = CliRunner().invoke(_app(), args + ["--split", "1", "--json", "-"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # stdout holds the JSON alone; the table went to stderr
    assert doc["dataset"] == "coutrot2" and "overall" in r.stderr
    r = CliRunner().invoke(_app(), args + ["--csv", "-", "--quiet"])
    assert r.exit_code == 0 and r.stdout.startswith("video,split,frames,skipped,empty")
    r = CliRunner().invoke(_app(), args + ["--csv", "-", "--json", "-"])
    assert r.exit_code == EXIT_USAGE and "both go to standard output" in r.stderr


# --- datasets with missing pieces --------------------------------------------------


def test_video_without_annotation_files_warns_and_fails(tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "DIEM", {"a": 3, "b": 6})
    ann = root / "annotations" / "DIEM" / "b"
    for p in ann.rglob("*"):
        if p.is_file():
            p.unlink()
    said = []
    res = E.evaluate("diem", root=root, baseline="center", on_warning=said.append)
    assert res.unscored == ["b"] and len(said) == 1
    assert said[0].startswith(f"b: no annotation files in {ann}") and "not scored" in said[0]
    assert res.conventions["videos_without_ground_truth"] == ["b"]
    assert res.conventions["frames_missing"] == 6 and res.videos[1].frames == 0
    assert res.overall["cc"] == pytest.approx(res.videos[0].scores["cc"])  # b not averaged
    r = CliRunner().invoke(
        _app(), ["evaluate", "-d", "diem", "--root", str(root), "--baseline", "center", "-q"]
    )
    assert r.exit_code == 1  # a listed video could not be scored
    assert f"salcli: warning: b: no annotation files in {ann}" in r.stderr
    assert "1 video(s) without ground truth not scored: b" in r.stderr
    # no video with ground truth at all: an error, nothing to report
    for p in (root / "annotations" / "DIEM" / "a").rglob("*.mat"):
        p.unlink()
    with pytest.raises(DatasetError, match="no video of split 1 has ground truth"):
        E.evaluate("diem", root=root, baseline="center", on_warning=said.append)


def test_partly_missing_annotations_warn(tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "DIEM", {"a": 4})
    (root / "annotations" / "DIEM" / "a" / "fixMap_00003.mat").unlink()
    said = []
    res = E.evaluate("diem", root=root, baseline="center", on_warning=said.append)
    assert said == [
        "a: 1 of 4 frames have no ground-truth files (the first: frame 3); they are skipped"
    ]
    assert res.unscored == [] and res.conventions["frames_missing"] == 1
    assert "1 skipped (missing ground truth)" in caption(res)


def test_missing_wav_names_the_expected_path(tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "DIEM", {"film": 2}, wav=False)
    with pytest.raises(NoAudioError) as err:
        E.evaluate("diem", root=root, predictor=FakePredictor(), audio=True)
    assert str(root / "video_audio" / "DIEM" / "film" / "film.wav") in str(err.value)


def test_missing_frame_folder_is_named(tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "DIEM", {"film": 2})
    for p in (root / "video_frames" / "DIEM" / "film").iterdir():
        p.unlink()
    (root / "video_frames" / "DIEM" / "film").rmdir()
    with pytest.raises(InputError, match="film: no frame folder .*video_frames/DIEM/film"):
        E.evaluate("diem", root=root, predictor=FakePredictor())


def test_single_split_caption_does_not_explain_split_all(tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "DIEM", {"film": 3})
    res = E.evaluate("diem", root=root, baseline="center")
    assert "split 'all'" not in caption(res) and "split 'all'" not in res.to_json()
    res = E.evaluate("coutrot1", root=_coutrot(tmp_path), baseline="center")
    assert "split 'all' = mean of the 3 splits" in caption(res)


def _coutrot(tmp_path):
    make_av_dataset(tmp_path / "c", "Coutrot_db1", {"x": 2})
    return tmp_path / "c"


def test_negative_seed_is_a_usage_error(av):
    root, _ = av
    with pytest.raises(UsageError, match="seed must be a non-negative integer") as err:
        E.evaluate("coutrot2", root=root, baseline="center", seed=-1)
    assert err.value.option == "seed"
    assert err.value.spelled(flag_of) == "--seed must be a non-negative integer, not -1"
