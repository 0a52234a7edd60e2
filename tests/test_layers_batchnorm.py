"""BatchNorm (channels last) against ``torch.nn.BatchNorm1d``, its buffers in both frameworks,
and the Conformer convolution module with ``norm="batch"``."""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

from convert.parity import copy_mlx_to_torch
from mlx_speech.layers.conformer import ConformerConvModule
from mlx_speech.layers.norms import BatchNorm
from mlx_speech.weights.core import param_kinds
from torch_ref.layers.conformer import ConformerConvModule as TConformerConvModule
from torch_ref.layers.norms import BatchNorm as TBatchNorm


def _reference(dim: int) -> torch.nn.BatchNorm1d:
    ref = torch.nn.BatchNorm1d(dim, eps=1e-5, momentum=0.1)
    with torch.no_grad():
        ref.weight.copy_(torch.linspace(0.5, 1.5, dim))
        ref.bias.copy_(torch.linspace(-0.2, 0.3, dim))
    return ref


@pytest.mark.parametrize("shape", [(7, 6), (3, 5, 6)])
def test_matches_torch_batchnorm1d_in_train_and_eval(rng, shape):
    dim = shape[-1]
    ref = _reference(dim)
    m, t = BatchNorm(dim=dim), TBatchNorm(dim=dim)
    m.weight, m.bias = mx.array(ref.weight.detach().numpy()), mx.array(ref.bias.detach().numpy())
    copy_mlx_to_torch(m, t)
    for step in range(3):  # three training batches: the running statistics follow torch's
        x = (rng.standard_normal(shape) * (1 + step) + step).astype(np.float32)
        xt = torch.from_numpy(x)
        want = ref(xt if xt.dim() == 2 else xt.transpose(1, 2))
        want = (want if xt.dim() == 2 else want.transpose(1, 2)).detach().numpy()
        np.testing.assert_allclose(np.array(m(mx.array(x))), want, atol=2e-6)
        np.testing.assert_allclose(t(xt).detach().numpy(), want, atol=2e-6)
    for name in ("running_mean", "running_var"):
        want = getattr(ref, name).numpy()
        np.testing.assert_allclose(np.array(getattr(m, name)), want, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(getattr(t, name).numpy(), want, rtol=1e-6, atol=1e-7)
    ref.eval(), m.eval(), t.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    xt = torch.from_numpy(x)
    want = ref(xt if xt.dim() == 2 else xt.transpose(1, 2))
    want = (want if xt.dim() == 2 else want.transpose(1, 2)).detach().numpy()
    np.testing.assert_allclose(np.array(m(mx.array(x))), want, atol=2e-6)
    np.testing.assert_allclose(t(xt).detach().numpy(), want, atol=2e-6)


def test_buffers_are_saved_but_never_trained():
    m, t = BatchNorm(dim=4), TBatchNorm(dim=4)
    assert set(dict(m.parameters())) == {"weight", "bias", "running_mean", "running_var"}
    assert set(dict(m.trainable_parameters())) == {"weight", "bias"}
    m.unfreeze()  # a parent's unfreeze() does not make the statistics trainable
    assert set(dict(m.trainable_parameters())) == {"weight", "bias"}
    assert set(t.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    assert {n for n, _ in t.named_buffers()} == {"running_mean", "running_var"}
    assert set(param_kinds(m).values()) == {"plain"} == set(param_kinds(t).values())

    def loss(model, x):
        return model(x).sum()

    m.train()
    x = mx.array(np.arange(12, dtype=np.float32).reshape(3, 4))
    _, grads = nn.value_and_grad(m, loss)(m, x)
    assert set(grads) == {"weight", "bias"}
    assert float(m.running_mean[0]) == pytest.approx(0.1 * 4.0)  # the forward updated it


def test_errors():
    with pytest.raises(ValueError, match="more than one value"):
        BatchNorm(dim=3)(mx.zeros((1, 3)))
    with pytest.raises(ValueError, match="more than one value"):
        TBatchNorm(dim=3)(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="last axis"):
        BatchNorm(dim=3)(mx.zeros((2, 4)))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(dim=3, momentum=2.0)
    with pytest.raises(ValueError, match="norm must be"):
        ConformerConvModule(dim=8, kernel_size=3, norm="group")


@pytest.mark.parametrize("train", [False, True])
def test_conformer_conv_module_with_batchnorm_parity(rng, train):
    kw = dict(dim=8, kernel_size=3, norm="batch")
    m, t = ConformerConvModule(**kw), TConformerConvModule(**kw)
    assert isinstance(m.norm, BatchNorm) and isinstance(t.norm, TBatchNorm)
    m.norm.running_mean = mx.array(rng.standard_normal(8).astype(np.float32) * 0.1)
    copy_mlx_to_torch(m, t)
    m.train(train), t.train(train)
    x = rng.standard_normal((2, 9, 8)).astype(np.float32)
    np.testing.assert_allclose(np.array(m(mx.array(x))), t(torch.from_numpy(x)).detach().numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(np.array(m.norm.running_var), t.norm.running_var.numpy(), atol=1e-6)
    default = ConformerConvModule(dim=8, kernel_size=3)  # unchanged: LayerNorm, same keys
    assert "running_mean" not in dict(default.norm.parameters())
