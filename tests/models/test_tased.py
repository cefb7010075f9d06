"""TASED-Net: the published file loads unchanged and strictly, the network reproduces the
authors' outputs (fp64 strictly, fp32 within the reference section's statistics), the
unpooling gives PyTorch's CPU answer by rule, and the published procedure's pieces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import DATA
from typer.testing import CliRunner

from salcli.cli import app
from salcli.errors import WeightsError
from salcli.inference.overlap import forward_windows
from salcli.models import tased_procedure as TP
from salcli.models.registry import CHECKPOINTS, arch_of, load_checkpoint
from salcli.models.registry import TASED as FAMILY
from salcli.models.tased import (
    SIDE_POOL,
    TASED,
    cast_for_precision,
    fold_batchnorm,
    max_unpool,
    pool_with_indices,
)
from salcli.models.vinet_procedure import clip_indices
from salcli.testing import deterministic_state_dict, load_manifest, randomize_norms

T = 32  # frames per clip
PARAMETERS = 21_260_693  # the reference section's count
CLIP_SEED = 20191117  # the reference section's clip
FP64_TOLERANCE = 1e-5  # the section's strict parity, every pixel
# the section's fp32 bounds on |salcli - expected| over the pixels (argmax near-ties move
# whole rectangles of the map: see tased.section.md, "Tolerance")
FP32_MEDIAN, FP32_MEAN, FP32_MAX, FP32_MIN_CC = 1e-5, 2e-3, 0.1, 0.9999


@pytest.fixture(scope="module")
def published() -> dict[str, torch.Tensor]:
    """The reference checkpoint: the manifest filled by the deterministic rule."""
    return deterministic_state_dict(load_manifest(DATA / "tased.keys.json"))


@pytest.fixture(scope="module")
def reference_clip() -> torch.Tensor:
    rng = np.random.default_rng(CLIP_SEED)
    return torch.from_numpy(rng.standard_normal((1, 3, T, 224, 384)).astype(np.float32))


def _model(sd: dict[str, torch.Tensor]) -> TASED:
    model = TASED().eval()
    model.load_state_dict(sd, strict=True)
    return model


# --- the published format ---------------------------------------------------------------


def test_keys_shapes_and_size_are_the_published_file():
    own = {k: tuple(v.shape) for k, v in TASED().state_dict().items()}
    manifest = {k: tuple(v) for k, v in load_manifest(DATA / "tased.keys.json").items()}
    assert list(own) == list(manifest) and own == manifest  # same keys, order and shapes
    assert sum(p.numel() for p in TASED().parameters()) == PARAMETERS
    # the encoder is ViNet's S3D: its 462 backbone entries without "backbone."
    vinet = load_manifest(DATA / "vinet.keys.json")
    s3d = [(k.removeprefix("backbone."), tuple(v)) for k, v in vinet.items()
           if k.startswith("backbone.")]  # fmt: skip
    assert len(s3d) == 462 and [(k, v) for k, v in manifest.items() if k.startswith("base")] == s3d
    norms = [m for m in TASED().modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(norms) == 85 and {m.eps for m in norms} == {1e-3}


@pytest.mark.parametrize("prefix", ["", "module."])
def test_loaded_unchanged_with_or_without_module(published, tmp_path, prefix):
    path = tmp_path / "TASED_updated.pt"
    torch.save({prefix + k: v for k, v in published.items()}, path)
    family, variant, model = load_checkpoint(path, audio=False)
    assert (family.name, variant.name, type(model)) == ("tased", "tased", TASED)
    for k, v in model.state_dict().items():
        assert torch.equal(v, published[k]), k


def test_only_tased_files_are_taken_for_tased(published):
    assert arch_of(published) == "tased"
    vinet = deterministic_state_dict(load_manifest(DATA / "vinet.keys.json"))
    assert arch_of(vinet) == "vinet" and FAMILY.holds(vinet) is None
    # the encoder alone (an S3D file with ViNet's names) is not a TASED-Net
    encoder = {k: v for k, v in published.items() if k.startswith("base")}
    assert FAMILY.holds(encoder) is None


def test_missing_counters_load_but_any_other_gap_is_an_error(published, tmp_path):
    no_counters = {k: v for k, v in published.items() if not k.endswith("num_batches_tracked")}
    torch.save(no_counters, tmp_path / "counters.pt")
    assert type(load_checkpoint(tmp_path / "counters.pt", audio=False)[2]) is TASED
    missing = dict(published)
    del missing["convtsp2.1.running_var"]
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(WeightsError, match=r"1 missing \(e\.g\. convtsp2\.1\.running_var\)"):
        load_checkpoint(tmp_path / "missing.pt", audio=False)
    extra = {**published, "convtsp5.weight": torch.zeros(1)}
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(WeightsError, match=r"1 unexpected \(e\.g\. convtsp5\.weight\)"):
        load_checkpoint(tmp_path / "extra.pt", audio=False)
    wrong = {**published, "convtsp4.13.bias": torch.zeros(2)}
    torch.save(wrong, tmp_path / "shape.pt")
    with pytest.raises(WeightsError, match=r"convtsp4\.13\.bias has shape \(2,\)"):
        load_checkpoint(tmp_path / "shape.pt", audio=False)


def test_declared_with_its_source_and_licence():
    (entry,) = [c for c in CHECKPOINTS if c.arch == "tased"]
    assert entry.file == "TASED_updated.pt" and entry.trained_on == "trained on DHF1K"
    assert entry.licence.startswith("MIT") and "kylemin/TASED-Net" in entry.where
    assert FAMILY.variants[0].default_file == "TASED_updated.pt"
    r = CliRunner().invoke(app, ["weights", "list", "--json"])
    assert r.exit_code == 0, r.output
    listed = {e["name"]: e for e in map(json.loads, r.stdout.splitlines())}
    assert listed["tased-dhf1k"]["file"] == "TASED_updated.pt"


# --- the authors' outputs --------------------------------------------------------------


def test_fp64_output_matches_the_authors(published, reference_clip):
    """The strict parity test: every pixel within 1e-5 of the authors' fp64 output."""
    model = _model(published).double()
    with torch.inference_mode():
        got = model(reference_clip.double()).numpy()
    expected = np.load(DATA / "tased_fp64.expected.npy")
    assert got.shape == expected.shape == (1, 224, 384)
    assert np.abs(got - expected).max() <= FP64_TOLERANCE


