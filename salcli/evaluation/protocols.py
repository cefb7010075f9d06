"""The two published evaluation protocols, as data, and the texts that state them.

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
}

RESIZING = (
    "float prediction resized once to the ground truth's size with MATLAB imresize "
    "(bicubic, a=-0.5, antialiased when shrinking), no rounding or clipping between the "
    "two passes; equal sizes untouched"
)
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
