"""`salcli train` on tiny synthetic datasets in the published layouts (a bright blob that
moves, ground truth that follows it), at a small input size, in fp32 on the CPU:
learning, exact resume, the S3D Kinetics mappings, DDP on two CPU processes, the
checkpoint through predict and evaluate, AViNet's data path, and bad data / options."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile
import torch
from helpers import DATA, sub_app
from typer.testing import CliRunner

from salcli.cli import app as main_app
from salcli.cli.train import register
from salcli.errors import (
    EXIT_USAGE,
    EXIT_WEIGHTS,
    DatasetError,
    OptionError,
    UsageError,
    WeightsError,
)
from salcli.models.s3d import S3DBackbone
from salcli.models.soundnet import SoundNet8
from salcli.models.vinet import ViNet
from salcli.testing import deterministic_state_dict, load_manifest
from salcli.training.data import WindowDataset, draw_window, epoch_order, training_sets
from salcli.training.init import initial_model, s3d_backbone_state
from salcli.training.loaders import EpochBatches
from salcli.training.loop import train
from salcli.training.loss import cc_score, kld_loss
from salcli.training.options import TrainOptions, parse_loss

TRAIN_INPUT = (32, 32)  # (h, w) model input of these tests: the smallest S3D takes
FRAME_H, FRAME_W = 40, 48  # pixels, the synthetic videos (resized to TRAIN_INPUT)
TRAIN_FRAMES = 40  # frames per training video (>= T = 32)
VAL_FRAMES = 36  # frames per validation video
FPS = 25.0
SIZE = "x".join(map(str, TRAIN_INPUT))  # "32x32", for --input-size
FAST = dict(precision="fp32", device="cpu", input_size=TRAIN_INPUT)  # every run here

# --- synthetic data --------------------------------------------------------------------


def blob_video(rng: np.random.Generator, n: int, h: int = FRAME_H, w: int = FRAME_W):
    """n frames of a bright Gaussian blob bouncing over dark noise, its density map (a
    narrower Gaussian at the blob) and one fixated pixel at its centre."""
    y, x = rng.uniform(0.3 * h, 0.7 * h), rng.uniform(0.3 * w, 0.7 * w)
    vy, vx = rng.uniform(-1, 1) * h / 40, rng.uniform(-1, 1) * w / 40
    base = rng.integers(0, 90, size=(h, w, 3)).astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for _ in range(n):
        y, x = y + vy, x + vx
        if not 0.15 * h < y < 0.85 * h:
            vy, y = -vy, y - 2 * vy
        if not 0.15 * w < x < 0.85 * w:
            vx, x = -vx, x - 2 * vx
        r2 = (yy - y) ** 2 + (xx - x) ** 2
        g = np.exp(-r2 / (2 * (0.08 * h) ** 2))[..., None]
        frame = np.clip(base * (1 - g) + 250 * g, 0, 255).astype(np.uint8)
        dens = np.round(255 * np.exp(-r2 / (2 * (0.06 * h) ** 2))).astype(np.uint8)
        fix = np.zeros((h, w), np.uint8)
        fix[int(round(y)), int(round(x))] = 255
        out.append((frame, dens, fix))
    return out


def write_frame_set(root: Path, splits: dict[str, tuple[int, int]], seed: int = 0) -> Path:
    """A DHF1K-layout set: ROOT/DHF1K/<split>/<video>/images|maps|fixation/0001.png."""
    rng = np.random.default_rng(seed)
    for split, (count, n) in splits.items():
        for v in range(count):
            vdir = root / "DHF1K" / split / f"{split}{v:02d}"
            for sub in ("images", "maps", "fixation"):
                (vdir / sub).mkdir(parents=True)
            for i, (frame, dens, fix) in enumerate(blob_video(rng, n), 1):
                cv2.imwrite(str(vdir / "images" / f"{i:04d}.png"), frame)
                cv2.imwrite(str(vdir / "maps" / f"{i:04d}.png"), dens)
                cv2.imwrite(str(vdir / "fixation" / f"{i:04d}.png"), fix)
    return root


def write_av_set(root: Path, folder: str, train: int, test: int, n: int, seed: int = 0) -> Path:
    """An audio-visual-layout set (frames, wav, eyeMap JPEGs, fixMap PNGs, fold lists of
    all three splits listing the same videos)."""
    rng = np.random.default_rng(seed)
    lines = {"train": "", "test": ""}
    for role, count in (("train", train), ("test", test)):
        for v in range(count):
            name = f"{role}{v:02d}"
            fdir = root / "video_frames" / folder / name
            adir = root / "annotations" / folder / name
            wdir = root / "video_audio" / folder / name
            for d in (fdir, adir / "maps", wdir):
                d.mkdir(parents=True)
            for i, (frame, dens, fix) in enumerate(blob_video(rng, n), 1):
                cv2.imwrite(str(fdir / f"img_{i:05d}.jpg"), frame)
                cv2.imwrite(str(adir / "maps" / f"eyeMap_{i:05d}.jpg"), dens)
                cv2.imwrite(str(adir / f"fixMap_{i:05d}.png"), fix)
            t = np.arange(int(22050 * n / FPS)) / 22050
            soundfile.write(str(wdir / f"{name}.wav"), 0.2 * np.sin(2 * np.pi * 330 * t), 22050)
            lines[role] += f"{name} {n} {FPS}\n"
    lists = root / "fold_lists"
    lists.mkdir(exist_ok=True)
    for role, text in lines.items():
        for k in ("1", "2", "3"):
            (lists / f"{folder}_list_{role}_{k}_fps.txt").write_text(text)
    return root


def calibrated_vinet(root: Path, path: Path) -> Path:
    """A ViNet checkpoint standing in for pretrained weights: the deterministic weights
    of the reference manifest, with BatchNorm statistics measured on a batch of the
    dataset's training windows (as a pretrained network's would fit its data)."""
    model = ViNet()
    model.load_state_dict(deterministic_state_dict(load_manifest(DATA / "vinet.keys.json")))
    sets = training_sets("dhf1k", root, "train")
    ds = WindowDataset(sets.train, seed=123, size=TRAIN_INPUT)
    clips = torch.stack([ds[(0, i)]["clip"] for i in range(min(8, len(ds)))])  # (B, 3, T, h, w)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the calibration batch
    model.train()
    with torch.no_grad():
        model(clips)
    for m, mom in zip(norms, momenta, strict=True):
        m.momentum = mom
        m.num_batches_tracked.zero_()
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def blobs(tmp_path_factory) -> Path:
    """12 training videos (train/), 3 more (small/, for the short runs), 2 validation."""
    root = tmp_path_factory.mktemp("blobs")
    write_frame_set(
        root,
        {"train": (12, TRAIN_FRAMES), "small": (3, TRAIN_FRAMES), "val": (2, VAL_FRAMES)},
    )
    return root


@pytest.fixture(scope="module")
def init_ckpt(blobs, tmp_path_factory) -> Path:
    return calibrated_vinet(blobs, tmp_path_factory.mktemp("init") / "vinet_init.pt")


@pytest.fixture(scope="module")
def trained(blobs, init_ckpt, tmp_path_factory):
    """Two dozen Adam steps from the stand-in pretrained weights (frozen BatchNorm: with
    so few steps, the published S3D momentum of 0.001 would leave the running
    statistics, hence the validation maps, at their starting values)."""
    out = tmp_path_factory.mktemp("run") / "run"
    options = TrainOptions(
        dataset="dhf1k",
        root=str(blobs),
        split="train",
        init=str(init_ckpt),
        epochs=2,
        batch_size=1,
        out=str(out),
        loader_workers=0,
        val_stride=2,
        bn="frozen",
        validate_first=True,
        **FAST,
    )
    steps = []
    result = train(options, on_event=lambda kind, d: steps.append(d) if kind == "step" else None)
    return result, out, steps


# --- learning --------------------------------------------------------------------------


def test_a_few_dozen_steps_lower_the_validation_loss_and_raise_cc(trained):
    result, out, steps = trained
    assert result.status == "done" and result.epochs == 2 and len(steps) == 24
    start, end = result.history[0], result.history[-1]
    assert start.epoch == 0 and [r.epoch for r in result.history] == [0, 1, 2]
    assert end.val_loss < 0.6 * start.val_loss, (start.val_loss, end.val_loss)
    assert end.cc > start.cc + 0.25, (start.cc, end.cc)
    assert end.nss > start.nss and end.sim > start.sim
    assert result.best_epoch == 2 and end.best
    # the log, one JSON object per epoch, and the curves
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2]
    assert log[2]["val_loss"] == pytest.approx(end.val_loss, abs=1e-6)
    assert log[1]["windows"] == 12 and log[0]["train_loss"] is None
    png = cv2.imread(str(out / "curves.png"))
    assert png is not None and png.shape[0] > 100 and png.std() > 10
    info = json.loads((out / "options.json").read_text())
    assert info["steps_per_epoch"] == 12 and info["processes"] == 1 and info["arch"] == "vinet"
    assert not list(out.glob(".*tmp"))  # nothing half-written


def test_checkpoints_have_the_published_keys_and_load_strictly(trained):
    from salcli.models.registry import load_checkpoint

    _, out, _ = trained
    manifest = load_manifest(DATA / "vinet.keys.json")
    for name in ("best.pt", "last.pt"):
        sd = torch.load(out / name, map_location="cpu", weights_only=True)
        assert list(sd) == list(manifest)  # plain state_dict, published names, not folded
        assert all(list(sd[k].shape) == manifest[k] for k in sd)
        _, variant, _ = load_checkpoint(out / name, audio=False)
        assert variant.arch == "vinet"
    state = torch.load(out / "state.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 0 and len(state["history"]) == 3


def test_a_trained_checkpoint_predicts_and_evaluates(trained, blobs, tmp_path):
    _, out, _ = trained
    runner = CliRunner()
    videos = sorted(str(p / "images") for p in (blobs / "DHF1K" / "val").iterdir())
    pred = tmp_path / "pred"
    r = runner.invoke(
        main_app,
        ["predict", *videos, "--weights", str(out / "best.pt"), "--precision", "fp32",
         "--input-size", SIZE, "-o", str(pred), "--quiet"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(list((pred / "val00").glob("*.png"))) == VAL_FRAMES
    scores = tmp_path / "scores.json"
    r = runner.invoke(
        main_app,
        ["evaluate", "--dataset", "dhf1k", "--root", str(blobs), "--predictions", str(pred),
         "--metrics", "cc,nss,sim,kld", "--json", str(scores), "--quiet"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    overall = json.loads(scores.read_text())["overall"]
    assert overall["cc"] > 0.4 and overall["nss"] > 2.0  # the blob is found


# --- resume ------------------------------------------------------------------------------


def _short(blobs, init, out, **kw) -> TrainOptions:
    base = dict(dataset="dhf1k", root=str(blobs), split="small", init=str(init), epochs=2,
                batch_size=2, out=str(out), loader_workers=0, val_stride=8, **FAST)  # fmt: skip
    return TrainOptions(**{**base, **kw})


@pytest.mark.slow
def test_an_interrupted_run_resumed_ends_with_the_same_weights(blobs, init_ckpt, tmp_path):
    whole = train(_short(blobs, init_ckpt, tmp_path / "whole"))
    assert whole.status == "done" and whole.epochs == 2

    def interrupt(kind, data):  # after the first step of epoch 2 (of 2 steps per epoch)
        if kind == "step" and (data["epoch"], data["step"]) == (2, 1):
            raise KeyboardInterrupt

    parts = tmp_path / "parts"
    with pytest.raises(KeyboardInterrupt):
        train(_short(blobs, init_ckpt, parts), on_event=interrupt)
    state = torch.load(parts / "state.pt", map_location="cpu", weights_only=True)
    assert (state["epoch"], state["step"]) == (1, 1)  # 0-based epoch, next step
    # resumed with another number of DataLoader workers: the same windows
    resumed = train(_short(blobs, init_ckpt, parts, resume=True, loader_workers=1))
    assert resumed.status == "done" and resumed.epochs == 2
    a = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    b = torch.load(parts / "last.pt", weights_only=True)
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in whole.history]
    assert [r.val_loss for r in resumed.history] == [r.val_loss for r in whole.history]


def test_resume_refuses_other_settings_and_a_fresh_run_refuses_a_used_folder(
    blobs, init_ckpt, tmp_path
):
    runner = CliRunner()
    app = sub_app(register)
    out = tmp_path / "r"
    common = ["train", "--dataset", "dhf1k", "--root", str(blobs), "--split", "small",
              "--init", str(init_ckpt), "--out", str(out), "--precision", "fp32",
              "--device", "cpu", "--input-size", SIZE, "--workers", "0", "--quiet"]  # fmt: skip
    r = runner.invoke(app, [*common, "--resume"])
    assert r.exit_code == EXIT_USAGE and "nothing to resume" in r.output
    assert f"salcli: error: --resume: no state.pt in {out} (nothing to resume)" in r.output
    out.mkdir()
    (out / "best.pt").write_bytes(b"x")
    r = runner.invoke(app, common)
    assert r.exit_code == EXIT_USAGE and "already holds a run" in r.output
    assert "--resume continues it, or choose another --out" in r.output
    torch.save({"format": 1, "fingerprint": {"lr": 0.5}}, out / "state.pt")
    r = runner.invoke(app, [*common, "--resume"])
    assert r.exit_code == EXIT_USAGE and "--resume" in r.output and "was made with" in r.output


def test_vinet_s_trains_from_a_vinet_backbone_with_its_recipe_loss(blobs, init_ckpt, tmp_path):
    """--model vinet-s: ViNet's backbone as its start, the decoder afresh, KLD - CC; the
    checkpoint holds the published ViNet-S keys and predicts as a ViNet-S file."""
    from salcli.models.registry import load_checkpoint
    from salcli.models.vinet_s import ViNetS

    model, report = initial_model("vinet-s", init_ckpt)
    assert report.lines == (f"S3D backbone: {init_ckpt} (a ViNet checkpoint's)", "decoder: random")
    vinet = torch.load(init_ckpt, weights_only=True)
    ours = model.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in vinet.items() if k.startswith("backbone."))
    result = train(_short(blobs, init_ckpt, tmp_path / "s", model="vinet-s", epochs=1))
    assert result.status == "done" and result.epochs == 1
    info = json.loads((tmp_path / "s" / "options.json").read_text())
    assert info["arch"] == "vinet-s" and info["options"]["loss"] == "kld,cc"
    assert [name for name, _ in info["loss"]] == ["kld", "cc"]
    sd = torch.load(tmp_path / "s" / "best.pt", map_location="cpu", weights_only=True)
    assert list(sd) == list(ViNetS().state_dict())
    family, variant, _ = load_checkpoint(tmp_path / "s" / "best.pt", audio=False)
    assert (family.name, variant.arch) == ("vinet-s", "vinet-s")
    # a ViNet-S file fine-tunes the whole model; AViNet is built on ViNet only
    _, report = initial_model("vinet-s", tmp_path / "s" / "best.pt")
    assert report.lines == (f"all: {tmp_path / 's' / 'best.pt'}",)
    with pytest.raises(OptionError, match="built on ViNet"):
        TrainOptions(dataset="dhf1k", model="vinet-s", audio=True).check()
    with pytest.raises(OptionError, match="choose from vinet, vinet-s"):
        TrainOptions(dataset="dhf1k", model="vinet-a").check()


def test_loader_workers_take_either_flag_and_errors_name_the_first(tmp_path):
    """--loader-workers and --workers are one option (DataLoader workers; not the Ray
    workers of predict and evaluate): the command line names it by its first flag, the
    API by its name."""
    runner = CliRunner()
    app = sub_app(register)
    out = ["--out", str(tmp_path / "o"), "--device", "cpu", "--quiet"]
    for flag in ("--loader-workers", "--workers"):
        r = runner.invoke(app, ["train", "--dataset", "dhf1k", flag, "-1", *out])
        assert r.exit_code == EXIT_USAGE
        assert r.output.strip() == "salcli: error: --loader-workers must be 0 or more"
    r = runner.invoke(main_app, ["train", "--help"], terminal_width=200)
    assert "--loader-workers, --workers" in r.output
    with pytest.raises(OptionError) as err:
        train(TrainOptions(dataset="dhf1k", loader_workers=-1, out=str(tmp_path / "o")))
    assert err.value.option == "loader_workers"
    assert str(err.value) == "loader_workers must be 0 or more"


# --- S3D Kinetics weights ----------------------------------------------------------------


def _torchvision_s3d() -> dict[str, torch.Tensor]:
    """A state_dict with torchvision's S3D key names and shapes (its classifier too)."""
    sd = deterministic_state_dict(load_manifest(DATA / "torchvision_s3d_features.keys.json"))
    sd["classifier.1.weight"] = torch.zeros(400, 1024, 1, 1, 1)
    sd["classifier.1.bias"] = torch.zeros(400)
    return sd


