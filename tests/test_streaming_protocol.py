"""One streaming protocol: ``reset_state()`` on a model resets every stateful module in its tree,
including one it was not written for (both frameworks)."""

import mlx.core as mx
import mlx.nn as mnn
import numpy as np
import pytest
import torch
from torch import nn as tnn

from mlx_speech.layers.conv import Conv1d, ConvTranspose1d
from mlx_speech.models.mimi.model import MimiModel
from mlx_speech.models.mimi.spec import mimi_tiny
from mlx_speech.utils.streaming import Streaming, streaming_modules
from torch_ref.models.mimi.model import MimiModel as TorchMimi


class _CounterMLX(Streaming, mnn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._count = 5

    def _reset_own_state(self) -> None:
        self._count = 0


class _CounterTorch(Streaming, tnn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._count = 5

    def _reset_own_state(self) -> None:
        self._count = 0


@pytest.mark.parametrize("framework", ["mlx", "torch"])
def test_reset_reaches_a_new_stateful_module(framework):
    model = MimiModel(mimi_tiny()) if framework == "mlx" else TorchMimi(mimi_tiny())
    extra = _CounterMLX() if framework == "mlx" else _CounterTorch()
    model.decoder.extra = extra  # a stateful layer the model's code knows nothing about
    model.reset_state()
    assert extra._count == 0


def test_every_conv_of_mimi_is_reset():
    model = MimiModel(mimi_tiny())
    convs = [m for m in model.modules() if isinstance(m, (Conv1d, ConvTranspose1d))]
    assert len(convs) > 10 and set(map(id, convs)) <= set(map(id, streaming_modules(model)))
    model.encode_step(mx.array(np.random.default_rng(0).standard_normal((1, 100)).astype(np.float32)))
    assert any(getattr(c, "_buf", None) is not None for c in convs)
    model.reset_state()
    assert all(getattr(c, "_buf", None) is None and getattr(c, "_tail", None) is None for c in convs)
    assert model._samples_in == 0


def test_torch_reset_clears_conv_buffers():
    model = TorchMimi(mimi_tiny())
    with torch.no_grad():
        model.encode_step(torch.randn(1, 100))
    convs = [m for m in model.modules() if isinstance(m, Streaming) and hasattr(m, "_buf")]
    assert any(c._buf is not None for c in convs)
    model.reset_state()
    assert all(c._buf is None for c in convs)
