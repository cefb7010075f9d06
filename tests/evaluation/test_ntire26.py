"""The NTIRE 2026 / MSU set (``ntire26``) on a tiny generated copy of its layout: salcli's
scores against a plain re-statement of the challenge's bench.py loop (the FFmpeg binary's
extraction to PNG files, then its per-frame metrics), predictions as saliency videos, PNG
folders and HDF5 stacks, the model run, the layout checks, and the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import av
import cv2
import h5py
import imageio_ffmpeg
import numpy as np
import pytest
from helpers import NTIRE_SPLITS, make_ntire26, sub_app, write_video
from typer.testing import CliRunner

from salcli import metrics as M
from salcli.cli.evaluate import register
from salcli.errors import DatasetError, OptionError
from salcli.evaluation import evaluate as E
from salcli.evaluation.sources import ModelRun
from salcli.evaluation.videosets import bench_fixation_order
from salcli.media.decode import probe
from salcli.media.writers import RunInfo, make_writer, to_uint8

RUN = RunInfo("vinet", "0" * 64, 32, "mirror", "test")
PRED_SIZES = {"v03": (12, 20)}  # (H, W): this video's predictions at another size
# The per-frame agreement with the re-stated bench.py loop: the same float64 operations
# in the same order give the same numbers; measured 0.0 on every frame.
BENCH_TOLERANCE = 0.0
# HDF5 float stacks of the 8-bit maps / 255 against the 8-bit maps themselves: the
# min-max denominator's float32 eps is not scale-free (255x apart); measured 7e-8 on CC,
# SIM and NSS, AUC-J equal. On a resized prediction the bilinear interpolation's last bit
# differs too, and AUC-J counts p >= t: a pixel tied with a fixation's value may fall on
# the other side (each ~1/(N (H W - N)) of area); measured 3.5e-4 on v03.
FLOAT_STACK_TOLERANCE = 1e-6
FLOAT_STACK_AUC_RESIZED = 1e-3


# --- the tiny set and predictions ----------------------------------------------------


def prediction_maps(truth, seed: int = 7) -> dict[str, list[np.ndarray]]:
    """8-bit maps per video: the ground truth blurred, shifted and noised (so that every
    metric lands between its extremes), at another size for the videos of PRED_SIZES."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (_, maps) in truth.items():
        frames = []
        for m in maps:
            p = np.roll(cv2.GaussianBlur(m, (0, 0), 2.0), 2, axis=1) + 0.3 * rng.random(m.shape)
            if name in PRED_SIZES:
                h, w = PRED_SIZES[name]
                p = cv2.resize(p, (w, h), interpolation=cv2.INTER_AREA)
            frames.append(to_uint8(p / p.max()))
        out[name] = frames
    return out


def write_videos(folder: Path, root: Path, maps) -> Path:
    """The maps as salcli predict --format video writes them: DIR/<video>.mp4."""
    for name, frames in maps.items():
        meta = probe(root / "Videos" / f"{name}.mp4")
        h, w = frames[0].shape
        meta.width, meta.height = w, h  # a video predicted at another size
        with make_writer("video", folder, meta, RUN) as writer:
            for i, m in enumerate(frames):
                writer.write(i, m.astype(np.float32) / 255, i / meta.fps)
    return folder


def write_pngs(folder: Path, maps) -> Path:
    for name, frames in maps.items():
        (folder / name).mkdir(parents=True)
        for i, m in enumerate(frames):
            cv2.imwrite(str(folder / name / f"{i + 1:04d}.png"), m)
    return folder


def write_h5(folder: Path, maps, dtype) -> Path:
    folder.mkdir(parents=True)
    for name, frames in maps.items():
        stack = np.stack(frames)  # (N, H, W) uint8
        data = stack if dtype == np.uint8 else stack.astype(np.float32) / 255
        with h5py.File(folder / f"{name}.h5", "w") as f:
            f.create_dataset("saliency", data=data)
    return folder


@pytest.fixture(scope="module")
def ntire(tmp_path_factory):
    base = tmp_path_factory.mktemp("ntire")
    root = base / "NTIRE26"
    truth = make_ntire26(root)
    maps = prediction_maps(truth)
    return root, truth, maps, write_videos(base / "pred_video", root, maps)


# --- a plain re-statement of bench.py's loop -------------------------------------------