def test_torchvision_s3d_maps_onto_every_backbone_key(tmp_path):
    sd = _torchvision_s3d()
    mapped = s3d_backbone_state(sd, "s3d-d76dad2f.pth")
    own = S3DBackbone().state_dict()
    assert set(mapped) == set(own) and len(mapped) == 462
    # by name, the map agrees with the published fact that both lists share their order
    ours = [k for k in load_manifest(DATA / "vinet.keys.json") if k.startswith("backbone.")]
    theirs = [k for k in sd if k.startswith("features.")]
    for o, t in zip(ours, theirs, strict=True):
        assert torch.equal(mapped[o.removeprefix("backbone.")], sd[t]), (o, t)
    # through --init: the backbone is the file's, the decoder PyTorch's default
    torch.save(sd, tmp_path / "s3d-d76dad2f.pth")
    torch.manual_seed(0)
    model, report = initial_model("vinet", tmp_path / "s3d-d76dad2f.pth")
    got = model.backbone.state_dict()
    assert all(torch.equal(got[k], mapped[k]) for k in got)
    assert any("S3D backbone" in line for line in report.lines)


def test_the_s3d_authors_flat_layout_maps_too_and_gaps_are_named(tmp_path):
    start = {"base1": 0, "base2": 5, "base3": 8, "base4": 14}  # flat Sequential indices
    own = deterministic_state_dict(
        {k: list(v.shape) for k, v in S3DBackbone().state_dict().items()}
    )
    flat = {}
    for k, v in own.items():
        stage, index, *rest = k.split(".")
        flat[".".join(["module.base", str(start[stage] + int(index)), *rest])] = v
    flat["module.fc.0.weight"] = torch.zeros(400, 1024, 1, 1, 1)
    mapped = s3d_backbone_state(flat, "S3D_kinetics400.pt")
    assert set(mapped) == set(own) and all(torch.equal(mapped[k], own[k]) for k in own)
    tv = _torchvision_s3d()
    gap = "features.9.branch2.1.1.0.weight"
    broken = {k: v for k, v in tv.items() if k != gap}
    with pytest.raises(WeightsError, match=gap.replace(".", r"\.") + r" \(ViNet base3\.1\."):
        s3d_backbone_state(broken, "bad.pth")
    extra = {**tv, "features.16.0.weight": torch.zeros(3)}  # a layer ViNet does not have
    with pytest.raises(WeightsError, match=r"features\.16\.0\.weight maps to no ViNet"):
        s3d_backbone_state(extra, "bad.pth")
    wrong = {**tv, gap: torch.zeros(3)}
    with pytest.raises(WeightsError, match="has shape"):
        s3d_backbone_state(wrong, "bad.pth")


