"""The restore window grid (framework-free): streamed in any block sizes it gives the
whole-signal result; the cross-fades sum to one, so a model that restores perfectly is
reproduced exactly across window borders."""

from __future__ import annotations

import numpy as np
import pytest

from mlx_speech.models.miipher2.spec import Miipher2Spec
from mlx_speech.models.miipher2.windows import RestoreStream, WindowPlan, restore_windows

PLAN = dict(window=20, overlap=8, crossfade=4, hop_in=320, hop_out=320)


def _frames_model(hop_in: int, hop_out: int):
    """A stand-in restorer with a backbone-like frame count (one frame short per window) whose
    output is the input resampled to the output grid by sample repetition."""
    def run(x: np.ndarray) -> np.ndarray:
        frames = x.shape[0] // hop_in - 1
        idx = (np.arange(frames * hop_out) * hop_in) // hop_out
        return x[idx]
    return run


@pytest.mark.parametrize("hop_out", [320, 480])
@pytest.mark.parametrize("n", [800, 5000, 6400, 6401, 20000, 33333])
def test_identity_model_is_reproduced_across_borders(n: int, hop_out: int) -> None:
    plan = WindowPlan(**{**PLAN, "hop_out": hop_out})
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    y = restore_windows(x, plan, _frames_model(320, hop_out))
    assert y.shape[0] == plan.out_len(n)
    ref = x[(np.arange(y.shape[0]) * 320) // hop_out]
    np.testing.assert_allclose(y, ref, atol=1e-6)


@pytest.mark.parametrize("block", [1, 317, 320, 4096, 6400, 100000])
def test_streaming_equals_whole(block: int) -> None:
    plan = WindowPlan(**PLAN)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(31000).astype(np.float32)
    # a "model" whose output depends on everything in its window (as attention does)
    def run(w: np.ndarray) -> np.ndarray:
        frames = w.shape[0] // 320 - 1
        return np.tanh(w[:frames * 320] + w.mean())
    whole = restore_windows(x, plan, run)
    stream = RestoreStream(plan, run)
    parts = [stream.push(x[i:i + block]) for i in range(0, x.size, block)]
    parts.append(stream.push(np.zeros(0, np.float32), final=True))
    streamed = np.concatenate(parts)
    assert streamed.shape == whole.shape == (31000,)
    np.testing.assert_array_equal(streamed, whole)
    with pytest.raises(RuntimeError, match="finished"):
        stream.push(x[:10])


def test_crossfade_is_smooth_between_different_windows() -> None:
    """Two windows that disagree (a constant per window) are blended over the cross-fade,
    never switched: the largest step between neighbouring samples stays small."""
    plan = WindowPlan(**PLAN)
    x = np.zeros(30000, np.float32)
    count = iter(range(100))

    def run(w: np.ndarray) -> np.ndarray:
        level = float(next(count))
        return np.full((w.shape[0] // 320 - 1) * 320, level, np.float32)
    y = restore_windows(x, plan, run)
    assert np.abs(np.diff(y)).max() < 2.0 / (plan.fade_len / 2)


def test_short_model_output_is_refused() -> None:
    plan = WindowPlan(**PLAN)
    with pytest.raises(RuntimeError, match="fewer"):
        restore_windows(np.zeros(20000, np.float32), plan, lambda w: w[:100])


def test_plan_from_spec_and_bad_plans() -> None:
    s = Miipher2Spec.from_preset("tiny")
    plan = WindowPlan.from_spec(s)
    assert plan.window == s.window_frames * 320 and plan.hop_out == s.hop_length
    with pytest.raises(ValueError):
        WindowPlan(window=10, overlap=6, crossfade=2, hop_in=320, hop_out=320)
    with pytest.raises(ValueError):
        WindowPlan(window=20, overlap=6, crossfade=4, hop_in=320, hop_out=320)
