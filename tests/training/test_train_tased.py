"""`salcli train --model tased`: TASED-Net's published recipe (SGD with the decoder's and
the encoder's rates, KL over each mini-batch summed over a step, the decoder's schedule,
flipped windows, its own frames) and an epoch on a tiny generated set whose checkpoint
loads as a TASED-Net file."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import DATA, make_frame_dataset

from salcli.models.registry import load_checkpoint
from salcli.models.tased import TASED
from salcli.models.tased_procedure import frame_to_tensor as tased_frames
from salcli.testing import deterministic_state_dict, load_manifest
from salcli.training.data import WindowDataset, training_sets
from salcli.training.init import initial_model
from salcli.training.loop import train
from salcli.training.loss import BATCH_KLD_EPS, batch_kld_terms, kld_loss, loss_per_sample
from salcli.training.options import TrainOptions, parse_loss
from salcli.training.recipe import TASED_RECIPE, make_optimizer, scheduled_lr, set_lr

FRAMES = 34  # per generated video (>= T = 32)
SMALL = (32, 32)  # (h, w) model input: the smallest S3D takes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A DHF1K-layout set: 3 training videos, 1 validation video."""
    root = tmp_path_factory.mktemp("dhf1k")
    make_frame_dataset(root / "DHF1K", {f"t{i}": FRAMES for i in range(3)}, split="train")
    make_frame_dataset(root / "DHF1K", {"v0": FRAMES}, split="val", seed=2)
    return root


def test_the_recipe_is_the_default_of_model_tased():
    o = TrainOptions(dataset="dhf1k", model="tased")
    assert (o.loss, o.lr, o.batch_size, o.micro_batch, o.epochs) == ("kld-batch", 0.1, 40, 8, 67)
    v = TrainOptions(dataset="dhf1k")  # ViNet's recipe is unchanged
    assert (v.loss, v.lr, v.batch_size, v.micro_batch, v.epochs) == ("kld", 1e-4, 8, None, 40)
    assert TrainOptions(dataset="dhf1k", model="tased", lr=0.05, epochs=3).lr == 0.05
    with pytest.raises(Exception, match="kld-batch is a loss alone"):
        parse_loss("kld-batch,cc")


def test_kl_over_the_mini_batch_is_their_definition():
    g = torch.Generator().manual_seed(0)
    p, q = torch.rand(4, 6, 8, generator=g), torch.rand(4, 6, 8, generator=g)
    q[1] = 0.0  # a map without mass: the batch normalization still defines it
    # by hand, in float64: P and Q divided by their sums over the whole batch
    pp, qq = p.double() / p.double().sum(), q.double() / q.double().sum()
    want = (qq * torch.log(BATCH_KLD_EPS + qq / (pp + BATCH_KLD_EPS))).sum()
    terms = batch_kld_terms(p, q)
    assert terms.shape == (4,) and math.isclose(terms.sum().item(), want.item(), rel_tol=1e-5)
    assert terms[1].item() == 0.0
    # not the per-map normalization (a different loss and different gradients) ...
    per_map = kld_loss(p[[0, 2, 3]], q[[0, 2, 3]], eps=BATCH_KLD_EPS)
    assert abs(per_map.sum().item() - terms.sum().item()) > 1e-3
    # ... but groups of one are exactly it: how validation scores each window alone
    alone = loss_per_sample(p[[0, 2]], q[[0, 2]], parse_loss("kld-batch"), group=1)
    torch.testing.assert_close(alone, kld_loss(p[[0, 2]], q[[0, 2]], eps=BATCH_KLD_EPS))


def test_sgd_with_the_decoders_rate_and_schedule_and_the_encoders_fixed_rate():
    model = TASED()
    opt = make_optimizer(model, TASED_RECIPE, 0.1, torch.device("cpu"))
    assert isinstance(opt, torch.optim.SGD)
    encoder, decoder = opt.param_groups
    assert (encoder["lr"], decoder["lr"]) == (pytest.approx(1e-3), 0.1)
    assert encoder["momentum"] == 0.9 and encoder["weight_decay"] == 2e-7
    n_dec = sum(p.numel() for p in decoder["params"])
    assert n_dec == sum(p.numel() for n, p in model.named_parameters() if n.startswith("convtsp"))
    # their 1000 steps: the decoder's rate / 10 at 750 and 950, the encoder's kept
    rates = [scheduled_lr(0.1, TASED_RECIPE, s, 1000) for s in (0, 749, 750, 949, 950, 999)]
    assert rates == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    set_lr(opt, TASED_RECIPE, 960, 1000)
    assert (encoder["lr"], decoder["lr"]) == (pytest.approx(1e-3), pytest.approx(1e-3))


def test_windows_are_their_frames_flipped_with_the_target_in_half_of_them(tiny):
    sets = training_sets("dhf1k", tiny, "train")
    plain = WindowDataset(sets.train, seed=0, size=SMALL, transform=tased_frames)
    flipping = WindowDataset(sets.train, seed=0, size=SMALL, transform=tased_frames, flip=True)
    seen = set()
    for epoch in range(6):
        a, b = plain[(epoch, 0)], flipping[(epoch, 0)]
        assert a["clip"].min() >= -1.0 and a["clip"].max() <= 1.0  # (2 v - 255) / 255
        flipped = torch.equal(b["clip"], a["clip"].flip(-1))
        assert flipped == torch.equal(b["target"], a["target"].flip(-1))
        assert flipped or torch.equal(b["clip"], a["clip"])
        seen.add(flipped)
    assert seen == {True, False}


def test_encoder_from_a_vinet_checkpoint_decoder_afresh(tmp_path):
    vinet = deterministic_state_dict(load_manifest(DATA / "vinet.keys.json"))
    torch.save(vinet, tmp_path / "vinet.pt")
    model, report = initial_model("tased", tmp_path / "vinet.pt")
    assert report.lines == (f"S3D backbone: {tmp_path / 'vinet.pt'} (a ViNet checkpoint's)",
                            "decoder: random")  # fmt: skip
    own = model.state_dict()
    assert all(torch.equal(own[k.removeprefix("backbone.")], v) for k, v in vinet.items()
               if k.startswith("backbone."))  # fmt: skip


def test_an_epoch_on_a_tiny_set_writes_a_tased_checkpoint(tiny, tmp_path):
    out = tmp_path / "run"
    options = TrainOptions(
        dataset="dhf1k", root=str(tiny), split="train", model="tased", init="none", epochs=1,
        batch_size=3, micro_batch=2, out=str(out), loader_workers=0, val_stride=8,
        precision="fp32", device="cpu", input_size=SMALL,
    )  # fmt: skip
    torch.manual_seed(0)
    result = train(options)
    assert result.status == "done" and result.epochs == 1
    record = result.history[-1]
    assert record.windows == 3 and math.isfinite(record.train_loss)
    # CC may be NaN: a map flatter than the authors' 1/255 flooring is constant after it
    assert math.isfinite(record.val_loss) and math.isfinite(record.kld)
    info = json.loads((out / "options.json").read_text())
    assert info["arch"] == "tased" and info["options"]["loss"] == "kld-batch"
    assert info["options"]["micro_batch"] == 2 and info["steps_per_epoch"] == 1
    sd = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    assert list(sd) == list(load_manifest(DATA / "tased.keys.json"))  # the published keys
    family, variant, _ = load_checkpoint(out / "best.pt", audio=False)
    assert (family.name, variant.arch) == ("tased", "tased")
    state = torch.load(out / "state.pt", map_location="cpu", weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 0.1])
    assert all(g["momentum"] == 0.9 for g in groups)