# --- several processes ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_cpu_train_an_epoch_and_write_one_checkpoint(blobs, init_ckpt, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1",
           "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "salcli", "train", "--dataset", "dhf1k",
           "--root", str(blobs), "--split", "small", "--init", str(init_ckpt), "--epochs", "1",
           "--batch-size", "2", "--out", str(out), "--precision", "fp32", "--device", "cpu",
           "--loader-workers", "0", "--input-size", SIZE, "--val-stride", "4"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best.pt", "last.pt", "state.pt", "log.jsonl", "curves.png", "options.json"]
    )
    assert proc.stderr.count("epoch 1/1:") == 1  # rank 0 alone reports
    info = json.loads((out / "options.json").read_text())
    assert info["processes"] == 2
    (record,) = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    # 3 videos in global batches of 2: [2 windows] and [1 window] (fewer than the
    # ranks: left out): one step, one window per rank
    assert record["windows"] == 2 and record["val_windows"] == 4
    sd = torch.load(out / "best.pt", weights_only=True)
    assert list(sd) == list(load_manifest(DATA / "vinet.keys.json"))


# --- AViNet's data -----------------------------------------------------------------------


def test_avinet_trains_on_an_audio_visual_split_from_vinet_and_soundnet(tmp_path):
    root = write_av_set(tmp_path / "av", "Coutrot_db2", train=2, test=1, n=34)
    torch.manual_seed(1)
    vinet = tmp_path / "ViNet_DHF1K.pt"
    torch.save(ViNet().state_dict(), vinet)
    sound = tmp_path / "soundnet8_final.pth"
    torch.save(SoundNet8().state_dict(), sound)
    out = tmp_path / "run"
    result = train(
        TrainOptions(
            dataset="coutrot2",
            root=str(root),
            split="2",
            audio=True,
            fusion="concat",
            init=str(vinet),
            soundnet=str(sound),
            epochs=1,
            batch_size=2,
            out=str(out),
            loader_workers=0,
            val_stride=2,
            **FAST,
        )  # fmt: skip
    )
    assert result.status == "done" and result.history[-1].windows == 2
    assert np.isfinite(result.history[-1].val_loss)
    sd = torch.load(out / "last.pt", weights_only=True)
    assert "concat_conv.weight" in sd
    # SoundNet-8 and the visual part start from their files, and one step moved them a bit
    for key, file, name in (("audionet.conv7.weight", sound, "conv7.weight"),
                            ("visual_model.decoder.convtsp1.0.weight", vinet,
                             "decoder.convtsp1.0.weight")):  # fmt: skip
        start = torch.load(file, weights_only=True)[name]
        assert torch.allclose(sd[key], start, atol=1e-3) and not torch.equal(sd[key], start)
    info = json.loads((out / "options.json").read_text())
    assert any(str(sound) in line for line in info["init"])
    assert any(str(vinet) in line for line in info["init"])


