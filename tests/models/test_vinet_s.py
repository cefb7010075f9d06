"""ViNet-S: the published files load unchanged, the network reproduces the authors' logits,
and it runs through predict, overlap reuse and the registry as a ViNet does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import DATA, SMALL_INPUT, write_video
from helpers import VINET_PUBLISHED_TOLERANCE as TOL
from typer.testing import CliRunner

import salcli.inference.predictor as predictor_module
from salcli.cli import app
from salcli.errors import EXIT_WEIGHTS
from salcli.inference.overlap import forward_windows
from salcli.inference.predictor import Predictor
from salcli.models.registry import (
    CHECKPOINTS,
    VINET_S,
    arch_of,
    build_model,
    load_checkpoint,
    model_family,
)
from salcli.models.vinet import ViNet, fold_batchnorm
from salcli.models.vinet_procedure import LastFrameClips, clip_indices
from salcli.models.vinet_s import ROOT_GROUPS, ViNetS
from salcli.testing import deterministic_state_dict, load_manifest, randomize_norms

T = 32  # frames per clip
PARAMETERS = 9_500_737  # the published count (36.24 MB in fp32)
CLIP_SEED = 20250406  # the reference section's clip_s


@pytest.fixture(scope="module")
def published() -> dict[str, torch.Tensor]:
    """The reference checkpoint: the manifest filled by the deterministic rule."""
    return deterministic_state_dict(load_manifest(DATA / "vinet_s.keys.json"))


@pytest.fixture(scope="module")
def checkpoint(published, tmp_path_factory):
    path = tmp_path_factory.mktemp("vinet_s") / "DHF1K_vinet_s_rootgrouped_32_bs8_kld_cc.pt"
    torch.save(published, path)
    return path


def _logits(model: torch.nn.Module, clip: torch.Tensor) -> np.ndarray:
    """The input of the final sigmoid, (B, H, W), as the reference stores it."""
    seen = []
    hook = model.decoder.convtsp4[-2].register_forward_hook(lambda m, i, o: seen.append(o))
    try:
        with torch.inference_mode():
            model(clip)
    finally:
        hook.remove()
    return seen[0].reshape(clip.shape[0], *clip.shape[-2:]).numpy()


# --- the published format ---------------------------------------------------------------


def test_keys_shapes_and_size_are_the_published_files():
    own = {k: tuple(v.shape) for k, v in ViNetS().state_dict().items()}
    manifest = {k: tuple(v) for k, v in load_manifest(DATA / "vinet_s.keys.json").items()}
    assert list(own) == list(manifest) and own == manifest  # same keys, order and shapes
    assert sum(p.numel() for p in ViNetS().parameters()) == PARAMETERS
    # the backbone is ViNet's: the same 462 entries, in the same order
    vinet = load_manifest(DATA / "vinet.keys.json")
    ours = [(k, v) for k, v in manifest.items() if k.startswith("backbone.")]
    assert len(ours) == 462 and ours == [(k, tuple(v)) for k, v in vinet.items()
                                         if k.startswith("backbone.")]  # fmt: skip
    groups = [m.groups for m in ViNetS().decoder.modules() if isinstance(m, torch.nn.Conv3d)]
    assert groups == [*ROOT_GROUPS, 1, 1]


def test_detected_apart_from_vinet_and_loaded_with_a_module_prefix(published, tmp_path):
    assert arch_of(published) == "vinet-s"
    assert arch_of(ViNet().state_dict()) == "vinet"
    wrapped = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in published.items()}, wrapped)
    family, variant, model = load_checkpoint(wrapped, audio=False)
    assert (family.name, variant.name, type(model)) == ("vinet-s", "vinet-s", ViNetS)
    assert model_family(ViNetS()) == (VINET_S, VINET_S.variants[0])


def test_every_published_file_is_declared_with_its_licence():
    mine = [c for c in CHECKPOINTS if c.arch == "vinet-s"]
    assert [c.file for c in mine] == [
        f"{prefix}_vinet_s_rootgrouped_32_bs8_kld_cc.pt"
        for prefix in ("DHF1K", "Hollywood2", "UCF", "ETMD_av", "mvva")
    ]
    assert all("CC BY-NC-SA 4.0" in c.licence for c in mine)
    r = CliRunner().invoke(app, ["weights", "list", "--json"])
    assert r.exit_code == 0, r.output
    listed = {e["name"]: e for e in map(json.loads, r.stdout.splitlines())}
    entry = listed["vinet-s-dhf1k"]
    assert entry["trained_on"] == "trained on DHF1K" and "non-commercial" in entry["licence"]


# --- the authors' outputs --------------------------------------------------------------


@pytest.mark.parametrize("folded", [False, True])
def test_logits_match_the_authors(published, folded):
    model = ViNetS().eval()
    model.load_state_dict(published, strict=True)
    if folded:
        model = fold_batchnorm(model)
    rng = np.random.default_rng(CLIP_SEED)
    clip = torch.from_numpy(rng.standard_normal((1, 3, T, 224, 384)).astype(np.float32))
    got = _logits(model, clip)
    expected = np.load(DATA / "vinet_s.expected.npy")
    assert got.shape == expected.shape == (1, 224, 384)
    err = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
    assert err.max() <= TOL, err.max()


# --- the published procedure: causal clips -----------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 31, 32, 70, None])
def test_the_reference_clip_of_frame_t_is_its_past_clamped_at_frame_0(n):
    last = 69 if n is None else n - 1
    for t in sorted({0, min(1, last), min(30, last), min(31, last), last}):
        want = [0] * max(0, T - 1 - t) + list(range(max(0, t - T + 1), t + 1))
        assert clip_indices(t, n, T, "reference", "clamped") == want
    clips = LastFrameClips(T, "reference", "clamped")
    assert clips.lookahead(0) == 0 and clips.keep_behind == T - 1  # causal: no look-ahead
    assert VINET_S.clips("reference") == clips
    with pytest.raises(ValueError, match="reference rule"):
        clip_indices(0, 5, T, "reference", "flipped")


# --- as a ViNet: overlap reuse, the pipeline -------------------------------------------


def test_overlap_reuse_gives_the_per_clip_maps():
    torch.manual_seed(0)
    model = fold_batchnorm(randomize_norms(ViNetS()))
    frames = torch.randn(1, 3, 4 + T - 1, 64, 96)  # (1, 3, L, H, W): 4 clips
    clips = torch.cat([frames[:, :, j : j + T] for j in range(4)])  # (4, 3, T, H, W)
    with torch.inference_mode():
        want, got = model(clips), forward_windows(model, frames, T, chunk=3)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


def _maps(checkpoint, video, **kw):
    quiet = {"on_warning": lambda line: None}  # the licence notice
    return Predictor(
        checkpoint, device="cpu", precision="fp32", input_size=SMALL_INPUT, **quiet, **kw
    ).predict(video)


def test_predict_reference_is_the_causal_clip_by_hand(checkpoint, published, make_video):
    """Frame t's map is ViNet-S on frames t-31 ... t clamped at 0, post-processed as
    ViNet's; the first 31 maps differ from the mirror warm-up's, the rest do not."""
    from salcli.media.decode import open_video
    from salcli.models.vinet_procedure import frame_to_tensor, postprocess

    video = make_video(n_frames=33)
    with open_video(video) as reader:
        frames = [f.rgb for f in reader]
    model = ViNetS().eval()
    model.load_state_dict(published)
    x = torch.stack([frame_to_tensor(f, SMALL_INPUT) for f in frames], dim=1)  # (3, N, h, w)
    maps = []
    for t in (0, 7, 32):
        clip = x[:, clip_indices(t, len(frames), T, "reference", "clamped")][None]
        with torch.inference_mode():
            maps.append(postprocess(model(clip)[0].numpy(), *frames[0].shape[:2]))
    ours = _maps(checkpoint, video, warmup="reference", batch_size=4)
    assert ours.shape == (33, *frames[0].shape[:2])
    for got, t in zip(maps, (0, 7, 32), strict=True):
        assert np.abs(ours[t] - got).max() < 1e-4
    mirror = _maps(checkpoint, video, warmup="mirror", batch_size=4)
    assert np.abs(mirror[31:] - ours[31:]).max() < 1e-5
    assert np.abs(mirror[:31] - ours[:31]).max(axis=(1, 2)).min() > 1e-3


def test_cli_says_the_licence_once_and_writes_maps(checkpoint, monkeypatch, tmp_path):
    monkeypatch.setattr(predictor_module, "_LICENCES_SAID", set())
    videos = [write_video(tmp_path / f"v{i}.mp4", n_frames=4) for i in range(2)]
    out = tmp_path / "maps"
    args = ["predict", *map(str, videos), "--weights", str(checkpoint), "--precision", "fp32",
            "--input-size", f"{SMALL_INPUT[0]}x{SMALL_INPUT[1]}", "-o", str(out),
            "--format", "png,h5"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    notices = [line for line in r.stderr.splitlines() if "CC BY-NC-SA 4.0" in line]
    assert len(notices) == 1 and "non-commercial" in notices[0]
    for v in ("v0", "v1"):
        assert len(list((out / v).glob("*.png"))) == 4 and (out / f"{v}.h5").is_file()
    # the same process says it once: a second run is quiet about it
    r = CliRunner().invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0 and "CC BY-NC-SA" not in r.stderr


def test_a_vinet_s_file_is_not_taken_for_an_audio_model(checkpoint, tmp_path):
    video = write_video(tmp_path / "v.mp4", n_frames=2)
    r = CliRunner().invoke(app, ["predict", str(video), "--weights", str(checkpoint), "--audio",
                                 "-o", str(tmp_path / "o")])  # fmt: skip
    assert r.exit_code == EXIT_WEIGHTS
    assert "ViNet-S is visual only" in r.stderr and "Traceback" not in r.output


def test_build_model_and_the_training_default_loss():
    from salcli.training.options import TrainOptions

    assert type(build_model("vinet-s")) is ViNetS
    assert TrainOptions(dataset="dhf1k", model="vinet-s").loss == "kld,cc"
    assert TrainOptions(dataset="dhf1k").loss == "kld"
    assert TrainOptions(dataset="dhf1k", model="vinet-s", loss="kld").loss == "kld"