def extract(video: Path, folder: Path) -> Path:
    """bench.py's extraction: ``ffmpeg -v error -i video folder/%03d.png`` (the FFmpeg
    binary imageio-ffmpeg ships; bench.py's README pins 4.4.2, this one is 7.0)."""
    folder.mkdir(parents=True)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([ffmpeg, "-v", "error", "-i", str(video), f"{folder}/%03d.png"], check=True)
    return folder


def read_sm(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    img = img.mean(axis=2) if img.ndim == 3 else img
    return (img - img.min()) / (img.max() - img.min() + np.finfo(np.float32).eps)


def ref_nss(s, gt):
    z = (s - np.mean(s)) / (np.std(s) + 1e-7)
    return np.mean(z[gt[:, 0], gt[:, 1]])


def ref_sim(s, gt):
    s = s / (np.sum(s) + 1e-7)
    gt = gt / (np.sum(gt) + 1e-7)
    return np.sum(np.minimum(s, gt))


def ref_cc(s, gt):
    a = (s - np.mean(s)) / (np.std(s) + 1e-7)
    b = (gt - np.mean(gt)) / (np.std(gt) + 1e-7)
    return (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-7)


def ref_auc_judd(s, f):
    sth = s[f[:, 0], f[:, 1]]
    n = len(sth)
    possible = np.prod(s.shape) + (n - np.unique(f, axis=1).shape[-1])
    th = np.sort(sth)[::-1]
    tp, fp = np.zeros(n + 2), np.zeros(n + 2)
    tp[-1] = fp[-1] = 1
    above = np.sum(s >= th[:, None, None], axis=(1, 2))
    fp[1:-1] = (above - np.arange(1, n + 1)) / (possible - n)
    tp[1:-1] = np.arange(1, n + 1) / n
    return np.trapezoid(tp, fp)


def ref_kld(s, gt):
    s, gt = s / np.sum(s), gt / np.sum(gt)
    return np.sum(gt * np.log(2.2204e-16 + gt / (s + 2.2204e-16)))


def bench_loop(pred_frames: Path, gt_frames: Path, fixations: Path, names, kld=False):
    """{video: (frames, 4 or 5) per-frame [cc, sim, nss, auc_j(, kld)]}: bench.py's
    calculate_metrics over extracted frames, as it pairs them."""
    out = {}
    for name in sorted(names):
        points = json.loads((fixations / name / "fixations.json").read_text())
        preds = sorted(os.listdir(pred_frames / name))
        gts = sorted(os.listdir(gt_frames / name))
        rows = []
        for fix, g, p in zip(points, gts, preds):  # noqa: B905 - bench.py's zip
            f = np.array(fix)
            gt = read_sm(gt_frames / name / g)
            s = cv2.resize(read_sm(pred_frames / name / p), (gt.shape[1], gt.shape[0]))
            row = [ref_cc(s, gt), ref_sim(s, gt), ref_nss(s, f), ref_auc_judd(s, f)]
            rows.append(row + [ref_kld(s, gt)] if kld else row)
        out[name] = np.array(rows)
    return out


@pytest.fixture(scope="module")
def reference(ntire, tmp_path_factory):
    root, _, _, pred = ntire
    frames = tmp_path_factory.mktemp("frames")
    names = NTIRE_SPLITS["public_test"]
    for name in names:
        extract(pred / f"{name}.mp4", frames / "pred" / name)
        extract(root / "SaliencyTest" / "Test" / f"{name}.mp4", frames / "gt" / name)
    fixations = root / "FixationsTest" / "Test"
    return bench_loop(frames / "pred", frames / "gt", fixations, names, kld=True)


def per_frame(result) -> dict[str, np.ndarray]:
    return {v.name: v.frame_scores for v in result.videos}


# --- scores --------------------------------------------------------------------------


def test_scores_equal_bench_py_per_frame(ntire, reference, tmp_path, monkeypatch):
    root, truth, _, pred = ntire
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cv2, "imwrite", None)  # scoring writes no frame
    # in this process (jobs=1), where the patch holds; workers run the same score_video
    kw = dict(predictions=pred, metrics="cc,sim,nss,auc_j,kld", jobs=1)
    res = E.evaluate("ntire26", root=root.parent, **kw)
    assert not list(tmp_path.iterdir())
    assert res.metrics == ("cc", "sim", "nss", "auc_j", "kld") and res.protocol == "ntire26"
    ours = per_frame(res)
    assert sorted(ours) == sorted(reference)
    for name, ref in reference.items():
        assert ours[name].shape == ref.shape == (len(truth[name][0]), 5)
        assert np.abs(ours[name] - ref).max() <= BENCH_TOLERANCE, name
    # the aggregation: each video's mean, then the mean of the videos (bench.py's print)
    overall = np.mean([ref.mean(axis=0) for ref in reference.values()], axis=0)
    assert np.array(list(res.overall.values())) == pytest.approx(overall, abs=1e-12)
    assert 0.2 < res.overall["cc"] < 0.95 and 0.5 < res.overall["auc_j"] < 1.0
    c = res.conventions
    assert c["frames_resized"] == len(truth["v03"][0]) and c["predictions"] == "8-bit video frames"
    assert "not scored by the challenge" in c["kld"] and "seed" not in c


