"""The published evaluation protocols, as data, and the texts that state them.

Each dataset is scored as its published evaluation loop scores it
(``salcli.evaluation.datasets.DatasetSpec.protocol`` names the protocol):

- ``dhf1k`` (DHF1K, Hollywood-2, UCF-Sports), as the benchmark's MATLAB loop
  (``eval1.m``) scores: every frame, also one without fixations (SIM and KLD against
  its all-zero density map are 0 and kept, CC / NSS / AUCs are NaN and dropped); the
  sAUC negatives of a frame are the union of the fixations of 10 frames drawn at random
  (without replacement) from all frames of the evaluated set, empty ones and the
  current one included; the overall score is the mean over frames, NaNs skipped per
  metric.
- ``av`` (DIEM, Coutrot1/2, AVAD, ETMD, SumMe; STAViS / AViNet): frames without
  fixations are skipped; the sAUC negatives are the union of the fixations of all
  frames of the same video minus the current frame's fixated pixels; scores are
  averaged per video, then over videos; split ``all`` is the mean of the splits.
- ``ntire26`` (the NTIRE 2026 / MSU set), as the challenge's bench.py scores: its own
  metric definitions (``salcli.metrics.bench_*``: CC, SIM, NSS, AUC-Judd; KLD on request,
  which the challenge does not score), frames read as its FFmpeg extraction to PNG holds
  them, the prediction min-max normalised and resized with OpenCV's bilinear resize; the
  mean over each video's frames, then over videos (bench.py's per-video ``np.mean``,
  then the mean its summary prints). Frames without fixations (bench.py would stop on
  them) are skipped.

Both read a prediction as the MATLAB scripts do: the first (red) channel of a colour
image, converted to float first (8-bit values as they are under ``dhf1k``, its
``double()``; on [0, 1] under ``av``, its ``im2double``; all metrics are invariant to
that scale but for AUC-J's 1e-7 jitter), then resized once, as floats, to the ground
truth's size with MATLAB's ``imresize``.

The texts here are those of the conventions of the JSON document
(``salcli.evaluation.report``). Nothing here imports more than the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass

DHF1K_OTHER_FRAMES = 10  # frames whose fixations make the sAUC negatives (DHF1K protocol)
MIT_METRICS = ("cc", "nss", "auc_j", "sauc", "sim", "kld")  # salcli.metrics.METRICS
RESIZING = (
    "float prediction resized once to the ground truth's size with MATLAB imresize "
    "(bicubic, a=-0.5, antialiased when shrinking), no rounding or clipping between the "
    "two passes; equal sizes untouched"
)


@dataclass(frozen=True)
class Protocol:
    """How one published evaluation loop scores a dataset."""

    name: str  # "dhf1k" | "av"
    skip_empty: bool  # frames without fixations: skipped by default (else scored)
    per_video: bool  # mean per video, then over videos (else: mean over all frames)
    sauc_frames: int | None  # sAUC negatives: fixations of this many random frames of
    # the set; None: of the video's other frames
    integer_values: bool  # 8/16-bit predictions as their values (double()), else on
    # [0, 1] (im2double)
    aggregation: str  # the conventions' texts
    sauc_negatives: str
    sauc_short: str  # the same in a few words (the command line's caption)
    reading: str
    metrics: tuple[str, ...] = MIT_METRICS  # the default set
    offered: tuple[str, ...] = (*MIT_METRICS, "auc_b")  # every metric it can score
    resizing: str = RESIZING
    video_files: bool = False  # ground truth in videos, scored by salcli.evaluation.streamed


PROTOCOLS: dict[str, Protocol] = {
    "dhf1k": Protocol(
        name="dhf1k",
        skip_empty=False,
        per_video=False,
        sauc_frames=DHF1K_OTHER_FRAMES,
        integer_values=True,
        aggregation="mean over all scored frames, NaNs skipped per metric",
        sauc_negatives=(
            f"union of the fixations of {DHF1K_OTHER_FRAMES} frames drawn at random (without "
            "replacement) from all frames of the evaluated set, empty ones and the current "
            "one included; a frame of another size has its fixations (1-based row r, column "
            "c) placed at row round(r x W/W0), column round(c x H/H0) as the benchmark's "
            "loop does, points outside dropped"
        ),
        sauc_short=(
            f"fixations of {DHF1K_OTHER_FRAMES} random frames of the whole set, empty ones "
            "included (another size placed as the benchmark's loop places it)"
        ),
        reading=(
            "colour predictions: first (red) channel; 8-bit / 16-bit values converted to "
            "float as they are (MATLAB double()) before any resize"
        ),
    ),
    "av": Protocol(
        name="av",
        skip_empty=True,
        per_video=True,
        sauc_frames=None,
        integer_values=False,
        aggregation="mean per video (NaNs skipped), then mean over videos",
        sauc_negatives=(
            "union of the fixations of all frames of the same video, minus the current "
            "frame's fixated pixels"
        ),
        sauc_short="fixations of the video's other frames",
        reading=(
            "colour predictions: first (red) channel; 8-bit / 16-bit values converted to "
            "float on [0, 1] (MATLAB im2double) before any resize"
        ),
    ),
    "ntire26": Protocol(
        name="ntire26",
        skip_empty=True,
        per_video=True,
        sauc_frames=None,
        integer_values=True,
        aggregation=(
            "mean over each video's frames, then mean over videos (bench.py: np.mean of "
            "the per-frame scores per video, then the mean of the per-video scores)"
        ),
        sauc_negatives="none: bench.py has no shuffled AUC",
        sauc_short="none (bench.py's metrics)",
        reading=(
            "video frames as bench.py's FFmpeg extraction to PNG holds them (grey, else RGB, "
            "16-bit above 8-bit sources), PNG and HDF5 maps as stored; grey = the mean of "
            "the channels; min-max normalised, (x - min) / (max - min + float32 eps)"
        ),
        metrics=("cc", "sim", "nss", "auc_j"),
        offered=("cc", "sim", "nss", "auc_j", "kld"),
        resizing=(
            "normalised prediction resized to the ground-truth frame's size with OpenCV's "
            "default resize (bilinear), on every frame as bench.py does"
        ),
        video_files=True,
    ),
}

BENCH_DEFINITIONS = (
    "the NTIRE 2026 challenge's bench.py: CC and NSS z-score with the population std + "
    "1e-7; CC = sum(ab) / sqrt(sum(aa) sum(bb) + 1e-7); SIM divides each map by its sum + "
    "1e-7; NSS and AUC-Judd read the map at the fixation points as map[f[:, 0], f[:, 1]] "
    "(row, column), a point counted as often as listed; AUC-Judd without jitter, its "
    "possible fixations H*W + N - the distinct columns of the points (np.unique(F, "
    "axis=1), as written); KLD = sum(g ln(2.2204e-16 + g / (p + 2.2204e-16))) of the "
    "sum-normalised maps"
)
BENCH_PAIRING = (
    "frame k of the prediction with frame k of the saliency video; the fixations.json "
    "entries in the order bench.py pairs them with its %03d.png files sorted as strings "
    "(the frames' own order up to frame 999); frames beyond the JSON's entries unscored"
)
BENCH_EMPTY = {
    False: "scored: CC, SIM and KLD kept, NSS and AUC-J NaN and dropped (bench.py stops on them)",
    True: "skipped (bench.py stops on them)",
}
KLD_NOTE = "KLD: defined in bench.py, not scored by the challenge (on request only)"

EMPTY_TEXT = {
    False: (
        "scored as the benchmark's loop does: SIM and KLD kept (0 against an all-zero "
        "density map), CC, NSS and the AUCs NaN and dropped"
    ),
    True: "skipped",
}
RANDOM_STREAMS = (
    "one random stream per (seed, video, frame, metric): a metric's value does not "
    "depend on the other metrics asked for or on the scoring order"
)


def aggregation(protocol: Protocol, n_splits: int, one_list: str | None = None) -> str:
    """How the scores are averaged, over ``n_splits`` splits; ``one_list``: the name of a
    single-split set whose one test list each split's model scores."""
    text = protocol.aggregation
    if n_splits > 1:
        text += f"; split 'all' = mean of the {n_splits} splits"
        if one_list is not None:
            text += f" ({one_list}'s one test list scored with each split's model)"
    return text


def unmapped_rule(unmapped: int, family: str) -> str:
    """What the conventions say of the first ``unmapped`` frames of each video, which the
    published procedure of ``family`` gives no map."""
    if not unmapped:
        return "none: every frame with ground truth is scored"
    return (
        f"frames 1-{unmapped} of every video not scored: the published {family} procedure "
        f"gives them no map and its evaluation never reads them (warm-up 'reference'); "
        "their fixations still count among the sAUC negatives of the other frames"
    )
