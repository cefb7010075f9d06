"""The hidden states of a recurrent model's interleaved sequences (UNISAL).

A recurrent family's published procedure cuts a video into P interleaved sequences:
frame t is the next step of sequence t mod P, and frames 0 ... P-1 each start theirs from
the zero state. ``InterleavedStates`` holds the P states between engine calls (memory:
P states, whatever the video's length) and checks that frames arrive as the recurrence
needs them: every frame, in order, a video starting at frame 0.

The model (``recurrent = True``) is called as ``model(frames, states, slots)`` with
frames (B, 3, h, w) in time order, the states (P, C, h', w') and each frame's sequence
(``slots``); it returns (raw maps (B, h, w), the states after these frames). Frames of
one call may hold several steps of a sequence: the model runs them in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Zeros = Callable[[int], torch.Tensor]  # count -> that many zero states


class InterleavedStates:
    """The states of ``period`` interleaved sequences of one video at a time."""

    def __init__(self, period: int = 1):
        self.restart(period)

    def restart(self, period: int) -> None:
        """Forget every state: the next frame must be a video's first (index 0)."""
        if period < 1:
            raise ValueError("a recurrence needs at least one sequence")
        self.period = period
        self.states: torch.Tensor | None = None  # (P, C, h', w')
        self.next_index = 0

    def prepare(self, indices: Sequence[int], zeros: Zeros) -> tuple[torch.Tensor, list[int]]:
        """(states, slots) for the frames ``indices`` (0-based, consecutive, in order):
        slot i mod P each; a frame i < P starts its sequence, so its slot is zero. A
        frame 0 starts a new video (every state renewed)."""
        if not indices:
            raise ValueError("no frames")
        first = indices[0]
        if first == 0:
            self.states, self.next_index = None, 0
        expected = list(range(self.next_index, self.next_index + len(indices)))
        if list(indices) != expected:
            raise RuntimeError(
                f"a recurrent model needs every frame in order: got frames {indices[0]}..."
                f"{indices[-1]} after frame {self.next_index - 1}"
            )
        fresh = zeros(self.period)
        if self.states is None or self.states.shape != fresh.shape:
            states = fresh
        else:
            states = self.states.clone()
            for i in indices:
                if i < self.period:
                    states[i] = fresh[i]
        return states, [i % self.period for i in indices]

    def update(self, states: torch.Tensor, indices: Sequence[int]) -> None:
        """Keep the states after the frames ``indices``."""
        self.states = states
        self.next_index = indices[-1] + 1
