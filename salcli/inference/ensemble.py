"""Ensembles: several models over one decode of a video, their maps averaged.

``Predictor(["A.pt", "B.pt"])`` (``salcli predict video.mp4 --weights A.pt --weights
B.pt``) loads one ``Predictor`` per file, its *members*, in that order, and runs them all
over one decode of each video. One frame t's map, for any members:

1. every member runs on its own clip of frame t, as it would alone: its family's clip
   schedule, frame transform and input size, the one ``warmup`` (or its family's
   default), its own engine (device, precision, batch size, overlap reuse, ``stride``).
   With ``audio`` the members whose family hears take the soundtrack and the others run
   visual. Its raw map is the model's output in (0, 1) at its input size, before any
   post-processing;
2. the common size is the largest member input by area (the first such member on
   ties); every other member's map is resized to it with
   ``torch.nn.functional.interpolate(mode="bicubic", align_corners=False)`` and not
   clipped (bicubic may overshoot the input's range slightly);
3. the maps are averaged with equal weights;
4. the average is post-processed as the maps of the member whose size was used (its
   family's: resized to the frame, blurred, min-max normalised).

For one ViNet-S file and one ViNet-A file this is the authors' ViNet-E
(ViNet_E_inferences_metrics.py of ViNet-Saliency/vinet_v2): ViNet-S's (224, 384) map
upsampled bicubically to ViNet-A's (256, 456), the two averaged, then resized, blurred and
normalised. With ``input_size`` every member runs at that size, and a member whose family
works only at its own refuses it, as it does alone.

Streaming: the frames are decoded once, on the prefetch thread, and each gets one view
per member carrying that member's model input (``_View``). ``itertools.tee`` hands the
views to the members' pipelines (``Predictor.maps_of_frames``), which are read in
lock-step, one map of each per frame: frame t's maps wait for the member that reads
furthest ahead (STAViS 7 frames, a centred 32-frame clip 31), and the frames held are
bounded by the members' clips, look-ahead and batches, never by the video's length.
Each member that hears reads its own opening of the soundtrack (``Ensemble.tracks``), at
its own pace.

Records: ``model``, ``weights_sha256``, ``precision``, ``input_size`` and ``warmup`` are
every member's value joined by ``+`` in order (``"vinet-s+vinet-a"``), and ``members``
lists each member's model, weights file name, SHA-256 and those settings: a re-run with
other members, or the same in another order, does not take earlier outputs for its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from salcli import __version__
from salcli.errors import OptionError, WeightsError
from salcli.media.audio import AudioTrack
from salcli.media.decode import Frame, VideoMeta, Warn, prefetch
from salcli.media.writers import RunInfo
from salcli.options import PredictOptions

MEMBER_SEPARATOR = "+"  # joins the members' values in the records: "vinet-s+vinet-a"
PER_MEMBER_SETTINGS = ("precision", "input_size", "warmup")  # each member's own
RESIZE_MODE = "bicubic"  # the members' maps to the common size (ViNet-E's)
FUSION_FAMILY = "avinet"  # the one family whose variants are fusions (--fusion)

# Each member is a salcli.inference.predictor.Predictor; that module imports this one,
# so the members are typed by what is read of them.
Member = Any


def join(values: Iterable[object]) -> str:
    """The members' values as the records write them: ``"vinet-s+vinet-a"``."""
    return MEMBER_SEPARATOR.join(str(v) for v in values)


def once(warn: Warn) -> Warn:
    """``warn``, saying each line once (the members of an ensemble warn alike)."""
    said: set[str] = set()

    def say(line: str) -> None:
        if line not in said:
            said.add(line)
            warn(line)

    return say


# --- the combination ---------------------------------------------------------------------


def common_size(sizes: Sequence[tuple[int, int]]) -> int:
    """The index of the largest (h, w) of ``sizes`` by area, the first such on ties: the
    member whose maps the others are resized to and whose post-processing is used."""
    areas = [int(h) * int(w) for h, w in sizes]
    return areas.index(max(areas))