# --- the pieces --------------------------------------------------------------------------


def test_kld_loss_and_cc_match_their_definitions():
    rng = np.random.default_rng(0)
    p = rng.random((2, 8, 12)).astype(np.float32) + 0.01
    q = rng.random((2, 8, 12)).astype(np.float32)
    got = kld_loss(torch.from_numpy(p), torch.from_numpy(q)).numpy()
    for i in range(2):
        pp, qq = p[i] / p[i].sum(), q[i] / q[i].sum()
        want = np.sum(qq * np.log(1e-7 + qq / (pp + 1e-7)))
        assert got[i] == pytest.approx(want, rel=1e-5)
        assert cc_score(torch.from_numpy(p), torch.from_numpy(q))[i].item() == pytest.approx(
            np.corrcoef(p[i].ravel(), q[i].ravel())[0, 1], abs=1e-5
        )
    same = kld_loss(torch.from_numpy(q), torch.from_numpy(q))
    assert same.abs().max().item() < 1e-5
    assert parse_loss("kld") == (("kld", 1.0),)
    assert parse_loss("kld, cc=0.5") == (("kld", 1.0), ("cc", 0.5))
    for bad in ("nss", "kld,kld", "cc=-1", ""):
        with pytest.raises(UsageError):
            parse_loss(bad)


