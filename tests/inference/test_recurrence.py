"""The engine with a recurrent model: each frame the next step of its interleaved
sequence, the states carried across calls, a new video starting from zero states, every
frame in order or a clear error. A toy model whose state is the running sum of its
sequence's frames makes every step visible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from salcli.inference.clips import iter_clips, predict_key_frames
from salcli.inference.engine import Engine
from salcli.inference.recurrence import InterleavedStates
from salcli.media.decode import Frame
from salcli.models.unisal_procedure import FrameClips

SIZE = (4, 6)  # (h, w) of the toy frames


class RunningSum(nn.Module):
    """State (S, 1, h, w): the sum of its sequence's frames so far; map: that sum."""

    recurrent = True

    def __init__(self):
        super().__init__()
        self.calls: list[int] = []  # frames per call

    def zero_states(self, count, size, like):
        return torch.zeros(count, 1, *size, dtype=like.dtype, device=like.device)

    def forward(self, frames, states, slots):
        self.calls.append(len(slots))
        states = states.clone()
        out = []
        for x, s in zip(frames, slots, strict=True):  # in time order
            states[s] = states[s] + x[:1]
            out.append(states[s, 0].clone())
        return torch.stack(out), states


def _frames(values: list[float]) -> list[Frame]:
    out = []
    for i, v in enumerate(values):
        f = Frame(index=i, time=i / 25, rgb=None, height=SIZE[0], width=SIZE[1])
        f.tensor = torch.full((3, *SIZE), float(v))
        out.append(f)
    return out


def _run(engine: Engine, frames: list[Frame]) -> list[float]:
    clips = iter_clips(frames, FrameClips())
    maps = predict_key_frames(clips, engine, batch_size=engine.batch_size)
    return [float(m[0, 0]) for _, m in maps]


def test_states_carry_across_calls_and_restart_with_a_video():
    model = RunningSum()
    engine = Engine(model, device="cpu", precision="fp32", batch_size=3)
    assert engine.recurrent and not engine.channels_last and not engine.reuse
    engine.sequences.restart(2)  # two interleaved sequences
    values = [1, 10, 2, 20, 3, 30, 4]
    got = _run(engine, _frames(values))
    # sequence 0: 1, 1+2, 1+2+3, 1+2+3+4; sequence 1: 10, 30, 60
    assert got == [1, 10, 3, 30, 6, 60, 10]
    assert model.calls == [3, 3, 1] and engine.sequences.states.shape == (2, 1, *SIZE)
    # the next video starts from zero states, with another period
    engine.sequences.restart(3)
    assert _run(engine, _frames([5, 6, 7, 8])) == [5, 6, 7, 13]


def test_a_frame_out_of_order_is_refused():
    engine = Engine(RunningSum(), device="cpu", precision="fp32", batch_size=2)
    frames = _frames([1, 2, 3, 4])
    engine([[frames[0]], [frames[1]]])
    with pytest.raises(RuntimeError, match="every frame in order"):
        engine([[frames[3]]])


def test_interleaved_states_hold_one_state_per_sequence():
    states = InterleavedStates(5)

    def zeros(n: int) -> torch.Tensor:
        return torch.zeros(n, 2)

    for lo in range(0, 100, 10):  # a long video: the states never grow
        idx = list(range(lo, lo + 10))
        s, slots = states.prepare(idx, zeros)
        assert slots == [i % 5 for i in idx]
        states.update(s + 1, idx)
    assert states.states.shape == (5, 2) and np.all(states.states.numpy() == 10)
    with pytest.raises(ValueError):
        InterleavedStates(0)
