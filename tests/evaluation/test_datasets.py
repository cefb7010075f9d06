"""Dataset readers on tiny datasets written in each published layout.

The builders here (``make_av_dataset``, ``make_frame_dataset``) are reused by
test_evaluate.py.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from helpers import REPO_ROOT, H, W, make_av_dataset, make_frame_dataset, write_mat_v73

from salcli.errors import DatasetError, UsageError
from salcli.evaluation.datasets import Dataset, default_root, read_fixations, read_mat

# --- MAT files ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["v5", "v73", "v73ub"])
def test_read_mat_versions_agree(tmp_path, kind):
    arr = np.zeros((5, 7))
    arr[1, 2] = 1
    arr[4, 6] = 1
    arr[0, 5] = 3  # a pixel fixated three times counts once
    p = tmp_path / "fixMap_00001.mat"
    if kind == "v5":
        scipy.io.savemat(str(p), {"eyeMap": arr})
    else:
        write_mat_v73(p, arr, userblock=kind == "v73ub")
    got = read_mat(p)
    assert got.shape == (5, 7)  # v7.3 comes back un-transposed
    np.testing.assert_array_equal(got, arr)
    fix = read_fixations(p)
    assert fix.dtype == bool and fix.sum() == 3 and fix[1, 2] and fix[0, 5]


def test_read_mat_missing_variable(tmp_path):
    p = tmp_path / "x.mat"
    scipy.io.savemat(str(p), {"a": np.zeros(2), "b": np.ones(2)})
    with pytest.raises(DatasetError, match="eyeMap"):
        read_mat(p)
    with pytest.raises(DatasetError):
        read_mat(tmp_path / "nope.mat")


# --- audio-visual layout -----------------------------------------------------------


@pytest.mark.parametrize("mat", ["v5", "v73"])
def test_av_dataset_lists_and_ground_truth(tmp_path, mat):
    truth = make_av_dataset(tmp_path, "ETMD_av", {"v1": 3, "v2": 2}, mat=mat, fps=24.0)
    ds = Dataset("etmd", tmp_path)
    assert ds.root == tmp_path and ds.protocol == "av"
    assert ds.splits(None) == ["1", "2", "3"] and ds.splits("all") == ["1", "2", "3"]
    assert ds.splits("2") == ["2"]
    items = ds.videos("2")
    assert [v.name for v in items] == ["v1", "v2"]
    v1 = items[0]
    assert v1.fps == 24.0 and v1.n_frames == 3 and v1.split == "2"
    assert v1.frames == tmp_path / "video_frames" / "ETMD_av" / "v1"
    assert v1.wav == tmp_path / "video_audio" / "ETMD_av" / "v1" / "v1.wav"
    gts = list(v1.iter_ground_truth())
    assert len(gts) == 3
    for gt, (fix, dens) in zip(gts, truth["v1"], strict=True):
        np.testing.assert_array_equal(gt.fixations, fix)
        assert gt.density.dtype == np.float64 and gt.density.shape == (H, W)
        assert 0 <= gt.density.min() and gt.density.max() <= 1
        assert np.abs(gt.density - dens / 255.0).max() < 0.1  # jpeg
    assert [i for i, f in v1.iter_fixations()] == [0, 1, 2]


def test_diem_single_split_and_no_wav(tmp_path):
    make_av_dataset(tmp_path / "data", "DIEM", {"film_1": 2}, wav=False)
    ds = Dataset("diem", tmp_path / "data")
    assert ds.splits(None) == ["1"] and ds.splits("all") == ["1"]
    assert ds.fold_list("1").name == "DIEM_list_test_fps.txt"
    (item,) = ds.videos("1")
    assert item.wav is None and item.n_frames == 2
    with pytest.raises(UsageError):
        ds.splits("2")


def test_av_empty_frame_and_missing_annotation(tmp_path):
    make_av_dataset(tmp_path, "AVAD", {"a": 3}, empty={"a": [1]})
    (tmp_path / "annotations" / "AVAD" / "a" / "fixMap_00003.mat").unlink()
    (item,) = Dataset("avad", tmp_path).videos("1")
    gts = list(item.iter_ground_truth())
    assert [g.empty for g in gts] == [False, True, True]
    assert gts[2].fixations is None


def test_av_bad_fold_list(tmp_path):
    make_av_dataset(tmp_path, "SumMe", {"a": 2})
    (tmp_path / "fold_lists" / "SumMe_list_test_1_fps.txt").write_text("a 2\n")
    with pytest.raises(DatasetError, match="name n_frames fps"):
        Dataset("summe", tmp_path).videos("1")
    (tmp_path / "fold_lists" / "SumMe_list_test_2_fps.txt").unlink()
    with pytest.raises(DatasetError, match="no fold list"):
        Dataset("summe", tmp_path).videos("2")


# --- frame-folder layout -----------------------------------------------------------


def test_frame_folder_dataset(tmp_path):
    truth = make_frame_dataset(tmp_path / "DHF1K")
    ds = Dataset("dhf1k", tmp_path)  # found as <root>/DHF1K
    assert ds.root == tmp_path / "DHF1K" and ds.protocol == "dhf1k"
    assert ds.splits(None) == ["val"]
    items = ds.videos("val")
    assert [v.name for v in items] == ["0601", "0602"]
    assert items[0].frames.name == "images" and items[0].wav is None and items[0].fps == 30.0
    gts = list(items[0].iter_ground_truth())
    for gt, (fix, dens) in zip(gts, truth["0601"], strict=True):
        np.testing.assert_array_equal(gt.fixations, fix)
        np.testing.assert_array_equal(gt.density, dens / 255.0)  # png: exact
    # the layout root itself works too
    assert Dataset("dhf1k", tmp_path / "DHF1K").root == tmp_path / "DHF1K"


def test_hollywood_testing_split(tmp_path):
    make_frame_dataset(tmp_path / "Hollywood2", {"actioncliptest00001": 2}, split="testing")
    ds = Dataset("hollywood2", tmp_path)
    assert ds.splits(None) == ["testing"]
    assert ds.videos("testing")[0].n_frames == 2
    with pytest.raises(DatasetError, match="no split folder"):
        ds.splits("training")


# --- where the data are ------------------------------------------------------------


def test_default_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SALCLI_DATA", str(tmp_path / "d"))
    assert default_root() == tmp_path / "d"
    monkeypatch.delenv("SALCLI_DATA")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "x"))
    assert default_root() == tmp_path / "x" / "salcli"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_root() == Path.home() / ".local" / "share" / "salcli"


def test_not_found_says_where(monkeypatch, tmp_path):
    monkeypatch.setenv("SALCLI_DATA", str(tmp_path))
    with pytest.raises(DatasetError) as err:
        Dataset("diem")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "DIEM") in msg and "SALCLI_DATA" in msg
    make_av_dataset(tmp_path, "DIEM", {"f": 1})
    assert Dataset("diem").root == tmp_path


def test_unknown_dataset():
    with pytest.raises(UsageError, match="unknown dataset"):
        Dataset("mit300", "/nonexistent")


def test_av_fixations_as_png(tmp_path):
    truth = make_av_dataset(tmp_path, "AVAD", {"a": 2})
    ann = tmp_path / "annotations" / "AVAD" / "a"
    (ann / "fixMap_00002.mat").unlink()
    cv2.imwrite(str(ann / "fixMap_00002.png"), truth["a"][1][0].astype(np.uint8) * 255)
    (item,) = Dataset("avad", tmp_path).videos("1")
    gts = list(item.iter_ground_truth())
    np.testing.assert_array_equal(gts[1].fixations, truth["a"][1][0])


# --- incomplete datasets -----------------------------------------------------------


def test_incomplete_av_dataset_says_what_is_missing(tmp_path):
    # the four top-level folders, but the annotations hold the videos directly
    d = tmp_path / "DIEM"
    for sub in ("video_frames/DIEM/film", "video_audio/DIEM/film", "annotations/film"):
        (d / sub).mkdir(parents=True)
    (d / "fold_lists").mkdir()
    with pytest.raises(DatasetError) as err:
        Dataset("diem", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("dataset diem is incomplete")
    assert f"{d} lacks annotations/DIEM/" in msg and "it holds film/" in msg
    (d / "fold_lists").rmdir()
    with pytest.raises(DatasetError, match="lacks annotations/DIEM/ .*, fold_lists/"):
        Dataset("diem", tmp_path)


def test_incomplete_frame_folder_dataset_names_the_split_folder(tmp_path):
    (tmp_path / "DHF1K" / "annotation").mkdir(parents=True)
    with pytest.raises(
        DatasetError, match=r"no split folder val/ in .*DHF1K \(it holds annotation/\)"
    ):
        Dataset("dhf1k", tmp_path)


def test_fold_list_missing_names_the_file(tmp_path):
    make_av_dataset(tmp_path, "DIEM", {"f": 1})
    (tmp_path / "fold_lists" / "DIEM_list_test_fps.txt").unlink()
    with pytest.raises(DatasetError, match="no fold list .*DIEM_list_test_fps.txt"):
        Dataset("diem", tmp_path).videos("1")


def test_videos_without_annotation_files_say_what_is_missing(tmp_path):
    make_av_dataset(tmp_path, "AVAD", {"a": 2, "b": 2, "c": 2})
    ann = tmp_path / "annotations" / "AVAD"
    for p in (ann / "b").rglob("*"):
        if p.is_file():
            p.unlink()
    for p in sorted((ann / "c").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    (ann / "c").rmdir()
    a, b, c = Dataset("avad", tmp_path).videos("1")
    assert a.problem is None and a.missing() == []
    assert b.problem.startswith(f"no annotation files in {ann / 'b'}")
    assert "maps/eyeMap_00001.jpg" in b.problem and b.missing() == [0, 1]
    assert c.problem == f"no annotation folder {ann / 'c'}"
    assert b.wav_expected == tmp_path / "video_audio" / "AVAD" / "b" / "b.wav"


def test_frame_folder_video_without_fixation_folder(tmp_path):
    make_frame_dataset(tmp_path / "DHF1K", {"0601": 2, "0602": 2})
    fix = tmp_path / "DHF1K" / "val" / "0602" / "fixation"
    for p in fix.iterdir():
        p.unlink()
    fix.rmdir()
    a, b = Dataset("dhf1k", tmp_path).videos("val")
    assert a.problem is None
    assert b.problem == f"no fixation/ folder in {tmp_path / 'DHF1K' / 'val' / '0602'}"


def test_diem_splits_with_a_model_per_split(tmp_path):
    make_av_dataset(tmp_path, "DIEM", {"f": 1})
    ds = Dataset("diem", tmp_path)
    assert ds.splits("all") == ["1"]
    assert ds.splits("all", models_per_split=True) == ["1", "2", "3"]
    assert ds.splits("2", models_per_split=True) == ["2"]
    with pytest.raises(UsageError, match=r"single split.*\{split\}"):
        ds.splits("2")
    (item,) = ds.videos("3")  # every split of DIEM is its one test list
    assert item.split == "3" and item.name == "f"


def test_layouts_are_documented():
    """docs/evaluate.md draws both layouts as trees, with the names the readers look
    for; the module docs point there (not at a file outside the repo)."""
    import salcli.evaluation.datasets as D

    page = (REPO_ROOT / "docs" / "evaluate.md").read_text(encoding="utf-8")
    section = page[page.index("## Dataset layouts") :]
    section = section[: section.index("\n## ", 1)]
    for piece in ("└── val/", "├── images/", "├── maps/", "└── fixation/"):
        assert piece in section
    for piece in (
        "├── video_frames/<DS>/<video>/",
        "├── annotations/<DS>/<video>/",
        "└── fold_lists/",
    ):
        assert piece in section
    assert "eyeMap_00001.jpg" in section and "fixMap_00001.mat" in section
    assert "<DS>_list_test_{1,2,3}_fps.txt" in section and "DIEM_list_test_fps.txt" in section
    assert "docs/conventions.md" not in D.__doc__ and "docs/evaluate.md" in D.__doc__