def test_predictions_as_videos_png_and_hdf5_agree(ntire, tmp_path):
    root, _, maps, pred = ntire
    runs = {
        "video": pred,
        "png": write_pngs(tmp_path / "png", maps),
        "h5": write_h5(tmp_path / "h5", maps, np.uint8),
        "h5 float": write_h5(tmp_path / "h5f", maps, np.float32),
    }
    got = {
        k: per_frame(E.evaluate("ntire26", root=root, predictions=p, jobs=1))
        for k, p in runs.items()
    }
    for name, scores in got["video"].items():
        assert np.array_equal(got["png"][name], scores)
        assert np.array_equal(got["h5"][name], scores)
        diff = np.abs(got["h5 float"][name] - scores).max(axis=0)  # cc, sim, nss, auc_j
        assert diff[:3].max() <= FLOAT_STACK_TOLERANCE, name
        auc_tolerance = FLOAT_STACK_AUC_RESIZED if name in PRED_SIZES else 0.0
        assert diff[3] <= auc_tolerance, name


def test_center_baseline_private_test_and_parallel(ntire):
    root, truth, _, _ = ntire
    one = E.evaluate("ntire26", root=root, baseline="center", split="public_test", jobs=1)
    two = E.evaluate("ntire26", root=root, baseline="center", split="public_test", jobs=2)
    assert [v.name for v in two.videos] == NTIRE_SPLITS["public_test"]
    for a, b in zip(one.videos, two.videos, strict=True):
        assert np.array_equal(a.frame_scores, b.frame_scores)
    private = E.evaluate("ntire26", root=root, baseline="center", split="private_test")
    assert [v.name for v in private.videos] == ["v04"] and private.videos[0].frames == 18


def test_fixation_entries_follow_bench_pys_string_sorted_frame_files():
    n = 1001  # frames 1000 and 1001 are 4-digit names: "1000.png" sorts after "100.png"
    names = sorted(f"{k:03d}.png" for k in range(1, n + 1))  # bench.py's sorted(listdir)
    entry_of_frame = {int(name[:-4]) - 1: k for k, name in enumerate(names)}
    order = bench_fixation_order(n)
    assert order.tolist() == [entry_of_frame[f] for f in range(n)]
    assert order[99] == 99 and order[999] == 100 and order[1000] == 101 and order[100] == 102
    assert bench_fixation_order(999).tolist() == list(range(999))


@pytest.mark.parametrize(
    "points",
    [[[3, 3], [5, 5], [5, 5]], [[3, 3], [5, 7]], [[0, 9], [-1, 2], [4, 4]]],
    ids=["row-equals-column", "two-distinct-columns", "negative-index"],
)
def test_auc_judd_counts_possible_fixations_as_bench_py_writes_it(points):
    rng = np.random.default_rng(5)
    s = M.bench_normalize(rng.random((12, 16)))
    f = np.array(points)
    assert M.bench_auc_judd(s, M.bench_points(f, s.shape)) == ref_auc_judd(s, f)


# --- the model -----------------------------------------------------------------------


class BrightnessModel(ModelRun):
    """A model run over a video file: each frame's brightness as its map."""

    def __init__(self, *args, **options):
        self.calls, self.options = [], options

    def iter_maps(self, source, *, fps=None, audio_path=None):
        self.calls.append((Path(source).name, audio_path))
        with av.open(str(source)) as container:
            for i, frame in enumerate(container.decode(video=0)):
                yield i, frame.to_ndarray(format="gray").astype(np.float32) / 255


