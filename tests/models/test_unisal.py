"""UNISAL: the published files load unchanged and strictly, the network reproduces the
authors' log-probabilities and hidden state, and the procedure's rules (input size,
resize, interleaved sequences, maps) are the authors'."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import DATA
from typer.testing import CliRunner

from salcli.cli import app
from salcli.inference.recurrence import InterleavedStates
from salcli.models import unisal_procedure as proc
from salcli.models.registry import CHECKPOINTS, UNISAL, arch_of, load_checkpoint, model_family
from salcli.models.unisal import Unisal, log_probabilities
from salcli.testing import deterministic_state_dict, load_manifest

PARAMETERS = 3_714_872  # the reference section's count
VIDEO_SEED, IMAGE_SEED = 20200823, 20200824  # the reference section's inputs
VIDEO_TARGET, IMAGE_TARGET = (144, 256), (360, 480)
# the reference section's tolerances: |d| <= 1e-4 * max(1, |expected|) on the
# log-probabilities (fp32 vs fp64 of the authors' model: 8.8e-6 in that measure), and
# 1e-3 absolute on the state (fp32 vs fp64: 1.25e-4)
LOGP_TOLERANCE = 1e-4
HIDDEN_TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def published() -> dict[str, torch.Tensor]:
    return deterministic_state_dict(load_manifest(DATA / "unisal.keys.json"))


@pytest.fixture(scope="module")
def model(published) -> Unisal:
    m = Unisal().eval()
    m.load_state_dict(published, strict=True)
    return m


def _relative(got: np.ndarray, expected: np.ndarray) -> float:
    return float((np.abs(got - expected) / np.maximum(1.0, np.abs(expected))).max())


def _video() -> torch.Tensor:
    rng = np.random.default_rng(VIDEO_SEED)
    return torch.from_numpy(rng.standard_normal((1, 6, 3, 224, 384)).astype(np.float32))[0]


# --- the published format ---------------------------------------------------------------


def test_keys_shapes_order_and_size_are_the_published_files():
    own = {k: list(v.shape) for k, v in Unisal().state_dict().items()}
    manifest = load_manifest(DATA / "unisal.keys.json")
    assert list(own) == list(manifest) and own == manifest
    assert sum(p.numel() for p in Unisal().parameters()) == PARAMETERS


def test_loaded_strictly_with_or_without_a_module_prefix(published, tmp_path):
    assert arch_of(published) == "unisal"
    for name, sd in (("weights_best.pth", published),
                     ("dp.pth", {f"module.{k}": v for k, v in published.items()})):  # fmt: skip
        torch.save(sd, tmp_path / name)
        family, variant, m = load_checkpoint(tmp_path / name, audio=False)
        assert (family, type(m)) == (UNISAL, Unisal)
        assert torch.equal(m.smoothing_salicon.weight, published["smoothing_salicon.weight"])
    assert model_family(Unisal()) == (UNISAL, UNISAL.variants[0])
    missing = dict(published)
    missing.pop("rnn.cell_list.0.drop_mask_1")
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(Exception, match="drop_mask_1"):
        load_checkpoint(tmp_path / "missing.pth", audio=False)


def test_both_published_files_are_declared_with_their_licence():
    mine = {c.file: c for c in CHECKPOINTS if c.arch == "unisal"}
    assert set(mine) == {"weights_best.pth", "weights_ft_mit1003.pth"}
    assert all("Apache-2.0" in c.licence and "rdroste/unisal" in c.where for c in mine.values())
    assert "MIT1003" in mine["weights_ft_mit1003.pth"].trained_on
    r = CliRunner().invoke(app, ["weights", "list", "--json"])
    assert r.exit_code == 0, r.output
    listed = {e["name"]: e for e in map(json.loads, r.stdout.splitlines())}
    assert listed["unisal"]["file"] == "weights_best.pth"
    assert listed["unisal-mit1003"]["file"] == "weights_ft_mit1003.pth"


def test_weights_import_files_both_under_their_entries(published, tmp_path):
    """The two files have the same keys: each is filed under its own name, not the
    default's (the authors' code falls back to weights_best.pth silently)."""
    runner = CliRunner()
    for name in ("weights_best.pth", "weights_ft_mit1003.pth"):
        torch.save(published, tmp_path / name)
        r = runner.invoke(app, ["weights", "import", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["weights", "list", "--json"])
    listed = {e["name"]: e for e in map(json.loads, r.stdout.splitlines())}
    assert listed["unisal"]["cached"] and listed["unisal-mit1003"]["cached"]


# --- the authors' outputs --------------------------------------------------------------


def test_video_log_probabilities_and_state_match_the_authors(model):
    """Six steps of one sequence (DHF1K) from the zero state, at 224x384, resized in the
    model to 144x256."""
    frames = _video()
    model.set_domain("DHF1K")
    with torch.inference_mode():
        logits, states = model(frames, model.zero_states(1, (224, 384), frames), [0] * 6)
        got = log_probabilities(logits, VIDEO_TARGET).numpy()
    expected = np.load(DATA / "unisal_video.expected.npy")[0, :, 0]  # (6, 144, 256)
    assert got.shape == expected.shape
    assert _relative(got, expected) <= LOGP_TOLERANCE
    hidden = np.load(DATA / "unisal_video.hidden.npy")  # (1, 256, 7, 12)
    assert np.abs(states.numpy() - hidden).max() <= HIDDEN_TOLERANCE


def test_image_log_probabilities_match_the_authors(model):
    """SALICON: the recurrence bypassed, 288x384 resized in the model to 360x480."""
    rng = np.random.default_rng(IMAGE_SEED)
    image = torch.from_numpy(rng.standard_normal((1, 1, 3, 288, 384)).astype(np.float32))[0]
    model.set_domain("salicon")
    try:
        with torch.inference_mode():
            logits, _ = model(image, model.zero_states(1, (288, 384), image), [0])
            got = log_probabilities(logits, IMAGE_TARGET).numpy()
    finally:
        model.set_domain("DHF1K")
    expected = np.load(DATA / "unisal_image.expected.npy")[0, :, 0]  # (1, 360, 480)
    assert _relative(got, expected) <= LOGP_TOLERANCE


def test_interleaved_batches_are_the_sequences_run_alone(model):
    """Frames 0-5 as two interleaved sequences (P = 2), in batches of 3 through the
    engine's states, equal each sequence run frame by frame on its own: the recurrence
    steps per sequence, frames of one batch included, and states carry across calls."""
    frames = _video()[:, :, :64, :96]  # (6, 3, 64, 96): small
    states = InterleavedStates(2)

    def zeros(n: int) -> torch.Tensor:
        return model.zero_states(n, (64, 96), frames)

    batched = []
    with torch.inference_mode():
        for lo in (0, 3):
            idx = list(range(lo, lo + 3))
            s, slots = states.prepare(idx, zeros)
            out, s = model(frames[lo : lo + 3], s, slots)
            states.update(s, idx)
            batched.append(out)
        alone = {}
        for seq in (0, 1):
            h = zeros(1)
            for t in range(seq, 6, 2):
                out, h = model(frames[t : t + 1], h, [0])
                alone[t] = out[0]
    got = torch.cat(batched)
    for t in range(6):
        assert torch.allclose(got[t], alone[t], atol=1e-4, rtol=1e-5), t
    # a frame out of order is refused, and frame 0 starts a new video
    with pytest.raises(RuntimeError, match="every frame in order"):
        states.prepare([7], zeros)
    s, slots = states.prepare([0, 1], zeros)
    assert slots == [0, 1] and not s.any()


# --- the procedure ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "domain", "size"),
    [
        ((360, 640), "DHF1K", (224, 384)),
        ((720, 1280), "DHF1K", (256, 416)),
        ((270, 480), "DHF1K", (256, 416)),
        ((360, 640), "SALICON", (256, 416)),
        ((480, 640), "SALICON", (288, 384)),
        ((256, 384), "DHF1K", (288, 416)),
        ((576, 720), "DHF1K", (320, 384)),
        ((500, 500), "DHF1K", (320, 320)),
        ((1920, 1080), "DHF1K", (416, 256)),
        ((360, 640), "Hollywood", (224, 416)),
        ((100, 100), "UCFSports", (256, 384)),
    ],
)
def test_input_size_rule_is_the_authors(frame, domain, size):
    assert proc.input_size(*frame, domain) == size


def test_frames_are_resized_by_pillow_lanczos_in_8_bits():
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)
    got = proc.frame_to_tensor(rgb, (64, 96))
    resized = np.asarray(Image.fromarray(rgb).resize((96, 64), Image.Resampling.LANCZOS))
    mean = np.array(proc.IMAGENET_MEAN, np.float32)[:, None, None]
    std = np.array(proc.IMAGENET_STD, np.float32)[:, None, None]
    expected = (resized.transpose(2, 0, 1) / np.float32(255) - mean) / std
    assert got.shape == (3, 64, 96)
    assert np.abs(got.numpy() - expected).max() < 1e-6


def test_maps_are_exp_of_log_probabilities_over_their_maximum():
    rng = np.random.default_rng(1)
    logits = (4 * rng.standard_normal((32, 48))).astype(np.float32)
    got = proc.postprocess(logits, 45, 80)
    logp = log_probabilities(torch.from_numpy(logits)[None], (45, 80))[0].numpy()
    expected = np.exp(logp) / np.exp(logp).max()
    assert got.shape == (45, 80) and got.dtype == np.float32
    assert np.abs(got - expected).max() < 1e-5 and got.max() == 1.0


def test_sequences_of_each_domain():
    assert [proc.sequences(d) for d in ("DHF1K", "Hollywood", "UCFSports", "SALICON")] == [
        5, 4, 4, 1,
    ]  # fmt: skip
