"""Scoring end to end on tiny datasets: predictions on disk, the model (a fake one, and
one slow test with the real Predictor), the centre baseline, the protocols, JSON/CSV,
and the `evaluate` command."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import types

import cv2
import h5py
import numpy as np
import pytest
import typer
from test_datasets import H, W, make_av_dataset, make_frame_dataset
from typer.testing import CliRunner

from salcli import evaluate as E
from salcli import metrics as M
from salcli.cli_evaluate import register
from salcli.errors import EXIT_USAGE, InputError, NoAudioError, UsageError


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
    (item,) = [v for v in E.Dataset("coutrot2", root).videos("2") if v.name == "v2"]
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
    assert res.conventions["frames_scored"] == 10 and res.conventions["frames_skipped"] == 1
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
    m = E.center_map((5, 9))
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


class FakePredictor:
    """Predictor's iter_maps: (0-based index, float32 map in [0, 1] of the frame's size)."""

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

    monkeypatch.setitem(sys.modules, "salcli.predict", types.SimpleNamespace(Predictor=Predictor))
    E.evaluate("coutrot2", root=root, split="1", weights="w.pt")
    assert made == [("w.pt", False)]


@pytest.mark.slow
def test_real_predictor_on_a_tiny_dataset(tmp_path):
    """The real model (random deterministic weights) over a 2-frame dataset."""
    pytest.importorskip("salcli.predict")
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
    assert list(rows[0]) == ["video", "split", "frames", "skipped", "cc", "sauc"]
    assert [r["video"] for r in rows][-4:] == ["overall:1", "overall:2", "overall:3", "overall"]
    assert rows[-1]["frames"] == "18" and rows[-1]["skipped"] == "3"
    assert float(rows[-1]["cc"]) == pytest.approx(res.overall["cc"], abs=1e-6)
    from rich.console import Console

    con = Console(record=True, width=200)
    con.print(res.table())
    text = " ".join(con.export_text().split())
    assert "overall" in text and "sAUC" in text and "18 frames scored, 3 skipped" in text
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
    assert out_csv.read_text().splitlines()[0].startswith("video,split,frames,skipped,cc")
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