@pytest.mark.parametrize("folded", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_fp32_output_within_the_sections_bounds(published, reference_clip, folded):
    torch.set_num_threads(2)
    model = _model(published)
    if folded:  # as predict runs a loaded file
        model = fold_batchnorm(model)
    with torch.inference_mode():
        got = model(reference_clip).numpy().astype(np.float64)
    expected = np.load(DATA / "tased.expected.npy").astype(np.float64)
    diff = np.abs(got - expected)
    cc = np.corrcoef(got.ravel(), expected.ravel())[0, 1]
    assert np.median(diff) <= FP32_MEDIAN and diff.mean() <= FP32_MEAN, diff.mean()
    assert diff.max() <= FP32_MAX and cc >= FP32_MIN_CC, (diff.max(), cc)


# --- the unpooling: PyTorch's CPU answer, by rule ---------------------------------------


def test_ties_go_to_the_first_element_of_the_window_and_padding_never_wins():
    # one (1, 3, 3) window of stride 2, padding 1: output (0, 0) covers rows and columns
    # -1 ... 1, of which padding is -1; every real element ties at 0
    x = torch.zeros(1, 1, 1, 4, 4)
    values, indices = pool_with_indices(x, SIDE_POOL)
    assert indices[0, 0, 0].tolist() == [[0, 1], [4, 5]]  # the first real element of each
    x[0, 0, 0, 1, 1] = x[0, 0, 0, 0, 1] = 2.0  # a tie at the maximum: raster order decides
    assert pool_with_indices(x, SIDE_POOL)[1][0, 0, 0, 0, 0].item() == 1
    x = -torch.ones(1, 1, 1, 4, 4)  # all negative: still no padding (-inf) chosen
    assert pool_with_indices(x, SIDE_POOL)[0].max().item() == -1.0


def test_colliding_writes_keep_the_last_pooled_position():
    # 3x3 windows of stride 2 overlap: element (1, 1) is in all four windows of a 4x4
    x = torch.zeros(1, 1, 1, 4, 4)
    x[0, 0, 0, 1, 1] = 5.0
    values, indices = pool_with_indices(x, SIDE_POOL)
    assert (indices == 5).all()  # every pooled position points at element (1, 1)
    values = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 2, 2)
    out = max_unpool(values, indices, (1, 4, 4))
    want = torch.zeros(1, 1, 1, 4, 4)
    want[0, 0, 0, 1, 1] = 4.0  # the last pooled position, in raster order, wins
    assert torch.equal(out, want)
    # per (batch, channel): channels do not see each other's positions
    two = max_unpool(torch.cat([values, -values], 1), torch.cat([indices, indices], 1), (1, 4, 4))
    assert two[0, 0, 0, 1, 1] == 4.0 and two[0, 1, 0, 1, 1] == -4.0


