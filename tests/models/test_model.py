"""The model reproduces the authors' implementation on the reference checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import DATA
from helpers import VINET_PUBLISHED_TOLERANCE as TOL

from salcli.models.registry import build_model
from salcli.models.s3d import S3DBackbone
from salcli.models.soundnet import SoundNet8
from salcli.models.vinet import AViNet, ViNet
from salcli.testing import deterministic_state_dict, load_manifest, reference_inputs


@pytest.fixture(scope="module")
def ref_inputs():
    clip, audio = reference_inputs()
    return torch.from_numpy(clip), torch.from_numpy(audio)


def _loaded(manifest: str, arch: str) -> torch.nn.Module:
    model = build_model(arch).eval()
    model.load_state_dict(deterministic_state_dict(load_manifest(DATA / manifest)), strict=True)
    return model


@pytest.mark.parametrize(
    "manifest,arch",
    [
        ("vinet.keys.json", "vinet"),
        ("avinet_bilinear.keys.json", "bilinear"),
        ("avinet_transformer.keys.json", "transformer"),
        ("soundnet.keys.json", "soundnet"),
    ],
)
def test_state_dict_keys_and_shapes_match_published(manifest, arch):
    own = {k: tuple(v.shape) for k, v in build_model(arch).state_dict().items()}
    published = {k: tuple(v) for k, v in load_manifest(DATA / manifest).items()}
    assert list(own) == list(published)  # same keys, same order
    assert own == published


@pytest.mark.parametrize(
    "name,arch",
    [
        ("vinet", "vinet"),
        ("avinet_bilinear", "bilinear"),
        ("avinet_transformer", "transformer"),
    ],
)
def test_golden_parity(name, arch, ref_inputs):
    clip, audio = ref_inputs
    model = _loaded(f"{name}.keys.json", arch)
    with torch.inference_mode():
        out = model(clip) if arch == "vinet" else model(clip, audio)
    expected = np.load(DATA / f"{name}.expected.npy")
    assert out.shape == expected.shape == (1, 224, 384)
    assert np.abs(out.numpy() - expected).max() < TOL


def test_soundnet_parity(ref_inputs):
    _, audio = ref_inputs
    model = _loaded("soundnet.keys.json", "soundnet")
    with torch.inference_mode():
        out = model(audio)
    expected = np.load(DATA / "soundnet.expected.npy")
    assert out.shape == expected.shape == (1, 1024, 3, 1)
    assert np.abs(out.numpy() - expected).max() < TOL


def test_backbone_feature_shapes():
    feats = S3DBackbone().eval()(torch.zeros(1, 3, 32, 64, 96))
    assert [tuple(f.shape) for f in feats] == [
        (1, 1024, 4, 2, 3),
        (1, 832, 8, 4, 6),
        (1, 480, 16, 8, 12),
        (1, 192, 16, 16, 24),
    ]


def test_spatial_upsample_equals_trilinear():
    from salcli.models.vinet import SpatialUpsample

    x = torch.randn(2, 5, 3, 7, 9)
    ref = torch.nn.Upsample(scale_factor=(1, 2, 2), mode="trilinear")(x)
    assert torch.allclose(SpatialUpsample()(x), ref, atol=1e-6)


def test_outputs_are_probabilities_at_small_size():
    model = ViNet().eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 32, 32, 64))
    assert out.shape == (2, 32, 64)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_concat_fusion_shapes():
    model = AViNet("concat").eval()
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 32, 32, 64), torch.randn(1, 1, 70560, 1))
    assert out.shape == (1, 32, 64)
    assert SoundNet8()(torch.zeros(1, 1, 70560, 1)).shape == (1, 1024, 3, 1)


@pytest.mark.parametrize("arch", ["vinet", "transformer", "concat"])
def test_folding_batchnorm_keeps_the_outputs(arch):
    import copy

    from salcli.models.vinet import fold_batchnorm

    torch.manual_seed(1)
    model = build_model(arch).eval()
    for mod in model.modules():  # non-trivial statistics
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    folded = fold_batchnorm(copy.deepcopy(model))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    clip, wave = torch.randn(1, 3, 32, 32, 64), torch.randn(1, 1, 70560, 1)
    with torch.inference_mode():
        args = (clip,) if arch == "vinet" else (clip, wave)
        assert torch.allclose(model(*args), folded(*args), atol=1e-5)


# (kernel, stride, padding, dilation): S3D's poolings, the overlap module's dilated and
# cut-down ones, AViNet(B)'s, and some that the model does not use
POOLS = [
    ((1, 3, 3), (1, 2, 2), (0, 1, 1), 1),
    (3, 1, 1, 1),
    (3, 2, 1, 1),
    ((2, 1, 1), (2, 1, 1), 0, 1),
    ((1, 2, 2), (1, 2, 2), 0, 1),
    ((4, 1, 1), (2, 1, 2), 0, 1),
    ((3, 3, 3), 1, (0, 1, 1), (2, 1, 1)),
    ((2, 3, 3), 1, (0, 1, 1), (3, 1, 1)),
    ((1, 3, 3), (3, 2, 2), (0, 1, 1), (4, 1, 1)),
    ((5, 1, 1), 1, (2, 0, 0), 1),
    ((3, 3, 3), (1, 2, 2), 1, 1),
    ((3, 2, 3), (2, 2, 1), (1, 0, 1), 1),
]


@pytest.mark.parametrize("kernel, stride, padding, dilation", POOLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_max_pool3d_equals_torch_bit_for_bit(kernel, stride, padding, dilation, dtype):
    from salcli.models.layers import max_pool3d

    g = torch.Generator().manual_seed(0)
    for shape in [(2, 5, 7, 9, 12), (1, 3, 16, 8, 10), (3, 4, 5, 7, 6)]:
        for channels_last in (False, True):
            x = torch.randn(shape, generator=g).to(dtype)  # (B, C, T, H, W)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last_3d)
            want = torch.nn.functional.max_pool3d(x, kernel, stride, padding, dilation)
            got = max_pool3d(x, kernel, stride, padding, dilation)
            assert got.dtype == dtype and torch.equal(got, want)
            assert got.is_contiguous(memory_format=torch.channels_last_3d) == channels_last
