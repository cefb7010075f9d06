"""Ensembles (salcli.inference.ensemble): several --weights over one decode, each model on
its own clips, the raw maps averaged at the largest input and post-processed as that
model's. The combination step reproduces the reference section's ViNet-E check; the
pipeline is checked against each model run alone, through the single-model API."""

from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    CLI_INPUT_SIZE,
    DATA,
    SMALL_INPUT,
    errors,
    make_av_dataset,
    runner,
    use_fast_model,
    write_video,
)

import salcli
import salcli.inference.predictor as predictor_module
from salcli.cli import app
from salcli.errors import EXIT_FAILED, EXIT_WEIGHTS, OptionError, UsageError, WeightsError
from salcli.evaluation import evaluate as E
from salcli.evaluation.sources import ModelRun
from salcli.inference.ensemble import combine, common_size, resize_map
from salcli.inference.predictor import PREFETCH_FRAMES, Predictor
from salcli.models.checkpoints import sha256_file
from salcli.models.stavis import Stavis
from salcli.models.vinet_procedure import CLIP_LEN
from salcli.models.vinet_procedure import postprocess as vinet_postprocess
from salcli.models.vinet_s import ViNetS
from salcli.options import PredictOptions
from salcli.testing import deterministic_state_dict, load_manifest

QUIET = {"on_warning": lambda line: None}  # the ViNet-S licence notice
FP32 = {"device": "cpu", "precision": "fp32", **QUIET}
VINET_SIZE = (224, 384)  # ViNet's input: larger than STAViS's 112x112
VINET_E_SIZE = (256, 456)  # ViNet-A's input, where ViNet-E averages
# The reference section's ViNet-E check: sum, min, max, [0,0], [128,228], [255,455]
S_UP = (39628.4005, 0.0856752, 0.7785526, 0.6938534, 0.3801972, 0.5341591)
E_MAP = (19868.7202, 0.0428376, 0.7372181, 0.3897544, 0.1900986, 0.2988301)
SUM_TOLERANCE, VALUE_TOLERANCE = 1e-2, 1e-6


# --- stand-ins: a cheap forward pass per family, each its own function of the clip ------


def _vinet_s_forward(self, clip: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, h, w) -> (B, h, w): the first frame's darkness (ViNet's stand-in reads
    the last frame's brightness: the two differ, so the order of the members shows)."""
    return torch.sigmoid(-clip[:, :, 0].mean(dim=1))


