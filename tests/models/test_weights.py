"""Published-format checkpoints load unchanged through the model families; bad ones give
one clear line."""

from __future__ import annotations

import pytest
import torch

from salcli.errors import WeightsError
from salcli.models.checkpoints import read_checkpoint
from salcli.models.registry import arch_of, describe, label, load_checkpoint
from salcli.models.soundnet import SoundNet8
from salcli.weights.store import inspect_checkpoint


@pytest.fixture(scope="module")
def soundnet_sd():
    return SoundNet8().state_dict()


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": sd},
        lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["plain", "dataparallel", "state_dict", "model+module"],
)
def test_wrapped_checkpoints_are_read_and_checked_unchanged(tmp_path, soundnet_sd, wrap):
    path = tmp_path / "w.pt"
    torch.save(wrap(soundnet_sd), path)
    arch, sd = inspect_checkpoint(path)
    assert arch == "soundnet" and list(sd) == list(soundnet_sd)
    for k, v in sd.items():
        assert torch.equal(v, soundnet_sd[k])


def test_published_vinet_layout_loads(vinet_checkpoint):
    family, variant, model = load_checkpoint(vinet_checkpoint, audio=False)
    assert (family.name, variant.arch) == ("vinet", "vinet") and not model.training
    want = torch.load(vinet_checkpoint, weights_only=True)
    assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())


def test_avinet_checkpoints_are_told_apart(avinet_checkpoints):
    for fusion, path in avinet_checkpoints.items():
        assert arch_of(read_checkpoint(path)) == fusion
        assert load_checkpoint(path, audio=True)[1].arch == fusion
    with pytest.raises(WeightsError, match="listens to the soundtrack"):
        load_checkpoint(avinet_checkpoints["bilinear"], audio=False)


def test_missing_and_extra_keys_are_refused(tmp_path, soundnet_sd):
    sd = dict(soundnet_sd)
    sd.pop("conv3.bias")
    path = tmp_path / "broken.pt"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match="1 missing"):
        inspect_checkpoint(path)


def test_wrong_shape_is_refused(tmp_path, soundnet_sd):
    sd = dict(soundnet_sd)
    sd["conv2.weight"] = torch.zeros(3, 3)
    path = tmp_path / "shape.pt"
    torch.save(sd, path)
    with pytest.raises(WeightsError, match="shape"):
        inspect_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "text.pt"
    path.write_text("hello")
    with pytest.raises(WeightsError) as err:
        read_checkpoint(path)
    assert "\n" not in str(err.value)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/salcli-pwned",))


def test_code_running_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(WeightsError, match="refused"):
        read_checkpoint(path)


def test_describe_names_what_a_checkpoint_is_with_its_article():
    assert describe("vinet") == "a ViNet checkpoint"
    assert describe("bilinear") == "an AViNet (bilinear) checkpoint"
    assert describe("soundnet") == (
        "a SoundNet-8 checkpoint (AViNet's audio branch alone, not a saliency model)"
    )
    assert describe("s3d").startswith("an S3D checkpoint (") and "not a saliency" in describe("s3d")
    assert [label(a) for a in ("vinet", "transformer", "soundnet", "stavis")] == [
        "ViNet",
        "AViNet (transformer)",
        "SoundNet-8",
        "STAViS",
    ]


def test_wrong_kind_of_checkpoint_is_named_in_the_refusal(tmp_path, soundnet_sd):
    path = tmp_path / "soundnet8_final.pth"
    torch.save(soundnet_sd, path)
    for audio in (False, True):
        with pytest.raises(WeightsError) as err:
            load_checkpoint(path, audio=audio)
        assert str(err.value) == (
            f"{path}: this is {describe('soundnet')}; use an AViNet checkpoint, which holds it"
        )