def resize_map(saliency: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A raw map (h, w) at ``size`` (H, W), float32: PyTorch's bicubic (a = -0.75,
    half-pixel centres, clamped borders, no antialiasing), not clipped. At its own size it
    is returned as it is."""
    m = np.asarray(saliency, dtype=np.float32)
    if m.shape == tuple(size):
        return m
    x = torch.from_numpy(np.ascontiguousarray(m))[None, None]  # (1, 1, h, w)
    up = F.interpolate(x, size=tuple(size), mode=RESIZE_MODE, align_corners=False)
    return up[0, 0].numpy()  # (H, W)


def combine(maps: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """The members' raw maps of one frame, each (h_i, w_i), as one raw map (H, W) =
    ``size``, float32: each resized to ``size`` (``resize_map``), then their mean with
    equal weights (``torch.mean`` of the stack, as ViNet-E)."""
    stack = torch.stack([torch.from_numpy(resize_map(m, size)) for m in maps])  # (M, H, W)
    return stack.mean(dim=0).numpy()


# --- streaming -------------------------------------------------------------------------------


class _View:
    """A decoded frame as one member sees it: ``tensor`` is that member's model input
    (3, h, w). Clips hold views; the engine tells clips apart by the views' identity and
    holds the last clip's by weak reference, as it does frames."""

    __slots__ = ("__weakref__", "frame", "tensor")

    def __init__(self, frame: Frame, tensor: torch.Tensor | None):
        self.frame = frame
        self.tensor = tensor


class Tracks(list):
    """Each member's soundtrack, in member order (None: the member runs visual)."""

    def close(self) -> None:
        for track in self:
            if track is not None:
                track.close()


def _views_of(items: Iterable[tuple[Frame, list[_View]]], k: int) -> Iterator[_View]:
    """Member ``k``'s views of the frames of ``items``."""
    for _, views in items:
        yield views[k]


# --- the ensemble ----------------------------------------------------------------------------


