"""Shared fixtures: tiny media files encoded with PyAV, small models and checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import DATA, use_fast_model, write_video

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _no_weights_but_the_tests_own(tmp_path_factory, monkeypatch):
    """No test sees weights it did not put there itself: the cache (``$SALCLI_WEIGHTS``) is
    an empty folder of its own, no extra registry is merged in, and the checkout's
    ``weights/`` folder, where a developer may keep the published files, is an empty one.
    Each test finds what it files and nothing an earlier test, or the user, left."""
    import salcli.weights.cache

    monkeypatch.setenv("SALCLI_WEIGHTS", str(tmp_path_factory.mktemp("cache") / "weights"))
    monkeypatch.delenv("SALCLI_REGISTRY", raising=False)
    checkout = tmp_path_factory.mktemp("checkout") / "weights"
    monkeypatch.setattr(salcli.weights.cache, "repo_weights_dir", lambda: checkout)


@pytest.fixture(autouse=True)
def _auto_precision_is_fp32_on_every_cpu(monkeypatch):
    """``precision="auto"`` picks bf16 on CPUs with native bf16 and fp32 elsewhere, so a
    test that names no precision would take another path on another CPU. Here "auto"
    means fp32 on every CPU; tests of a precision name it (bf16 and fp16 run on any CPU,
    emulated where the CPU lacks them), and tests of "auto" itself patch this again."""
    import salcli.inference.hardware

    monkeypatch.setattr(salcli.inference.hardware, "cpu_has_native_bf16", lambda: False)


@pytest.fixture
def make_video(tmp_path):
    def make(name: str = "clip.mp4", **kw) -> Path:
        return write_video(tmp_path / name, **kw)

    return make


@pytest.fixture(scope="session")
def vinet_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised ViNet state_dict saved as the published files are."""
    from salcli.models.vinet import ViNet

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "ViNet_DHF1K.pt"
    torch.save(ViNet().state_dict(), path)
    return path


@pytest.fixture(scope="session")
def avinet_checkpoints(tmp_path_factory) -> dict[str, Path]:
    from salcli.models.vinet import AViNet

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("avweights")
    paths = {}
    for fusion in ("bilinear", "transformer", "concat"):
        paths[fusion] = folder / f"AViNet_{fusion}.pt"
        torch.save(AViNet(fusion).state_dict(), paths[fusion])
    return paths


@pytest.fixture(scope="session")
def stavis_checkpoint(tmp_path_factory) -> Path:
    """A STAViS file as published (the training snapshot), with the reference README's
    tamed fill (real video keeps its logits moderate). Both variants load it."""
    from salcli.testing import load_manifest, stavis_snapshot

    path = tmp_path_factory.mktemp("stavis") / "audiovisual_split1_save_60.pth"
    manifest = load_manifest(DATA / "stavis_audiovisual.keys.json")
    torch.save(stavis_snapshot(manifest, tamed=True), path)
    return path


@pytest.fixture
def fast_model(monkeypatch) -> None:
    """ViNet's forward pass replaced by a cheap stand-in (helpers.use_fast_model)."""
    use_fast_model(monkeypatch)
