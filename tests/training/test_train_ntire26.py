"""`salcli train --dataset ntire26` on a tiny generated copy of the NTIRE 2026 layout:
the held-out validation part of the train list, windows decoded from the video files by
seeking, targets from the saliency videos, fixations from the JSON, the videos' own sound
for AViNet (silence where there is none), and the layout checks before training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from helpers import make_ntire26, write_video

from salcli.errors import DatasetError, OptionError
from salcli.models.soundnet import SoundNet8
from salcli.models.vinet import ViNet
from salcli.models.vinet_procedure import AUDIO_BUFFER, CLIP_LEN, frame_to_tensor
from salcli.training.data import (
    ValDataset,
    WindowDataset,
    draw_window,
    training_sets,
    validation_windows,
)
from salcli.training.loop import train
from salcli.training.options import TrainOptions
from salcli.training.videofiles import VAL_EVERY, held_out

TRAIN_INPUT = (32, 32)  # (h, w) model input: the smallest S3D takes
N_FRAMES = CLIP_LEN + 2  # frames per video: two windows past the warm-up
VIDEOS = {  # name -> (frames, (H, W), with a soundtrack)
    "t01": (N_FRAMES, (32, 48), True),
    "t02": (N_FRAMES, (32, 48), False),
    "t03": (N_FRAMES, (24, 40), True),
    "p01": (20, (32, 48), False),
}
# The saliency video's frame read back against the float map encoded: 10-bit limited-range
# luma, converted to 16-bit RGB, then min-max normalised again; measured 8.9e-3.
DENSITY_TOLERANCE = 0.015
SPLITS = {"train": ["t01", "t02", "t03"], "public_test": ["p01"], "private_test": []}


@pytest.fixture(scope="module")
def ntire(tmp_path_factory):
    root = tmp_path_factory.mktemp("ntire") / "NTIRE26"
    truth = make_ntire26(root, VIDEOS, SPLITS)
    return root, truth


def test_every_tenth_video_of_the_train_list_is_held_out():
    names = [f"v{k:04d}" for k in range(1200)]
    train, val = held_out(names)
    assert len(val) == 120 and val[:2] == ["v0000", "v0010"] and len(train) == 1080
    assert not set(train) & set(val) and VAL_EVERY == 10


def test_windows_read_the_video_files(ntire):
    root, truth = ntire
    sets = training_sets("ntire26", root)
    assert [v.name for v in sets.train] == ["t02", "t03"] and [v.name for v in sets.val] == ["t01"]
    video = sets.train[1]  # t03: 24x40
    assert video.n_frames == N_FRAMES and video.fps == 25
    sample = WindowDataset([video], seed=0, size=TRAIN_INPUT)[(0, 0)]
    assert sample["valid"] and sample["clip"].shape == (3, CLIP_LEN, *TRAIN_INPUT)
    # the window is the 32 frames before its last one, as a plain decode gives them
    with av.open(str(root / "Videos" / "t03.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    last, _ = draw_window(video, 0, 0)  # the window's last frame
    want = [frame_to_tensor(f, TRAIN_INPUT) for f in frames[last - CLIP_LEN + 1 : last + 1]]
    want = torch.stack(want, dim=1)  # (3, T, h, w)
    assert torch.equal(sample["clip"], want)
    # its target: that frame of the saliency video (10-bit, crf 0: the map written)
    density = video.density_map(last)
    assert density.shape == (24, 40)
    maps = truth["t03"][1]
    assert np.abs(density - maps[last]).max() < DENSITY_TOLERANCE
    assert np.abs(density - maps[last - 1]).max() > 10 * DENSITY_TOLERANCE  # not another
    assert density.min() == 0.0 and 1 - 1e-6 < density.max() <= 1.0  # min-max normalised
    # validation: every 2nd frame from T-1 on; the fixations are the JSON's points
    windows = validation_windows(sets.val, stride=2)
    assert [w.last for w in windows] == [CLIP_LEN - 1, CLIP_LEN + 1]
    val = ValDataset(sets.val, windows, size=TRAIN_INPUT)
    _, fixated = val.ground_truth(1)
    points = np.array(truth["t01"][0][CLIP_LEN + 1])
    expected = np.zeros((32, 48), dtype=bool)
    expected[points[:, 0], points[:, 1]] = True
    assert np.array_equal(fixated, expected)


def test_the_sound_is_the_videos_own_else_silence(ntire):
    root, _ = ntire
    sets = training_sets("ntire26", root, audio=True)
    loud, silent = sets.train[1], sets.train[0]  # t03 has a soundtrack, t02 none
    for video, heard in ((loud, True), (silent, False)):
        sample = WindowDataset([video], seed=0, size=TRAIN_INPUT, audio=True)[(0, 0)]
        assert sample["audio"].shape == (1, AUDIO_BUFFER, 1)
        assert bool(sample["audio"].abs().max() > 0.01) == heard, video.name


@pytest.mark.slow  # ~15 s of CPU: AViNet's forward and backward passes
def test_avinet_trains_an_epoch_with_the_videos_own_sound(ntire, tmp_path):
    root, _ = ntire
    torch.manual_seed(1)
    starts = {"init": tmp_path / "ViNet_DHF1K.pt", "soundnet": tmp_path / "soundnet8_final.pth"}
    torch.save(ViNet().state_dict(), starts["init"])
    torch.save(SoundNet8().state_dict(), starts["soundnet"])
    one_epoch = dict(epochs=1, batch_size=2, loader_workers=0, val_stride=2)
    cpu = dict(precision="fp32", device="cpu", input_size=TRAIN_INPUT)
    options = TrainOptions(
        dataset="ntire26", root=str(root), audio=True, fusion="concat", out=str(tmp_path / "run"),
        **{k: str(v) for k, v in starts.items()}, **one_epoch, **cpu,
    )  # fmt: skip
    result = train(options)
    assert result.status == "done" and result.history[-1].windows == 2
    assert np.isfinite(result.history[-1].val_loss)
    assert "concat_conv.weight" in torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    info = json.loads((tmp_path / "run" / "options.json").read_text())
    assert info["data"] == "ntire26 train list, every 10th video held out"
    assert info["train_videos"] == 2 and info["val_windows"] == 2


@pytest.fixture
def copy(ntire, tmp_path) -> Path:
    """A copy of the set to break."""
    return shutil.copytree(ntire[0], tmp_path / "NTIRE26")


def test_layout_problems_are_one_line_before_training(copy):
    with pytest.raises(OptionError, match="ntire26 trains on its train list"):
        training_sets("ntire26", copy, split="1")
    (copy / "SaliencyTrain" / "Train" / "t02.mp4").unlink()
    with pytest.raises(DatasetError, match="no saliency video .*SaliencyTrain/Train/t02.mp4"):
        training_sets("ntire26", copy)
    shutil.copy(
        copy / "SaliencyTrain" / "Train" / "t01.mp4", copy / "SaliencyTrain" / "Train" / "t02.mp4"
    )
    write_video(copy / "Videos" / "t03.mp4", 5, (24, 40))
    with pytest.raises(DatasetError, match=r"has 34 frames, its source .*t03.mp4 5"):
        training_sets("ntire26", copy)
    (copy / "Videos" / "t03.mp4").unlink()
    with pytest.raises(DatasetError, match=r"no video .*Videos/t03.mp4"):
        training_sets("ntire26", copy)
