"""The shipped DAC codec (``mlx_speech/assets/dac/hybrid50_cpu``): it loads in both frameworks
from the package, round-trips speech at its 50 Hz / 4.05 kbps, and is better than the same
structure untrained (the training here did something)."""

from __future__ import annotations

import json
from importlib.resources import files

import mlx.core as mx
import numpy as np
import pytest

import mlx_speech
from mlx_speech.audio.metrics import mel_distance
from mlx_speech.audio.synth import speechlike
from mlx_speech.models.dac.model import DACModel

FOLDER = files("mlx_speech.assets") / "dac" / "hybrid50_cpu"


def test_card_and_weights_are_shipped():
    card = json.loads((FOLDER / "card.json").read_text())
    assert card["steps"] >= 100 and card["preset"] == "hybrid_50hz"
    size = (FOLDER / "model.safetensors").stat().st_size if hasattr(FOLDER, "stat") else None
    assert size is None or size < 20 * 2 ** 20


def test_loads_and_round_trips_better_than_untrained():
    torch_ref = pytest.importorskip("torch_ref")
    model = mlx_speech.load(str(FOLDER))
    assert model.sample_rate == 16000 and model.frame_rate == 50 and model.spec.causal
    assert model.codebook_sizes == [2048] + [1024] * 7
    wav = (0.5 * speechlike(sr=16000, seconds=1.0, f0=120.0, seed=3)).astype(np.float32)
    codes = model.encode(mx.array(wav[None]))
    out = np.array(model.decode(codes))[0, :len(wav)]
    assert codes.shape == (1, 8, 50) and np.isfinite(out).all()
    mx.random.seed(0)
    untrained = DACModel(model.spec)
    untrained.eval()
    base = np.array(untrained(mx.array(wav[None])))[0]
    assert mel_distance(wav, out, sample_rate=16000) < 0.8 * mel_distance(wav, base, sample_rate=16000)
    t = torch_ref.load(str(FOLDER))
    import torch

    with torch.no_grad():
        assert (t.encode(torch.from_numpy(wav[None])).numpy() == np.array(codes)).mean() > 0.99
