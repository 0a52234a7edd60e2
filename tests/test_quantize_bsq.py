"""BinarySphericalQuantizer: exact code round trips, entropy terms against numpy, parity, errors."""

import itertools
import math

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

from convert.parity import build_pair, compare
from mlx_speech.errors import CodesError, SpecError
from mlx_speech.quantize import BinarySphericalQuantizer
from mlx_speech.registry import get_model
from mlx_speech.specs.quantize import BSQSpec
from torch_ref.quantize import BinarySphericalQuantizer as TBinarySphericalQuantizer


def _numpy_entropies(u: np.ndarray, group_size: int, tau: float) -> tuple[float, float]:
    """Direct computation: enumerate each group's corners, softmax of 2 tau <u_g, c> / sqrt(L)."""
    u = u.reshape(-1, u.shape[-1]).astype(np.float64)
    n, bits = u.shape
    corners = np.array(list(itertools.product([-1.0, 1.0], repeat=group_size)))
    per_sample, codebook = 0.0, 0.0
    for g in range(bits // group_size):
        ug = u[:, g * group_size:(g + 1) * group_size]
        logits = 2.0 * tau * (ug @ corners.T) / math.sqrt(bits)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        per_sample += float(np.mean(-(p * np.log(p)).sum(1)))
        avg = p.mean(0)
        codebook += float(-(avg * np.log(avg)).sum())
    return per_sample, codebook


@pytest.mark.parametrize("preset", ["bsq_18", "bsq_36"])
def test_codes_round_trip_exactly(rng, preset):
    spec = BSQSpec.from_preset(preset)
    q = get_model("bsq").build_mlx(spec)
    k = spec.bits // (spec.code_bits or spec.bits)
    codes = mx.array(rng.integers(0, 2 ** (spec.code_bits or spec.bits), (3, k, 40)).astype(np.int32))
    latents = q.decode(codes)
    assert latents.shape == (3, 40, spec.bits)
    np.testing.assert_allclose(np.linalg.norm(np.array(latents), axis=-1), 1.0, rtol=1e-6)
    assert np.array_equal(np.array(q.encode(latents)), np.array(codes))
    assert np.array_equal(np.array(q.bits_to_codes(q.codes_to_bits(codes))), np.array(codes))
    x = mx.array(rng.standard_normal((3, 40, spec.bits)).astype(np.float32))
    c = q.encode(x)
    assert c.shape == (3, k, 40) and c.dtype == mx.int32
    assert np.array_equal(np.array(q.encode(q.decode(c))), np.array(c))
    tq = get_model("bsq").build_torch(spec)
    assert np.array_equal(tq.encode(torch.from_numpy(np.array(x))).numpy(), np.array(c))
    assert np.array_equal(tq.decode(torch.from_numpy(np.array(c))).numpy(), np.array(q.decode(c)))


def test_bit_order_is_msb_first_and_sign_of_zero_is_minus():
    q = BinarySphericalQuantizer(dim=4, bits=4, group_size=2)
    x = mx.array([[[1.0, -1.0, 0.0, 2.0]]])  # bits 1 0 0 1 -> 0b1001
    assert int(q.encode(x)[0, 0, 0]) == 9
    out = q(x)
    np.testing.assert_allclose(np.array(out.quantized)[0, 0], np.array([1, -1, -1, 1]) / 2.0)


@pytest.mark.parametrize("bits,group,tau", [(18, 9, 1.0), (36, 9, 3.0), (8, 4, 10.0)],
                         ids=["18-bits", "36-bits", "8-bits-sharp"])
def test_entropy_matches_direct_numpy(rng, bits, group, tau):
    q = BinarySphericalQuantizer(dim=bits, bits=bits, group_size=group,
                                 code_bits=18 if bits > 31 else None, inv_temperature=tau,
                                 gamma0=1.0, gamma=0.7, zeta=0.3, commitment_weight=0.25)
    x = rng.standard_normal((2, 30, bits)).astype(np.float32)
    out = q(mx.array(x))
    u = x / np.linalg.norm(x, axis=-1, keepdims=True)
    per_sample, codebook = _numpy_entropies(u, group, tau)
    np.testing.assert_allclose(float(out.losses["per_sample_entropy"]), per_sample, rtol=2e-5)
    np.testing.assert_allclose(float(out.losses["codebook_entropy"]), codebook, rtol=2e-5)
    penalty = per_sample - 0.7 * codebook
    commit = np.mean(np.sum((np.where(u > 0, 1, -1) / math.sqrt(bits) - u) ** 2, -1))
    np.testing.assert_allclose(float(out.loss), 0.25 * commit + 0.3 * penalty / tau, rtol=2e-5,
                               atol=1e-6)
    # the per-sample term factorises exactly into independent bits
    s = 1 / (1 + np.exp(-4 * tau * u.astype(np.float64) / math.sqrt(bits)))
    bitwise = np.mean(np.sum(-(s * np.log(s) + (1 - s) * np.log(1 - s)), -1))
    np.testing.assert_allclose(per_sample, bitwise, rtol=1e-9)
    tq = TBinarySphericalQuantizer(dim=bits, bits=bits, group_size=group,
                                   code_bits=18 if bits > 31 else None, inv_temperature=tau,
                                   gamma0=1.0, gamma=0.7, zeta=0.3, commitment_weight=0.25)
    tout = tq(torch.from_numpy(x))
    for k in out.losses:
        compare(out.losses[k], tout.losses[k], atol=1e-5, name=k)


def test_parity_with_projections_and_gradients(rng):
    m, t = build_pair(BinarySphericalQuantizer, TBinarySphericalQuantizer, dim=32, bits=18,
                      group_size=9, inv_temperature=2.0)
    x = rng.standard_normal((2, 25, 32)).astype(np.float32)
    om, ot = m(mx.array(x)), t(torch.from_numpy(x))
    assert np.array_equal(np.array(om.codes), ot.codes.numpy())
    compare(om.quantized, ot.quantized, atol=1e-5, name="quantized")
    compare(om.loss, ot.loss, atol=1e-5, name="loss")
    m.train()

    def fn(model, x):
        return model(x).loss

    _, grads = nn.value_and_grad(m, fn)(m, mx.array(x))
    assert float(mx.abs(grads["in_proj"]["weight"]).sum()) > 0  # entropy + commitment train in_proj


def test_errors():
    with pytest.raises(SpecError, match="at most 31 bits; set code_bits"):
        BSQSpec(bits=36, group_size=9).validate()
    with pytest.raises(SpecError, match="group_size must divide bits"):
        BSQSpec(bits=18, group_size=4).validate()
    q = BinarySphericalQuantizer(dim=36, bits=36, group_size=9, code_bits=18)
    with pytest.raises(CodesError, match="expected 2 codes per frame, got 1"):
        q.decode(mx.zeros((1, 1, 4), dtype=mx.int32))
    with pytest.raises(CodesError, match="out of range 0..262143"):
        q.decode(mx.full((1, 2, 4), 2 ** 18, dtype=mx.int32))
