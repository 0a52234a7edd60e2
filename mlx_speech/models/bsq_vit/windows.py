"""Where BSQ-ViT's windows fall and the streams that walk them (framework-free, shared by both
frameworks: the model hands in its window functions and array helpers).

The tokenizer codes ``context_frames`` codec frames at a time on a fixed grid from the first
sample (:func:`window_starts`); the vocoder turns the decoded mel into audio window by window
on the same grid, in mel frames (:class:`VocodeSchedule`). Both the batch calls and the
streaming ``*_step`` calls of :class:`~mlx_speech.models.bsq_vit.model.BSQViTModel` (and its
torch_ref twin) walk these schedules, and each window is computed from the same input slice
with the same shapes whichever way the input arrived, so streamed output equals the batch
output exactly: :class:`Chunker` cuts input into whole windows (holding back a partial one
until more arrives or the input ends) and :class:`VocodeStream` runs the vocoder schedule.
Keeping this here means the two frameworks cannot drift apart.

Vocoder windows (``window`` mel frames, ``margin``, ``crossfade`` frames of ``hop`` samples,
``fade = crossfade * hop`` samples, ``half = fade // 2``): window ``w`` owns output samples
``[w * window * hop, (w + 1) * window * hop)``; the vocoder sees mel frames
``[w * window - margin, (w + 1) * window + margin)`` clipped to the input, so a vocoder whose
receptive field fits in the margin gives, inside the window, the whole-utterance result. At the
boundary ``p`` between two windows the outputs are mixed linearly over samples
``[p - half, p - half + fade)`` (weight ``(j + 0.5) / fade`` on the right window's sample
``j``); the left window's part of that region is held back as the *tail* until the right
window is vocoded. A window is vocoded once ``margin`` frames past its end are in (or at the
end of the input), which is the look-ahead of ``decode_step``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

Array = Any  # an mx.array or a torch.Tensor; only slicing and arithmetic are used here


def take(x: Array, axis: int, start: int, stop: int | None = None) -> Array:
    """``x[..., start:stop, ...]`` along ``axis`` (any framework)."""
    return x[(slice(None),) * axis + (slice(start, stop),)]


def window_starts(total: int, size: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of consecutive windows of ``size`` over ``total`` items; the
    last may be shorter."""
    return [(s, min(s + size, total)) for s in range(0, total, size)]


@dataclasses.dataclass(frozen=True)
class VocodeStep:
    """One vocoder window: mel frames ``[first, stop)`` go to the vocoder, whose output sample
    ``i`` is absolute sample ``first * hop + i``. The first ``fade`` samples of what it emits,
    from ``start``, are cross-faded with the held tail; ``[start + fade, end)`` is emitted as
    it is; ``[end, hold_stop)`` is held as the next tail."""

    index: int
    first: int
    stop: int
    start: int
    fade: int
    end: int
    hold_stop: int


class VocodeSchedule:
    """The windowed vocoder's bookkeeping (see the module docstring); one per stream."""

    def __init__(self, *, window: int, margin: int, crossfade: int, hop: int) -> None:
        if window < 1 or margin < 0 or not 0 <= crossfade <= min(margin, window) or hop < 1:
            raise ValueError(f"vocoder windows: need window >= 1 and 0 <= crossfade <= "
                             f"min(margin, window), got window={window}, margin={margin}, "
                             f"crossfade={crossfade}")
        self.window, self.margin, self.hop = window, margin, hop
        self.fade = crossfade * hop
        self.half = self.fade // 2
        self.reset()

    def reset(self) -> None:
        self.index = 0  # next window to vocode
        self.frames = 0  # mel frames received
        self.emitted = 0  # output samples returned
        self.held = 0  # samples of tail held for the next cross-fade

    def add(self, frames: int) -> None:
        self.frames += frames

    @property
    def keep_from(self) -> int:
        """The first mel frame a later window can still need."""
        return max(0, self.index * self.window - self.margin)

    def next(self, final: bool) -> VocodeStep | None:
        """The next window to vocode now, or None (it needs more frames, or all are done).
        ``final``: no frames will follow, so windows near the end are clipped to the input.

        Nothing is held after the last window: a window vocoded before ``final`` has ``margin``
        frames after it, so it is never the last one (with no margin there is no cross-fade).
        """
        w, n = self.index, self.frames
        begin, end_frame = w * self.window, (w + 1) * self.window
        if begin >= n or (not final and n < end_frame + self.margin):
            return None
        first, stop = max(0, begin - self.margin), min(n, end_frame + self.margin)
        last = final and end_frame >= n
        start = self.emitted
        fade = min(self.held, n * self.hop - start) if final else self.held
        end = n * self.hop if last else end_frame * self.hop - self.half
        hold_stop = end if last else min(end + self.fade, stop * self.hop)
        self.index, self.emitted, self.held = w + 1, end, hold_stop - end
        return VocodeStep(w, first, stop, start, fade, end, hold_stop)


