"""Where the window lies in the source and what the output picture is.

The window is the largest crop of the source at the target aspect: it spans the whole
source along one axis and slides along the other (``axis``: 0, it moves left-right; 1,
up-down), so a camera path is one number per frame, the window's left (or top) edge in
source pixels. With bars (``pad``) the window is the whole frame, fitted inside the
output. Sides are made even where the source allows it (H.264's 4:2:0 needs even sizes).
"""

from __future__ import annotations

from dataclasses import dataclass

from salcli.reframing.options import ASPECT_TOLERANCE, ReframeOptions

AXIS_X = 0  # the window slides left-right: positions are x
AXIS_Y = 1  # the window slides up-down: positions are y


def even(v: int) -> int:
    """``v`` less one when odd (sides of 1 stay 1)."""
    return v - v % 2 if v >= 2 else v


@dataclass(frozen=True)
class Layout:
    """The window and the output of one video (sizes in pixels)."""

    src_w: int
    src_h: int
    axis: int  # AXIS_X or AXIS_Y
    crop_w: int  # the window
    crop_h: int
    out_w: int  # the output picture
    out_h: int
    pad: bool  # the whole frame fitted inside bars

    @property
    def span(self) -> int:
        """The source's length along the axis the window slides on."""
        return self.src_w if self.axis == AXIS_X else self.src_h

    @property
    def length(self) -> int:
        """The window's length along its axis."""
        return self.crop_w if self.axis == AXIS_X else self.crop_h

    @property
    def travel(self) -> int:
        """The largest position: the window's edge goes from 0 to this."""
        return self.span - self.length

    @property
    def centre(self) -> int:
        """The centre crop's position."""
        return self.travel // 2

    def window(self, position: int) -> tuple[int, int, int, int]:
        """(x, y, w, h) of the window at ``position`` along the axis."""
        if self.axis == AXIS_X:
            return int(position), (self.src_h - self.crop_h) // 2, self.crop_w, self.crop_h
        return (self.src_w - self.crop_w) // 2, int(position), self.crop_w, self.crop_h


def layout(width: int, height: int, opts: ReframeOptions) -> Layout:
    """The layout of a ``width`` x ``height`` source reframed with ``opts``."""
    aspect, source = opts.aspect, width / height
    wider = aspect > source * (1.0 + ASPECT_TOLERANCE)
    pad = opts.pad == "always" or (opts.pad == "auto" and wider)
    if pad:
        if aspect >= source:
            canvas = (even(max(width, round(height * aspect))), even(height))
        else:
            canvas = (even(width), even(max(height, round(width / aspect))))
        out = opts.size or canvas
        return Layout(width, height, AXIS_X, width, height, out[0], out[1], pad=True)
    if aspect < source:  # narrower: the full height, sliding left-right
        crop_w, crop_h, axis = (
            even(min(width, max(1, round(height * aspect)))),
            even(height),
            AXIS_X,
        )
    else:  # wider (or the same): the full width, sliding up-down
        crop_w, crop_h, axis = even(width), even(min(height, max(1, round(width / aspect)))), AXIS_Y
    out = opts.size or (crop_w, crop_h)
    return Layout(width, height, axis, crop_w, crop_h, out[0], out[1], pad=False)