def _stavis_forward(self, clip: torch.Tensor, audio: torch.Tensor | None = None):
    """(B, 3, T, 112, 112) -> (B, 112, 112): the mapped frame's green channel, raised by
    the loudness of the clip's sound when it hears."""
    mid = clip[:, 1, clip.shape[2] // 2]
    if audio is not None:
        mid = mid + 10 * audio.flatten(1).abs().mean(dim=1)[:, None, None]
    return torch.sigmoid(mid)


@pytest.fixture
def stand_ins(monkeypatch) -> None:
    use_fast_model(monkeypatch)  # ViNet's forward, and each checkpoint loaded once
    monkeypatch.setattr(ViNetS, "forward", _vinet_s_forward)
    monkeypatch.setattr(Stavis, "forward", _stavis_forward)


@pytest.fixture(scope="module")
def vinet_s_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("vinet_s") / "DHF1K_vinet_s_rootgrouped_32_bs8_kld_cc.pt"
    torch.save(deterministic_state_dict(load_manifest(DATA / "vinet_s.keys.json")), path)
    return path


def _by_hand(raws: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The rule spelled out: each raw map bicubic to ``size`` (not clipped), the mean."""
    up = []
    for r in raws:
        x = torch.from_numpy(r)[None, None]
        if tuple(r.shape) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        up.append(x[0, 0])
    return (sum(up) / len(up)).numpy()


class _Counting:
    """A reader that counts the frames it decodes."""

    def __init__(self, reader):
        self.reader, self.meta, self.frames = reader, reader.meta, 0

    def __iter__(self):
        for frame in self.reader:
            self.frames += 1
            yield frame

    def close(self) -> None:
        self.reader.close()


def _count_readers(monkeypatch) -> list[_Counting]:
    opened: list[_Counting] = []
    real = predictor_module.open_video

    def counting(*args, **kwargs):
        opened.append(_Counting(real(*args, **kwargs)))
        return opened[-1]

    monkeypatch.setattr(predictor_module, "open_video", counting)
    return opened


# --- the combination ---------------------------------------------------------------------


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return torch.sigmoid(torch.from_numpy(logits)).numpy()


def test_the_combination_reproduces_the_reference_vinet_e_check():
    s = _sigmoid(np.load(DATA / "vinet_s.expected.npy"))[0]  # (224, 384), ViNet-S's map
    a = _sigmoid(np.load(DATA / "vinet_a.expected.npy"))[0]  # (256, 456), ViNet-A's map
    assert common_size([s.shape, a.shape]) == 1  # ViNet-A's size is the common one
    s_up, e = resize_map(s, VINET_E_SIZE), combine([s, a], VINET_E_SIZE)
    for arr, want in ((s_up, S_UP), (e, E_MAP)):
        assert arr.shape == VINET_E_SIZE and arr.dtype == np.float32
        assert abs(float(arr.sum(dtype=np.float64)) - want[0]) < SUM_TOLERANCE
        got = (arr.min(), arr.max(), arr[0, 0], arr[128, 228], arr[255, 455])
        np.testing.assert_allclose(got, want[1:], atol=VALUE_TOLERANCE, rtol=0)
    assert s_up.min() < s.min()  # bicubic overshoots, and nothing clips it
    np.testing.assert_array_equal(combine([a, s], VINET_E_SIZE), e)  # equal weights


def test_the_common_size_is_the_largest_input_the_first_on_ties():
    assert common_size([VINET_SIZE, VINET_E_SIZE]) == 1
    assert common_size([(112, 112), VINET_SIZE]) == 1
    assert common_size([(2, 8), (4, 4), (8, 2)]) == 0
    m = np.random.default_rng(0).random((4, 6), dtype=np.float32)
    assert resize_map(m, (4, 6)) is not None and np.array_equal(resize_map(m, (4, 6)), m)


# --- the pipeline --------------------------------------------------------------------------


def test_each_frame_averages_each_models_own_map_over_one_decode(
    stand_ins, vinet_checkpoint, stavis_checkpoint, make_video, monkeypatch
):
    """ViNet (224x384, its clip ends at t) and STAViS (112x112, 7 frames of look-ahead),
    both every 2nd frame (--stride 2): STAViS's maps upsampled to ViNet's size, averaged,
    post-processed as ViNet's; the video opened and decoded once."""
    video = make_video(n_frames=9)
    kw = dict(batch_size=3, stride=2, **FP32)
    ens = Predictor([vinet_checkpoint, stavis_checkpoint], **kw)
    assert [m.arch for m in ens.members] == ["vinet", "stavis-visual"]
    assert ens.family is None and ens.input_size == VINET_SIZE and ens.arch == "vinet+stavis-visual"
    alone = [dict(m.iter_raw_maps(video)) for m in ens.members]  # each as a lone model
    opened = _count_readers(monkeypatch)
    maps = ens.predict(video)
    assert maps.shape == (9, 48, 64) and len(opened) == 1 and opened[0].frames == 9
    for t in range(9):
        want = _by_hand([alone[0][t], alone[1][t]], VINET_SIZE)
        np.testing.assert_allclose(maps[t], vinet_postprocess(want, 48, 64), atol=1e-5, rtol=0)


def test_real_vinet_and_vinet_s(vinet_checkpoint, vinet_s_checkpoint, make_video):
    """The real networks (ViNet-S under its published warm-up, frame 0 repeated): each
    raw map is the two models' mean, the same size, nothing resized."""
    video = make_video(n_frames=2)
    kw = dict(input_size=SMALL_INPUT, batch_size=2, warmup="reference", **FP32)
    ens = Predictor([vinet_checkpoint, vinet_s_checkpoint], **kw)
    assert ens.warmup == "reference+reference" and ens.input_size == SMALL_INPUT
    raw = dict(ens.iter_raw_maps(video))
    alone = [dict(m.iter_raw_maps(video)) for m in ens.members]  # each as a lone model
    for t in range(2):
        np.testing.assert_allclose(raw[t], (alone[0][t] + alone[1][t]) / 2, atol=1e-6, rtol=0)
    assert min(np.abs(alone[0][t] - alone[1][t]).max() for t in range(2)) > 1e-3


@pytest.mark.slow
def test_vinet_s_and_vinet_a_are_vinet_e(vinet_s_checkpoint, tmp_path, make_video):
    """The real networks at their published sizes, the published warm-ups: each frame's
    raw map is ViNet-S's upsampled bicubically to 256x456 and averaged with ViNet-A's;
    the written map is that, post-processed as ViNet-A's (ViNet's rule)."""
    from salcli.testing import tamed_state_dict

    vinet_a = tmp_path / "ViNet_A_DHF1K_no_split_neck_32_kldiv_cc___6_0.pt"
    torch.save(tamed_state_dict(DATA / "vinet_a.keys.json"), vinet_a)
    video = make_video(n_frames=2)  # both of ViNet-A's clamped clips are the same clip
    ens = Predictor([vinet_s_checkpoint, vinet_a], warmup="reference", batch_size=2, **FP32)
    raw = dict(ens.iter_raw_maps(video))
    alone = [dict(m.iter_raw_maps(video)) for m in ens.members]
    frame = next(iter(salcli.media.decode.open_video(video))).rgb
    maps = ens.predict(video)
    for t in range(2):
        assert alone[0][t].shape == (224, 384) and alone[1][t].shape == VINET_E_SIZE
        want = _by_hand([alone[0][t], alone[1][t]], VINET_E_SIZE)
        np.testing.assert_allclose(raw[t], want, atol=1e-6, rtol=0)
        post = vinet_postprocess(want, *frame.shape[:2])
        np.testing.assert_allclose(maps[t], post, atol=1e-5, rtol=0)


def test_the_frames_held_are_bounded_by_the_clips_not_the_video(
    stand_ins, vinet_checkpoint, vinet_s_checkpoint, tmp_path, monkeypatch
):
    """ViNet's published warm-up reads 62 frames ahead of frame 0, ViNet-S's none: the
    frames decoded ahead of the maps stay within the prefetch queue, that look-ahead and
    a batch, however long the video."""
    n, batch = 300, 2
    video = write_video(tmp_path / "long.mp4", n_frames=n, size=(24, 32))
    kw = dict(input_size=SMALL_INPUT, batch_size=batch, warmup="reference", **FP32)
    ens = Predictor([vinet_checkpoint, vinet_s_checkpoint], **kw)
    opened = _count_readers(monkeypatch)
    ahead = [opened[0].frames - (t + 1) for t, _ in ens.iter_raw_maps(video)]
    assert len(ahead) == n and opened[0].frames == n
    assert max(ahead) <= PREFETCH_FRAMES + 2 * CLIP_LEN + batch + 2 < n


@pytest.mark.parametrize(("n", "warmup"), [(1, "mirror"), (4, "reference")])
def test_a_video_shorter_than_a_clip_with_a_look_ahead_member(
    stand_ins, vinet_checkpoint, stavis_checkpoint, make_video, n, warmup
):
    video = make_video(n_frames=n)
    ens = Predictor([stavis_checkpoint, vinet_checkpoint], warmup=warmup, **FP32)
    maps = ens.predict(video)
    assert maps.shape == (n, 48, 64) and np.isfinite(maps).all()
    assert ens.input_size == VINET_SIZE  # the second member's: the larger
    # the public API takes the same list
    np.testing.assert_array_equal(
        salcli.predict(video, [stavis_checkpoint, vinet_checkpoint], warmup=warmup, **FP32), maps
    )


def test_sound_goes_to_the_members_that_hear(
    stand_ins, vinet_checkpoint, vinet_s_checkpoint, stavis_checkpoint, make_video
):
    video = make_video(n_frames=6, audio_rate=22050)
    ens = Predictor([stavis_checkpoint, vinet_checkpoint], audio=True, batch_size=2, **FP32)
    assert [m.arch for m in ens.members] == ["stavis-audiovisual", "vinet"] and ens.audio
    # each as a lone model, STAViS with the sound (its stand-in's maps rise with it)
    alone = [dict(m.iter_raw_maps(video)) for m in ens.members]
    for t, raw in ens.iter_raw_maps(video):
        np.testing.assert_allclose(raw, _by_hand([alone[0][t], alone[1][t]], VINET_SIZE),
                                   atol=1e-6, rtol=0)  # fmt: skip
    with pytest.raises(WeightsError, match="every one is visual only") as err:
        Predictor([vinet_checkpoint, vinet_s_checkpoint], audio=True, **FP32)
    assert "\n" not in str(err.value)


def test_options_that_fit_no_member_are_refused(
    stand_ins, vinet_checkpoint, vinet_s_checkpoint, stavis_checkpoint
):
    with pytest.raises(OptionError, match="no model of the ensemble") as err:
        Predictor([vinet_checkpoint, vinet_s_checkpoint], fusion="bilinear", **FP32)
    assert err.value.option == "fusion"
    # every member runs at --input-size, and STAViS works only at its own
    with pytest.raises(OptionError, match="STAViS") as err:
        Predictor([vinet_checkpoint, stavis_checkpoint], input_size=SMALL_INPUT, **FP32)
    assert err.value.option == "input_size"
    with pytest.raises(UsageError, match="runs alone"):
        Predictor([vinet_checkpoint, stavis_checkpoint], model=torch.nn.Identity(), **FP32)


def test_weights_options_one_is_that_one_several_an_ensemble(vinet_checkpoint):
    assert PredictOptions(weights=["a.pt"]).weights == "a.pt"
    assert PredictOptions(weights=("a.pt", vinet_checkpoint)).weights == (
        "a.pt",
        str(vinet_checkpoint),
    )
    assert PredictOptions(weights=vinet_checkpoint).weights == str(vinet_checkpoint)
    assert PredictOptions(weights=[]).weights is None


# --- outputs, records, errors ----------------------------------------------------------------


def _predict(video, out, *weights, extra=()):
    args = ["predict", str(video), "-o", str(out), "-f", "png,h5", "--precision", "fp32",
            "--input-size", CLI_INPUT_SIZE, *extra]  # fmt: skip
    for w in weights:
        args += ["--weights", str(w)]
    return runner.invoke(app, args)


def _member(model: str, path) -> dict:
    return {"model": model, "weights_file": path.name, "weights_sha256": sha256_file(path),
            "precision": "fp32", "input_size": CLI_INPUT_SIZE, "warmup": "mirror"}  # fmt: skip


def test_cli_png_and_h5_record_every_member_in_order(
    stand_ins, vinet_checkpoint, vinet_s_checkpoint, make_video, tmp_path
):
    video, out = make_video("v.mp4", n_frames=5), tmp_path / "out"
    a, b = vinet_checkpoint, vinet_s_checkpoint
    r = _predict(video, out, a, b)
    assert r.exit_code == 0, r.output
    assert "ensemble of ViNet on cpu" in r.stderr and "ViNet-S on cpu" in r.stderr
    assert len(list((out / "v").glob("*.png"))) == 5
    members = [_member("vinet", a), _member("vinet-s", b)]
    shas = f"{sha256_file(a)}+{sha256_file(b)}"
    record = out / "v.salcli.json"
    rec = json.loads(record.read_text())
    assert (rec["model"], rec["weights_sha256"], rec["members"]) == ("vinet+vinet-s", shas, members)
    assert rec["input_size"] == f"{CLI_INPUT_SIZE}+{CLI_INPUT_SIZE}"
    with h5py.File(out / "v.h5") as f:
        assert f["saliency"].shape == (5, 48, 64)
        assert (f.attrs["model"], f.attrs["weights_sha256"]) == ("vinet+vinet-s", shas)
        assert json.loads(f.attrs["members"]) == members
        assert f.attrs["weights_file"] == f"{a.name}+{b.name}"
        assert "averaged" in f.attrs["postprocess"]
    # the same models in the other order are another run: its outputs are not these
    before = record.read_text()
    r = _predict(video, out, b, a)
    assert r.exit_code == EXIT_FAILED and "made with another model, weights_sha256" in r.stderr
    assert record.read_text() == before
    r = _predict(video, out, b, a, extra=["--overwrite"])
    assert r.exit_code == 0, r.output
    rec = json.loads(record.read_text())
    assert rec["model"] == "vinet-s+vinet" and rec["members"] == members[::-1]
    assert "skipped" in _predict(video, out, b, a).stderr  # that order is now finished


def test_write_keeps_earlier_formats_only_of_the_same_members_in_the_same_order(
    stand_ins, vinet_checkpoint, vinet_s_checkpoint, make_video, tmp_path
):
    video, out = make_video("v.mp4", n_frames=3), tmp_path / "out"
    kw = dict(input_size=SMALL_INPUT, **FP32)
    ab = Predictor([vinet_checkpoint, vinet_s_checkpoint], **kw)
    ab.write(video, out, formats=("png",))
    ab.write(video, out, formats=("h5",))
    assert json.loads((out / "v.salcli.json").read_text())["formats"] == ["h5", "png"]
    Predictor([vinet_s_checkpoint, vinet_checkpoint], **kw).write(video, out, formats=("h5",))
    assert json.loads((out / "v.salcli.json").read_text())["formats"] == ["h5"]
    # one model keeps its record as it was: no members
    rec = Predictor(vinet_checkpoint, **kw).settings(video)
    assert "members" not in rec and rec["model"] == "vinet" and "+" not in rec["weights_sha256"]


@pytest.mark.parametrize("bad", ["missing", "garbage", "unknown"])
def test_a_bad_member_file_is_one_line_and_nothing_is_written(
    stand_ins, vinet_checkpoint, make_video, tmp_path, bad
):
    video, out = make_video(n_frames=2), tmp_path / "out"
    path = tmp_path / f"{bad}.pt"
    if bad == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif bad == "unknown":
        torch.save({"head.weight": torch.zeros(2)}, path)
    r = _predict(video, out, vinet_checkpoint, path)
    assert r.exit_code == EXIT_WEIGHTS
    assert len(errors(r)) == 1 and path.name in errors(r)[0]
    assert "Traceback" not in r.output and not out.exists()


# --- evaluate -------------------------------------------------------------------------------


def test_evaluate_scores_an_ensemble(stand_ins, vinet_checkpoint, vinet_s_checkpoint, tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "DIEM", {"film": 3}, wav=False)
    out = tmp_path / "r.json"
    args = ["evaluate", "--dataset", "diem", "--root", str(root), "--precision", "fp32",
            "--weights", str(vinet_checkpoint), "--weights", str(vinet_s_checkpoint),
            "--json", str(out), "--quiet", "--metrics", "cc,sim"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["conventions"]["source"] == (
        f"model (ViNet + ViNet-S, visual only), weights {vinet_checkpoint} + {vinet_s_checkpoint}"
    )
    assert doc["videos"]["film"]["frames"] == 3


class _FirstChannel(ModelRun):
    """A model run: each frame's first channel, in [0, 1]."""

    def iter_maps(self, source, *, fps=None, audio_path=None):
        for i, p in enumerate(sorted(source.iterdir())):
            yield i, cv2.imread(str(p), cv2.IMREAD_COLOR)[:, :, 0].astype(np.float32) / 255


def test_evaluate_fills_a_split_placeholder_in_each_member(tmp_path):
    root = tmp_path / "d"
    make_av_dataset(root, "Coutrot_db2", {"v1": 2})
    for k in "123":
        (tmp_path / f"a_{k}.pt").write_bytes(b"")  # files: checked before anything runs
    (tmp_path / "b.pt").write_bytes(b"")
    made = []

    def factory(weights, audio):
        made.append(weights)
        return _FirstChannel()

    weights = [str(tmp_path / "a_{split}.pt"), str(tmp_path / "b.pt")]
    E.evaluate("coutrot2", root=root, weights=weights, predictor_factory=factory, metrics="cc")
    assert made == [(str(tmp_path / f"a_{k}.pt"), str(tmp_path / "b.pt")) for k in "123"]
    (tmp_path / "a_2.pt").unlink()
    with pytest.raises(WeightsError, match=r"no checkpoint .*a_2\.pt"):
        E.evaluate("coutrot2", root=root, weights=weights, predictor_factory=factory)