@pytest.mark.parametrize("pool,size", [(SIDE_POOL, (4, 10, 14)),
                                       (((1, 2, 2), (1, 2, 2), (0, 0, 0)), (3, 6, 8))])  # fmt: skip
def test_unpooling_equals_pytorchs_cpu_kernel_with_its_gradient(pool, size):
    """ReLU'd values (a third of the windows all zero: ties) through PyTorch's CPU
    ``max_unpool3d`` and salcli's: the same output, and the same gradient."""
    g = torch.Generator().manual_seed(3)
    x = F.relu(torch.randn(2, 5, *size, generator=g) - 0.5)
    values, indices = pool_with_indices(x, pool)
    kernel, stride, padding = pool
    v1 = values.clone().requires_grad_()
    v2 = values.clone().requires_grad_()
    theirs = F.max_unpool3d(v1, indices, kernel, stride, padding, output_size=size)
    ours = max_unpool(v2, indices, size)
    assert torch.equal(ours, theirs)
    rows = indices.reshape(-1, indices[0, 0].numel())  # one row per (batch, channel)
    collided = any(len(set(r.tolist())) < len(r) for r in rows)
    assert collided == (pool is SIDE_POOL)  # only the overlapping windows collide
    weight = torch.randn(ours.shape, generator=g)
    (theirs * weight).sum().backward()
    (ours * weight).sum().backward()
    assert torch.equal(v1.grad, v2.grad)


# --- the published procedure --------------------------------------------------------------


def test_frames_are_resized_without_antialiasing_into_minus_one_to_one():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(96, 160, 3), dtype=np.uint8)
    rgb[0, 0] = (0, 255, 128)
    x = TP.frame_to_tensor(rgb, (96, 160))  # no resize: the values alone
    assert x.shape == (3, 96, 160) and x[:, 0, 0].tolist() == pytest.approx([-1, 1, 1 / 255])
    # shrunk: plain bilinear (half-pixel centres, no antialiasing) to +-1 grey level
    small = TP.frame_to_tensor(rgb, (32, 64))
    plain = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), size=(32, 64),
                          mode="bilinear", align_corners=False, antialias=False)  # fmt: skip
    levels = (small + 1) * 255 / 2
    assert (levels - plain[0].round()).abs().max() <= 1.0 + 1e-4
    smooth = F.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None].float(), size=(32, 64),
                           mode="bilinear", align_corners=False, antialias=True)  # fmt: skip
    assert (levels - smooth[0].round()).abs().max() > 10  # an antialiased resize is not it