def test_model_runs_on_the_videos_with_their_own_sound(ntire):
    root, _, _, _ = ntire
    made = []

    def factory(weights, audio, **options):
        made.append(BrightnessModel(**options))
        return made[-1]

    res = E.evaluate("ntire26", root=root, audio=True, predictor_factory=factory)
    assert made[0].options == {"allow_silence": True}  # videos without sound: silence
    assert made[0].calls == [(f"{n}.mp4", None) for n in NTIRE_SPLITS["public_test"]]
    assert res.conventions["predictions"] == "floats" and len(res.videos) == 3


# --- layout checks -------------------------------------------------------------------


@pytest.fixture
def copy(ntire, tmp_path) -> Path:
    """A copy of the set to break."""
    return shutil.copytree(ntire[0], tmp_path / "NTIRE26")


def test_missing_split_file_is_named(copy):
    (copy / "TrainTestSplit.json").unlink()
    with pytest.raises(DatasetError, match=f"no split file {copy / 'TrainTestSplit.json'}"):
        E.evaluate("ntire26", root=copy, baseline="center")
    with pytest.raises(OptionError, match="public_test, private_test, train"):
        E.evaluate("ntire26", root=copy, baseline="center", split="3")


def test_missing_ground_truth_and_frame_counts_are_named(copy):
    (copy / "SaliencyTest" / "Test" / "v01.mp4").unlink()
    (copy / "FixationsTest" / "Test" / "v02" / "fixations.json").unlink()
    write_video(copy / "Videos" / "v03.mp4", 5, (24, 40))  # 5 frames, its saliency 22
    warned = []
    with pytest.raises(DatasetError, match="no video of split public_test has ground truth"):
        E.evaluate("ntire26", root=copy, baseline="center", on_warning=warned.append)
    assert [w.split(":")[0] for w in warned] == ["v01", "v02", "v03"]
    text = "\n".join(warned)
    assert f"no saliency video {copy / 'SaliencyTest' / 'Test' / 'v01.mp4'}" in text
    assert f"no fixations file {copy / 'FixationsTest' / 'Test' / 'v02' / 'fixations.json'}" in text
    assert "has 22 frames, its source" in text and "v03.mp4 5" in text


def test_malformed_fixations_and_short_predictions_fail_their_video_only(copy, ntire, tmp_path):
    bad = copy / "FixationsTest" / "Test" / "v02" / "fixations.json"
    bad.write_text("[[[1, 2]], [[1.5, 2]]]")
    pred = tmp_path / "pred"
    shutil.copytree(ntire[3], pred)
    (pred / "v03.mp4").unlink()
    write_video(pred / "v03.mp4", 4, (24, 40))
    warned = []
    res = E.evaluate("ntire26", root=copy, predictions=pred, on_warning=warned.append, jobs=1)
    assert [v.name for v in res.videos] == ["v01"] and sorted(res.unscored) == ["v02", "v03"]
    assert any(f"{bad}: malformed fixations JSON at frame 2" in w for w in warned)
    assert any("v03: 4 predicted maps for 22 frames" in w for w in warned)


def test_missing_video_is_named_when_the_model_runs(copy):
    (copy / "Videos" / "v02.mp4").unlink()
    warned = []
    res = E.evaluate("ntire26", root=copy, predictor=BrightnessModel(), on_warning=warned.append)
    assert res.unscored == ["v02"]
    assert any(f"no video {copy / 'Videos' / 'v02.mp4'} to run the model on" in w for w in warned)


def test_bench_metrics_only(ntire):
    with pytest.raises(OptionError, match="sauc: not defined by the ntire26 protocol"):
        E.evaluate("ntire26", root=ntire[0], baseline="center", metrics="cc,sauc")


# --- the command line ----------------------------------------------------------------


def test_cli(ntire, copy, tmp_path):
    root, _, _, pred = ntire
    out = tmp_path / "r.json"
    args = ["evaluate", "-d", "ntire26", "--root", str(root), "-p", str(pred), "-j", "2"]
    r = CliRunner().invoke(sub_app(register), [*args, "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "bench.py's metric definitions" in r.output and "AUC-J" in r.output
    doc = json.loads(out.read_text())
    assert list(doc["overall"]) == ["cc", "sim", "nss", "auc_j"] and len(doc["videos"]) == 3
    (copy / "FixationsTest" / "Test" / "v01" / "fixations.json").write_text("{")
    r = CliRunner().invoke(sub_app(register), ["evaluate", "-d", "ntire26", "--root", str(copy),
                                               "--baseline", "center", "-q"])  # fmt: skip
    assert r.exit_code == 1
    assert "malformed fixations JSON" in r.output and "Traceback" not in r.output