def test_windows_are_a_function_of_seed_epoch_and_video_and_skip_empty_targets(tmp_path):
    root = write_frame_set(tmp_path, {"train": (2, TRAIN_FRAMES), "val": (1, VAL_FRAMES)})
    maps = root / "DHF1K" / "train" / "train01" / "maps"
    for i in range(1, TRAIN_FRAMES + 1):  # only frame 36 (0-based 35) keeps a target
        if i != 36:
            cv2.imwrite(str(maps / f"{i:04d}.png"), np.zeros((FRAME_H, FRAME_W), np.uint8))
    sets = training_sets("dhf1k", root)
    full, sparse = sets.train
    draws = [draw_window(full, 0, e)[0] for e in range(20)]
    assert all(31 <= d < TRAIN_FRAMES for d in draws) and len(set(draws)) > 3
    assert draws == [draw_window(full, 0, e)[0] for e in range(20)]  # same, any order
    assert draws != [draw_window(full, 1, e)[0] for e in range(20)]
    assert {draw_window(sparse, 0, e)[0] for e in range(10)} == {35}
    assert sorted(epoch_order(7, 0, 3)) == list(range(7))

    class Dist:  # two ranks share each global batch of 4
        def __init__(self, rank):
            self.rank, self.world, self.enabled = rank, 2, True

    shares = [list(EpochBatches(7, 4, 0, Dist(r))) for r in (0, 1)]
    order = epoch_order(7, 0, 0)
    assert sorted(k for s in shares for b in s for _, k in b) == sorted(order)
    assert [len(b) for b in shares[0]] == [2, 2] and [len(b) for b in shares[1]] == [2, 1]