class Ensemble:
    """An ensemble of ``members`` (Predictors, in order) under ``options``: the checks
    over all of them, what the Predictor shows of them (the engine facts: ``device`` and
    ``dtype`` are the first member's, every member having the same device and precision
    options; the others join or gather the members'), its records and its raw maps."""

    def __init__(self, members: Sequence[Member], options: PredictOptions):
        self.members = tuple(members)
        self._check(options)
        lead = self.members[common_size([m.input_size for m in self.members])]
        self.size: tuple[int, int] = tuple(lead.input_size)  # (H, W) of the average
        self.postprocess: Callable[[np.ndarray, int, int], np.ndarray] = lead.postprocess
        self.postprocess_doc = (
            f"the models' maps averaged with equal weights at {self.size[0]}x{self.size[1]} "
            f"(the others resized to it, {RESIZE_MODE}, not clipped), then as "
            f"{lead.label}'s: {lead.family.postprocess_doc}"
        )
        ms = self.members
        self.arch = join(m.arch for m in ms)
        self.label = " + ".join(m.label for m in ms)
        self.weights_sha256 = join(m.weights_sha256 for m in ms)
        self.audio = any(m.audio for m in ms)
        self.warmup = join(m.warmup for m in ms)
        # the engine facts (Predictor.device, .precision, ...)
        self.model = tuple(m.model for m in ms)
        self.device: torch.device = ms[0].device
        self.dtype: torch.dtype = ms[0].dtype
        self.precision = join(m.precision for m in ms)
        self.batch_size = join(m.batch_size for m in ms)
        self.reuse = any(m.reuse for m in ms)
        self.channels_last = any(m.channels_last for m in ms)
        self.pin_memory = any(m.pin_memory for m in ms)

    def _check(self, options: PredictOptions) -> None:
        """The options that must apply to some member: ``audio`` to one that hears,
        ``fusion`` to an AViNet (each member checked the rest as it loaded)."""
        labels = ", ".join(m.label for m in self.members)
        if options.audio and not any(m.audio for m in self.members):
            files = ", ".join(str(m.weights_path) for m in self.members)
            raise WeightsError(f"{files}: {labels}: every one is visual only; sound needs "
                               "an audio-visual model")  # fmt: skip
        if options.fusion is not None and not any(
            m.family.name == FUSION_FAMILY for m in self.members
        ):
            raise OptionError("fusion", f"{options.fusion}: no model of the ensemble "
                              f"({labels}) has a fusion to choose (only AViNet has)")  # fmt: skip

    # -- records --------------------------------------------------------------------------

    def _member_settings(self) -> list[dict[str, Any]]:
        return [m.settings(folder=False) for m in self.members]

    def resolved(self) -> dict[str, str]:
        """``PER_MEMBER_SETTINGS`` as the records write them: the members' joined."""
        settings = self._member_settings()
        return {k: join(s[k] for s in settings) for k in PER_MEMBER_SETTINGS}

    def member_settings(self) -> list[dict[str, Any]]:
        """Each member's model, weights file name and SHA-256 and own settings, in order."""
        return [
            {
                "model": m.arch,
                "weights_file": m.weights_path.name,
                "weights_sha256": m.weights_sha256,
                **{k: s[k] for k in PER_MEMBER_SETTINGS},
            }
            for m, s in zip(self.members, self._member_settings(), strict=True)
        ]

    def run_info(self, extra: dict[str, Any]) -> RunInfo:
        """What the outputs record (``extra``: the settings but the model and weights)."""
        ms = self.members
        return RunInfo(
            model=self.arch,
            weights_sha256=self.weights_sha256,
            clip_len=join(m.family.clip_len for m in ms),  # type: ignore[arg-type]
            warmup=self.warmup,
            salcli_version=__version__,
            postprocess=self.postprocess_doc,
            extra={
                **extra,
                "family": join(m.family.name for m in ms),
                "reuse": join("on" if m.reuse else "off" for m in ms),
                "device": self.device.type,
                "weights_file": join(m.weights_path.name for m in ms),
            },
        )

    # -- running --------------------------------------------------------------------------

    def tracks(self, track: AudioTrack | None) -> Tracks:
        """Each member's soundtrack: ``track`` (the video's, opened with its warnings) for
        the first member that hears, a new opening of the same sound for each other one
        (each reads at its own pace), None for those that run visual."""
        out = Tracks()
        try:
            for m in self.members:
                if not m.audio or track is None:
                    out.append(None)
                elif all(t is None for t in out):  # the first that hears
                    out.append(track)
                elif track.path is None:
                    out.append(AudioTrack.silence())
                else:
                    out.append(AudioTrack.open(track.path, video_start=track.video_start))
        except BaseException:
            out.close()
            raise
        return out

    def raw_maps(
        self,
        reader: Iterable[Frame],
        meta: VideoMeta,
        tracks: Tracks,
        *,
        keep_rgb: bool = False,
        prefetch_frames: int,
    ) -> Iterator[tuple[Frame, np.ndarray]]:
        """(frame, raw map at ``size`` (H, W)) for every frame of ``reader``, in order:
        the members' maps of that frame combined (``combine``). ``reader`` is closed at
        the end, as are ``tracks``."""
        ms = self.members
        devices = [m.device if m.gpu_resize else None for m in ms]

        def decoded() -> Iterator[tuple[Frame, list[_View]]]:  # on the prefetch thread
            for f in reader:
                yield f, [
                    _View(f, None if d is None else m.family.transform(f.rgb, m.input_size,
                                                                       device=d))
                    for m, d in zip(ms, devices, strict=True)
                ]  # fmt: skip

        def prepared(items: Iterable) -> Iterator[tuple[Frame, list[_View]]]:
            # on the CPU the resizes run on the model's thread, as for one model
            for f, views in items:
                for m, v in zip(ms, views, strict=True):
                    if v.tensor is None:
                        v.tensor = m.family.transform(f.rgb, m.input_size)
                f.rgb = f.rgb if keep_rgb else None
                yield f, views

        decoding = prefetch(decoded(), maxsize=prefetch_frames)
        frames = prepared(decoding)
        branches = itertools.tee(frames, len(ms))
        streams = [
            m.maps_of_frames(_views_of(branch, k), meta, tracks[k])
            for k, (m, branch) in enumerate(zip(ms, branches, strict=True))
        ]
        try:
            for outs in zip(*streams, strict=True):  # one (view, raw map) per member
                frame = outs[0][0].frame
                assert all(view.frame is frame for view, _ in outs)  # lock-step
                yield frame, combine([raw for _, raw in outs], self.size)
        finally:
            for stream in streams:
                stream.close()
            frames.close()
            decoding.close()
            reader.close()
            tracks.close()