class Chunker:
    """Cuts a stream along ``axis`` into windows of ``size``; a partial window is held back
    until more input arrives, or returned as the last (shorter) window when the input ends.
    ``cat(parts, axis)`` concatenates arrays of the model's framework."""

    def __init__(self, size: int, axis: int, cat: Callable[[list[Array], int], Array]) -> None:
        self.size, self.axis, self.cat = size, axis, cat
        self.held: Array | None = None

    def feed(self, x: Array, final: bool) -> list[Array]:
        """The windows complete after ``x``; ``final``: the input ends with ``x``."""
        if x.shape[self.axis]:
            self.held = x if self.held is None else self.cat([self.held, x], self.axis)
        out = []
        n = 0 if self.held is None else self.held.shape[self.axis]
        while n >= self.size or (final and n > 0):
            step = min(self.size, n)
            out.append(take(self.held, self.axis, 0, step))
            self.held, n = take(self.held, self.axis, step), n - step
        if final or n == 0:
            self.held = None
        return out


class VocodeStream:
    """Mel ``(B, T, n_mels)`` in pieces -> waveform pieces, by :class:`VocodeSchedule`.

    ``vocode(mel (B, n, M)) -> (B, n * hop)`` is the model's one-window vocoder; ``ramp(n,
    fade)`` returns ``(j + 0.5) / fade`` for ``j < n`` as a float32 array of its framework.
    """

    def __init__(self, schedule: VocodeSchedule, *, vocode: Callable[[Array], Array],
                 cat: Callable[[list[Array], int], Array],
                 ramp: Callable[[int, int], Array]) -> None:
        self.schedule, self.vocode, self.cat, self.ramp = schedule, vocode, cat, ramp
        self.reset()

    def reset(self) -> None:
        self.schedule.reset()
        self.mel: Array | None = None  # mel frames from ``self.offset`` on
        self.offset = 0
        self.tail: Array | None = None

    def feed(self, mel: Array | None, final: bool) -> list[Array]:
        """Waveform pieces ``(B, t)`` now complete after ``mel`` (None: nothing new)."""
        if mel is not None and mel.shape[1]:
            self.mel = mel if self.mel is None else self.cat([self.mel, mel], 1)
            self.schedule.add(mel.shape[1])
        out = []
        hop = self.schedule.hop
        while (step := self.schedule.next(final)) is not None:
            y = self.vocode(take(self.mel, 1, step.first - self.offset, step.stop - self.offset))
            base = step.first * hop
            if step.fade:
                r = self.ramp(step.fade, self.schedule.fade)
                right = take(y, 1, step.start - base, step.start + step.fade - base)
                out.append(take(self.tail, 1, 0, step.fade) * (1 - r) + right * r)
            out.append(take(y, 1, step.start + step.fade - base, step.end - base))
            self.tail = take(y, 1, step.end - base, step.hold_stop - base)
            keep = self.schedule.keep_from
            self.mel, self.offset = take(self.mel, 1, keep - self.offset), keep
        if final:
            self.reset()
        return out