def test_bad_datasets_get_one_line_before_training(tmp_path):
    runner = CliRunner()
    app = sub_app(register)

    def run(*args):
        out = ["--out", str(tmp_path / "o"), "--init", "none", "--device", "cpu", "--quiet",
               "--precision", "fp32"]  # fmt: skip
        return runner.invoke(app, ["train", *args, *out])

    r = run("--dataset", "dhf1k", "--root", str(tmp_path / "nowhere"))
    assert r.exit_code == 1 and "dataset dhf1k not found" in r.output
    assert len(r.output.strip().splitlines()) == 1
    frames = write_frame_set(tmp_path / "f", {"train": (1, 33)})
    r = run("--dataset", "dhf1k", "--root", str(frames))
    assert r.exit_code == 1 and "no validation split folder" in r.output
    write_frame_set(tmp_path / "f", {"val": (1, 33)}, seed=2)
    for sub in ("maps", "images"):
        (frames / "DHF1K" / "train" / "train00" / sub).rename(tmp_path / f"gone_{sub}")
        r = run("--dataset", "dhf1k", "--root", str(frames))
        assert r.exit_code == 1 and "train00" in r.output, r.output
        (tmp_path / f"gone_{sub}").rename(frames / "DHF1K" / "train" / "train00" / sub)
    r = run("--dataset", "dhf1k", "--root", str(frames), "--audio", "--fusion", "concat")
    assert r.exit_code == EXIT_USAGE and "no soundtrack" in r.output
    # the command line names the option by its flag, the API by its name
    assert "salcli: error: --audio: dhf1k has no soundtrack" in r.output
    with pytest.raises(UsageError, match=r"^audio: dhf1k has no soundtrack"):
        training_sets("dhf1k", frames, audio=True)
    av = write_av_set(tmp_path / "av", "DIEM", train=1, test=1, n=2)  # 3-split list names
    r = run("--dataset", "diem", "--root", str(av))
    assert r.exit_code == 1 and "DIEM_list_train_fps.txt" in r.output
    r = run("--dataset", "dhf1k", "--root", str(frames), "--batch-size", "0")
    assert r.exit_code == EXIT_USAGE
    r = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "dhf1k",
            "--root",
            str(frames),
            "--out",
            str(tmp_path / "w"),
            "--init",
            str(tmp_path / "missing.pt"),
            "--device",
            "cpu",
            "--quiet",
        ],  # fmt: skip
    )
    assert r.exit_code == EXIT_WEIGHTS and "missing.pt" in r.output
    val_map = frames / "DHF1K" / "val" / "val00" / "maps" / "0032.png"
    cv2.imwrite(str(val_map), np.zeros((FRAME_H, FRAME_W), np.uint8))  # its only window
    with pytest.raises(DatasetError, match="no validation window"):
        train(TrainOptions(dataset="dhf1k", root=str(frames), init="none",
                           out=str(tmp_path / "v"), val_stride=100, **FAST))  # fmt: skip