def _symmetric_gaussian(m: np.ndarray, sigma: float, radius: int) -> np.ndarray:
    """A separable Gaussian built by hand: taps exp(-x^2 / 2 sigma^2) normalized, the
    border mirrored with its edge repeated (numpy's "symmetric")."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(m, radius, mode="symmetric")
    rows = sum(taps[i] * padded[i : i + m.shape[0], :] for i in range(2 * radius + 1))
    return sum(taps[i] * rows[:, i : i + m.shape[1]] for i in range(2 * radius + 1))


def test_maps_are_floored_blurred_at_the_model_size_and_divided_by_the_max():
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.2, 0.8, size=(64, 96)).astype(np.float32)
    floored = np.floor(raw * np.float32(255)).astype(np.float64) / 255  # int(255 s) / 255.
    want = _symmetric_gaussian(floored, 7.0, 28)
    want /= want.max()
    got = TP.published_map(raw)
    assert np.abs(got - want).max() < 1e-12 and got.max() == 1.0 and got.min() > 0
    # two values within one 1/255 step are one level after the flooring: a flat map
    step = np.where(rng.random((64, 96)) < 0.5, 100.2, 100.9).astype(np.float32) / 255
    assert np.ptp(TP.published_map(step)) < 1e-12
    # then resized to the frame (bilinear), values kept in [0, 1]
    frame = TP.postprocess(raw, 120, 200)
    assert frame.shape == (120, 200) and frame.dtype == np.float32
    assert 0.0 < frame.min() and frame.max() <= 1.0 + 1e-6
    assert np.all(TP.postprocess(np.zeros((64, 96), np.float32), 10, 12) == 0)


@pytest.mark.parametrize("n", [63, 80, None])
def test_reference_clips_are_the_reversed_future_clip(n):
    for t in (0, 5, 30):
        assert clip_indices(t, n, T, "reference") == list(range(t + T - 1, t - 1, -1))
    assert clip_indices(31, n, T, "reference") == list(range(0, 32))
    assert FAMILY.clips("reference").plan(40, n)[0] == list(range(9, 41))
    assert FAMILY.published_unmapped == 0


@pytest.mark.parametrize("n", [1, 10, 62])
def test_short_videos_get_a_map_for_every_frame(n):
    """Under 63 frames their script gives no maps; salcli's reference policy repeats the
    first frame at the front up to 63 frames: every real frame gets one clip of real
    frames (the repeats are copies of frame 0)."""
    schedule = FAMILY.clips("reference")
    for t in range(n):
        indices = schedule.plan(t, n)[0]
        assert len(indices) == T and max(indices) < n and indices[-1] == t
        assert FAMILY.clips("mirror").plan(t, n)[0][-1] == t


# --- the engine's rewrites ---------------------------------------------------------------


@pytest.mark.slow
def test_overlap_reuse_gives_the_per_clip_maps_in_fp64():
    """In fp64 no argmax near-tie flips: the shared backbone work is the same numbers."""
    torch.manual_seed(0)
    model = fold_batchnorm(randomize_norms(TASED())).double()
    frames = torch.randn(1, 3, 3 + T - 1, 64, 96, dtype=torch.float64)  # 3 clips
    clips = torch.cat([frames[:, :, j : j + T] for j in range(3)])
    with torch.inference_mode():
        want, got = model(clips), forward_windows(model, frames, T, chunk=2)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)


@pytest.mark.slow
def test_bf16_runs_with_its_weights_cast_once(published):
    model = cast_for_precision(fold_batchnorm(_model(published)), torch.bfloat16)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose3d)]
    assert convs[0].weight.dtype == torch.bfloat16 and convs[-1].weight.dtype == torch.float32
    clip = torch.randn(2, 3, T, 64, 96)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = model(clip)
    with torch.inference_mode():
        want = _model(published)(clip)
    assert got.dtype == torch.float32 and got.shape == (2, 64, 96)
    assert np.corrcoef(got.numpy().ravel(), want.numpy().ravel())[0, 1] > 0.9


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_unpooling_and_model_give_the_cpu_answer(published, reference_clip):
    """CUDA's own max_unpool3d leaves colliding writes in no fixed order; salcli's
    max-reduction gives the CPU kernel's answer there too (fp64: no argmax near-tie
    flips between the devices)."""
    g = torch.Generator().manual_seed(4)
    x = F.relu(torch.randn(2, 8, 4, 28, 48, generator=g, dtype=torch.float64) - 0.5)
    values, indices = pool_with_indices(x, SIDE_POOL)
    cpu = F.max_unpool3d(values, indices, (1, 3, 3), (1, 2, 2), (0, 1, 1), output_size=x.shape[2:])
    gpu = max_unpool(values.cuda(), indices.cuda(), x.shape[2:])
    assert torch.equal(gpu.cpu(), cpu)
    model = _model(published).double().cuda()
    with torch.inference_mode():
        got = model(reference_clip.double().cuda()).cpu().numpy()
    assert np.abs(got - np.load(DATA / "tased_fp64.expected.npy")).max() <= FP64_TOLERANCE
