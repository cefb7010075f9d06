"""``salcli reframe``: a video cut to another aspect ratio by its saliency, with a camera
path a person would accept (docs/reframe.md).

The parts, in the order a video goes through them:

- ``options``: the options table (``ReframeOptions``), declared once for the API and CLI;
- ``maps``: the maps, from a model run or ``predict``'s HDF5 stacks, beside the frames;
- ``shots``: the cuts (PySceneDetect's content detector, fed salcli's decoded frames);
- ``geometry``: the window (the largest crop at the aspect) and the output picture;
- ``profiles``: each frame's saliency along the window's axis (the only per-frame state);
- ``path``: each shot's camera: still, or an L1-optimal path with bounded speed and
  acceleration; ``analyse``: pass 1, the track of a video (``track.CropTrack``);
- ``render``: pass 2, the reframed video, the debug video, the JSON track;
- ``run``: one video (``Reframer``, ``reframe``, ``render``); ``batch``: many, with skip,
  resume and shards; ``evaluation``: the share of human fixations kept, on a dataset.
"""

from __future__ import annotations

from salcli.reframing.batch import ReframeResult, ReframeRun, reframe_many
from salcli.reframing.options import ReframeOptions
from salcli.reframing.run import Reframer, reframe, render
from salcli.reframing.track import CropTrack, Shot

__all__ = [
    "CropTrack",
    "ReframeOptions",
    "ReframeResult",
    "ReframeRun",
    "Reframer",
    "Shot",
    "reframe",
    "reframe_many",
    "render",
]
