"""Where restore windows fall and the stream that walks them (framework-free; used by the MLX
model and its torch_ref twin alike).

The restorer sees ``W`` input samples at a time (16 kHz, whole backbone frames): window ``k``
covers ``[k S, k S + W)`` of the input, ``S = W - O``; the last window is the first that reaches
the end ``N`` and covers ``[k S, N)``, zero-padded by two backbone frames so its output covers
every input sample. Window ``k``'s output lands at ``k S`` (scaled to the output rate). Two
neighbours overlap over ``O``; in the middle ``C`` of it their outputs are cross-faded with
complementary raised-cosine ramps (they sum to one), and outside it each window's own edge is
dropped: the first and last ``(O - C) / 2`` of a window are where its encoder saw least
context, and where the backbone's frame count falls short of the window's length.

Whether the input is one array or blocks of any size, the windows, their inputs and the
cross-fades are the same, so the output is identical; the stream holds at most one window of
input and one cross-fade of output.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class WindowPlan:
    """Sizes of the grid in 16 kHz input samples and in output samples.

    ``window``, ``overlap``, ``crossfade``: backbone frames; ``hop_in``: 16 kHz samples per
    frame; ``hop_out``: output samples per frame.
    """

    def __init__(self, *, window: int, overlap: int, crossfade: int, hop_in: int,
                 hop_out: int) -> None:
        if not (window > 2 * overlap and overlap - crossfade >= 4 and crossfade >= 0):
            raise ValueError(f"bad restore window: {window} frames, overlap {overlap}, "
                             f"crossfade {crossfade}")
        self.hop_in, self.hop_out = hop_in, hop_out
        self.window = window * hop_in
        self.step = (window - overlap) * hop_in
        self.pad = 2 * hop_in
        margin = (overlap - crossfade) // 2
        # output offsets, relative to the next window's start (k + 1) S
        self.fade_start = margin * hop_out
        self.fade_len = crossfade * hop_out
        t = (np.arange(self.fade_len, dtype=np.float64) + 0.5) / max(self.fade_len, 1)
        self.ramp_up = (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)

    @classmethod
    def from_spec(cls, spec: object) -> WindowPlan:
        return cls(window=spec.window_frames, overlap=spec.overlap_frames,
                   crossfade=spec.crossfade_frames, hop_in=spec.backbone_hop,
                   hop_out=spec.hop_length)

    def out_len(self, samples_in: int) -> int:
        """Output samples for ``samples_in`` 16 kHz input samples."""
        return samples_in * self.hop_out // self.hop_in

    def is_last(self, k: int, total: int) -> bool:
        return k * self.step + self.window >= total


class RestoreStream:
    """Feeds 16 kHz input through ``run`` window by window (see the module docstring).

    ``run(x)``: float32 ``(n,)`` 16 kHz input of one window -> float32 output ``(m,)`` at the
    model's rate, ``m`` at least ``out_len(n - pad)`` for a last window. ``push(x, final=)``
    returns the output that is complete so far; after ``final`` the stream is spent.
    """

    def __init__(self, plan: WindowPlan, run: Callable[[np.ndarray], np.ndarray]) -> None:
        self.plan, self.run = plan, run
        self._buf = np.zeros(0, np.float32)  # input from sample ``_base`` on
        self._base = 0  # absolute input index of _buf[0] (= start of the next window)
        self._k = 0  # next window
        self._tail = np.zeros(0, np.float32)  # the cross-fade of window k - 1, faded out
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def push(self, x: np.ndarray, *, final: bool = False) -> np.ndarray:
        if self._done:
            raise RuntimeError("restore stream already finished; start a new one")
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        self._buf = np.concatenate([self._buf, x]) if self._buf.size else x.copy()
        p = self.plan
        out: list[np.ndarray] = []
        # a full window is known not to be the last only once input runs past its end
        while self._buf.size > p.window:
            out.append(self._window(self._buf[:p.window], last=False))
            self._buf = self._buf[p.step:]
            self._base += p.step
            self._k += 1
        if final:
            if self._k > 0 and self._buf.size == 0:  # cannot happen: a last window is > O long
                raise AssertionError("restore stream: empty last window")
            out.append(self._window(self._buf, last=True))
            self._buf = np.zeros(0, np.float32)
            self._done = True
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _window(self, x: np.ndarray, *, last: bool) -> np.ndarray:
        p = self.plan
        n = x.shape[0]
        if last:
            x = np.concatenate([x, np.zeros(p.pad, np.float32)])
            want = p.out_len(n)
        else:
            want = p.out_len(p.step) + p.fade_start + p.fade_len
        y = np.asarray(self.run(np.ascontiguousarray(x)), dtype=np.float32).reshape(-1)
        if y.shape[0] < want:
            raise RuntimeError(f"restore window: the model returned {y.shape[0]} samples for "
                               f"{n} input samples, fewer than the {want} the window needs")
        y = y[:want]
        head = 0
        if self._k > 0:  # drop this window's leading edge, cross-fade in over the previous tail
            head = p.fade_start
            fade = y[head:head + p.fade_len] * p.ramp_up + self._tail
            y = np.concatenate([fade, y[head + p.fade_len:]])
        if last:
            return y
        keep = y.shape[0] - p.fade_len
        self._tail = y[keep:] * (1.0 - p.ramp_up)
        return y[:keep]


def restore_windows(x: np.ndarray, plan: WindowPlan,
                    run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The whole-signal result: ``x`` (16 kHz, ``(n,)``) through one :class:`RestoreStream`."""
    return RestoreStream(plan, run).push(x, final=True)
