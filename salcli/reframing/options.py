"""The options of ``salcli reframe``, declared once (as ``salcli.options`` declares
predict's): the API's ``reframe(video, **options)`` and the command's flags read this table.

The defaults, and why (docs/reframe.md says it at more length):

- ``aspect`` 9:16: the phone's portrait frame, the most common re-cut of 16:9 video.
- ``mode`` auto: a still camera where one window keeps the saliency of the shot
  (``still_threshold`` of what a per-frame best window keeps), else a tracked path.
- ``still_threshold`` 0.9: a still shot is preferred unless following the action keeps
  more than 1/0.9 (11 %) more of the saliency than the best fixed window.
- ``max_speed`` 0.5 source widths/s (heights for a vertical path): a pan across the whole
  frame takes 2 s, the pace of a slow, deliberate pan; ``max_accel`` 1.0 widths/s²
  reaches it in 0.5 s, so starts and stops are eased, never jerks.
- ``pad`` auto: bars only when the target is wider than the source (a portrait video
  made landscape would otherwise keep a third of its height or less); ``bars`` blur: the
  frame itself, blurred, fills them (what phone editors do), ``solid`` uses ``bar_color``.
- ``shot_threshold`` 27 and ``min_shot`` 15 frames: PySceneDetect's content detector's own
  defaults (its authors' tuning on broadcast and film).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salcli.errors import OptionError
from salcli.options import option, parse_pair

REFRAME_FORMATS = ("mp4", "json", "debug")
MODES = ("auto", "still", "track")
PAD_MODES = ("auto", "never", "always")
BAR_STYLES = ("blur", "solid")
DEFAULT_ASPECT = "9:16"
DEFAULT_STILL_THRESHOLD = 0.9  # share of the per-frame best window's saliency
DEFAULT_MAX_SPEED = 0.5  # source widths (or heights) per second
DEFAULT_MAX_ACCEL = 1.0  # source widths (or heights) per second per second
DEFAULT_SHOT_THRESHOLD = 27.0  # PySceneDetect ContentDetector's default
DEFAULT_MIN_SHOT = 15  # frames, PySceneDetect ContentDetector's default
ASPECT_TOLERANCE = 0.01  # relative: --size and --aspect agree within this
MAX_ASPECT = 16.0  # neither side of an aspect more than this times the other


def parse_aspect(value: str | float | tuple[int, int]) -> float:
    """ "9:16", "9x16", "0.5625" or (9, 16) -> width / height."""
    try:
        if isinstance(value, tuple):
            w, h = (float(v) for v in value)
        elif isinstance(value, int | float):
            w, h = float(value), 1.0
        else:
            text = str(value).strip().lower().replace("x", ":").replace("/", ":")
            w, h = (float(v) for v in text.split(":")) if ":" in text else (float(text), 1.0)
    except (TypeError, ValueError):
        raise OptionError("aspect", f"{value!r}: expected W:H, e.g. 9:16") from None
    if not (w > 0 and h > 0) or max(w / h, h / w) > MAX_ASPECT:
        raise OptionError("aspect", f"{value!r}: expected positive sides within 1:{MAX_ASPECT:g}")
    return w / h


def parse_out_size(value: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """ "1080x1920" or (1080, 1920) -> (width, height); None: the crop's own size."""
    return parse_pair(value, "size", "WxH, e.g. 1080x1920", minimum=2)


