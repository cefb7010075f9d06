"""``salcli reframe --dataset``: the share of human fixations inside the window, on a
generated dataset in DIEM's layout whose viewers all look at the object."""

from __future__ import annotations

import json

import numpy as np
from helpers import make_diem_scenes, runner, scene_maps, use_fast_model, write_stack

from salcli.cli import app
from salcli.errors import EXIT_FAILED
from salcli.reframing.evaluation import fixation_shares
from salcli.reframing.geometry import AXIS_X, Layout
from salcli.reframing.track import CropTrack

SIZE = (72, 160)  # (H, W)
SCENES = {
    "offcentre": [100 + 2 * (i % 10) for i in range(30)],  # right of centre, wandering
    "crossing": [4 + 4 * i for i in range(30)] + [None] * 4,  # across, then gone
    "centred": [72] * 30,  # where a centre crop looks
}


def test_the_path_keeps_more_fixations_than_the_centre_crop(tmp_path):
    root = tmp_path / "data"
    make_diem_scenes(root, SCENES, SIZE)
    maps = tmp_path / "maps"
    for name, xs in SCENES.items():
        frames = root / "video_frames" / "DIEM" / name
        write_stack(maps / f"{name}.h5", scene_maps(xs, SIZE), frames)
    args = ["reframe", "--dataset", "diem", "--root", str(root), "--maps-from", str(maps)]
    r = runner.invoke(app, [*args, "--json", "-", "--csv", str(tmp_path / "kept.csv")])
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    videos = {v["video"]: v for v in report["videos"]}
    assert set(videos) == set(SCENES)
    assert videos["crossing"]["frames"] == 30  # frames without fixations are left out
    off = videos["offcentre"]
    assert off["salcli"] == 1.0 and off["centre"] == 0.0 and off["best"] == 1.0
    assert videos["centred"]["salcli"] == videos["centred"]["centre"] == 1.0
    assert videos["crossing"]["centre"] < videos["crossing"]["salcli"] <= 1.0
    overall = report["overall"]
    assert overall["centre"] < overall["salcli"] <= overall["best"] == 1.0
    assert np.isclose(overall["salcli"], np.mean([v["salcli"] for v in videos.values()]))
    rows = (tmp_path / "kept.csv").read_text().splitlines()
    assert rows[0] == "video,split,frames,salcli,centre,best" and rows[-1].startswith("overall")
    table = runner.invoke(app, args)
    assert table.exit_code == 0 and "offcentre" in table.stdout and "centre %" in table.stdout


def test_an_unknown_dataset_or_inputs_with_it_exit_2(tmp_path):
    r = runner.invoke(app, ["reframe", "--dataset", "nope", "--root", str(tmp_path)])
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    r = runner.invoke(app, ["reframe", "v.mp4", "--dataset", "diem"])
    assert r.exit_code == 2 and "--dataset takes no input videos" in r.stderr


def test_maps_from_the_model_on_a_dataset(tmp_path, vinet_checkpoint, monkeypatch):
    """Without --maps-from the model runs on each video's frames (the stand-in: the map is
    the picture's brightness, so the bright object)."""
    use_fast_model(monkeypatch)
    root = tmp_path / "data"
    make_diem_scenes(root, {"offcentre": SCENES["offcentre"]}, SIZE)
    args = ["reframe", "--dataset", "diem", "--root", str(root), "--weights",
            str(vinet_checkpoint), "--input-size", "32x64", "--json", "-", "--quiet"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    (video,) = json.loads(r.stdout)["videos"]
    assert video["frames"] == 30 and video["salcli"] > 0.9 and video["centre"] == 0.0


def test_shares_of_a_frame_are_counted_at_the_fixation_maps_size():
    """Fixations at half the video's size: two at x 5, one at x 40 (source x 10 and 80)."""
    lay = Layout(160, 72, AXIS_X, 40, 72, 40, 72, pad=False)
    track = CropTrack("v", 25.0, lay, np.zeros(1), np.zeros(1), np.zeros(1), [], 0.5625)
    fix = np.zeros((36, 80), dtype=bool)
    fix[10:12, 5] = True
    fix[20, 40] = True
    salcli_share, centre, best = fixation_shares(track, fix, 0)
    assert np.allclose([salcli_share, centre, best], [2 / 3, 1 / 3, 2 / 3])
    assert fixation_shares(track, np.zeros((36, 80), dtype=bool), 0) is None


def test_a_video_that_cannot_be_reframed_fails_alone(tmp_path):
    """Maps of another length for one video: that one is reported with its error line and
    left out of the figures, the others are scored, and the exit code says one failed."""
    root = tmp_path / "data"
    make_diem_scenes(root, SCENES, SIZE)
    maps = tmp_path / "maps"
    for name, xs in SCENES.items():
        frames = root / "video_frames" / "DIEM" / name
        xs = xs[:-3] if name == "crossing" else xs  # three maps short
        write_stack(maps / f"{name}.h5", scene_maps(xs, SIZE), frames)
    args = ["reframe", "--dataset", "diem", "--root", str(root), "--maps-from", str(maps)]
    r = runner.invoke(app, [*args, "--json", "-"])
    assert r.exit_code == EXIT_FAILED and "Traceback" not in r.stderr
    report = json.loads(r.stdout)
    assert [f["video"] for f in report["failed"]] == ["crossing"]
    assert {v["video"] for v in report["videos"]} == set(SCENES) - {"crossing"}
    assert "salcli: error: crossing: " in r.stderr and "1 of 3 videos failed" in r.stderr