def parse_reframe_formats(value: str | tuple[str, ...]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    formats = [str(f).strip().lower() for f in items if str(f).strip()]
    if not formats or any(f not in REFRAME_FORMATS for f in formats):
        raise OptionError("formats", f"{value!r}: choose from {', '.join(REFRAME_FORMATS)}")
    return tuple(dict.fromkeys(formats))


def parse_color(value: str | tuple[int, int, int]) -> tuple[int, int, int]:
    """ "#102030", "102030" or (16, 32, 48) -> (r, g, b)."""
    if isinstance(value, tuple):
        rgb = value
    else:
        text = str(value).strip().lstrip("#")
        if len(text) != 6:
            raise OptionError("bar_color", f"{value!r}: expected RRGGBB, e.g. 000000")
        try:
            rgb = tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            raise OptionError("bar_color", f"{value!r}: expected RRGGBB, e.g. 000000") from None
    if len(rgb) != 3 or any(not 0 <= int(c) <= 255 for c in rgb):
        raise OptionError("bar_color", f"{value!r}: expected three values in 0..255")
    return tuple(int(c) for c in rgb)  # type: ignore[return-value]


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise OptionError(name, f"{value!r}: choose from {', '.join(choices)}")


def _in_range(name: str, value: float, low: float, high: float, *, open_low=False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and (low < value if open_low else low <= value) and value <= high
    if not ok:
        bracket = "(" if open_low else "["
        raise OptionError(name, f"must be a number in {bracket}{low:g}, {high:g}], got {value!r}")


@dataclass(frozen=True)
class ReframeOptions:
    """How a video is reframed: the target, the camera path, the shots, the outputs."""

    # --- the target ---------------------------------------------------------------------
    aspect: float = option(
        DEFAULT_ASPECT,
        "--aspect",
        "-a",
        help="Target aspect ratio W:H (9:16, 1:1, 4:5, 16:9...).",
        cli_type=str,
    )
    size: tuple[int, int] | None = option(
        None,
        "--size",
        help="Output size WxH, the crop scaled to it [default: the largest crop of the "
        "source at the aspect, unscaled]; its ratio must be the aspect's.",
        cli_type=str,
    )
    # --- the camera path -------------------------------------------------------------------
    mode: str = option(
        "auto",
        "--mode",
        help="auto: a still camera per shot where one window keeps the saliency "
        "(--still-threshold), else a tracked path; still: always still; track: always "
        "a path.",
    )
    still_threshold: float = option(
        DEFAULT_STILL_THRESHOLD,
        "--still-threshold",
        help="With --mode auto: a shot is still when the best fixed window keeps at least "
        "this share of the saliency a window moved to the best place in every frame keeps.",
    )
    max_speed: float = option(
        DEFAULT_MAX_SPEED,
        "--max-speed",
        help="Fastest pan, in source widths per second (heights for a vertical path).",
    )
    max_accel: float = option(
        DEFAULT_MAX_ACCEL,
        "--max-accel",
        help="Largest change of pan speed, in source widths per second per second.",
    )
    pad: str = option(
        "auto",
        "--pad",
        help="Bars instead of a crop: auto (when the target is wider than the source), "
        "never (always crop), always (the whole frame, with bars).",
    )
    bars: str = option("blur", "--bars", help="Bars: blur (the frame, blurred) or solid.")
    bar_color: tuple[int, int, int] = option(
        "000000", "--bar-color", help="With --bars solid: RRGGBB.", cli_type=str
    )
    # --- the shots ---------------------------------------------------------------------------
    shot_threshold: float = option(
        DEFAULT_SHOT_THRESHOLD,
        "--shot-threshold",
        help="PySceneDetect content detector's threshold: a cut where the frame's change "
        "of hue, saturation and luma exceeds it (lower finds more cuts).",
    )
    min_shot: int = option(
        DEFAULT_MIN_SHOT, "--min-shot", help="Shortest shot, in frames (shorter cuts merged)."
    )
    # --- the maps and the outputs --------------------------------------------------------
    maps_from: Path | None = option(
        None,
        "--maps-from",
        help="Read the maps from predict's HDF5 stacks: a folder laid out as predict's -o "
        "(<folder>/<sub-folders>/<stem>.h5), or one .h5 for one video [default: run the "
        "model].",
    )
    formats: tuple[str, ...] = option(
        ("mp4",),
        "--format",
        "-f",
        help="Comma-separated outputs: mp4 (the reframed video), json (the crop window of "
        "every frame), debug (the source with its heat map and window, beside the crop).",
        cli_type=str,
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "aspect", parse_aspect(self.aspect))
        set_(self, "size", parse_out_size(self.size))
        if self.size is not None:
            ratio = self.size[0] / self.size[1]
            if abs(ratio / self.aspect - 1.0) > ASPECT_TOLERANCE:
                raise OptionError(
                    "size", f"{self.size[0]}x{self.size[1]} is not at the aspect {{aspect}}",
                    options=("aspect",),
                )  # fmt: skip
        _choice("mode", self.mode, MODES)
        _in_range("still_threshold", self.still_threshold, 0.0, 1.0)
        _in_range("max_speed", self.max_speed, 0.0, 100.0, open_low=True)
        _in_range("max_accel", self.max_accel, 0.0, 1000.0, open_low=True)
        _choice("pad", self.pad, PAD_MODES)
        _choice("bars", self.bars, BAR_STYLES)
        set_(self, "bar_color", parse_color(self.bar_color))
        _in_range("shot_threshold", self.shot_threshold, 0.0, 255.0, open_low=True)
        if not isinstance(self.min_shot, int) or self.min_shot < 1:
            raise OptionError(
                "min_shot", f"must be an integer of at least 1, got {self.min_shot!r}"
            )
        if self.maps_from is not None:
            set_(self, "maps_from", Path(self.maps_from))
        set_(self, "formats", parse_reframe_formats(self.formats))

    def replace(self, **changes: Any) -> ReframeOptions:
        return dataclasses.replace(self, **changes)

    def settings(self) -> dict[str, Any]:
        """What shapes the track and its renders (a record compares them on a re-run)."""
        skip = ("formats", "maps_from")
        out = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }
        out["size"] = None if self.size is None else list(self.size)
        out["bar_color"] = list(self.bar_color)
        return {f"reframe_{k}": v for k, v in out.items()}


def aspect_tag(aspect: float) -> str:
    """The name part of an aspect: 9:16 -> "9x16" (small integers where they fit)."""
    from fractions import Fraction

    f = Fraction(aspect).limit_denominator(32)
    if abs(float(f) / aspect - 1.0) < 1e-4:
        return f"{f.numerator}x{f.denominator}"
    return f"{aspect:.4f}".rstrip("0").replace(".", "p") + "x1"
