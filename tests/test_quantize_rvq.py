"""ResidualVQ and SplitResidualVQ: per-level sizes, fewer levels, dropout, init order, errors."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from convert.parity import build_pair, compare
from mlx_speech.errors import CodesError
from mlx_speech.quantize import ResidualVQ, SplitResidualVQ
from mlx_speech.registry import get_model
from mlx_speech.specs.quantize import EMACodebookSpec, RVQSpec, SplitRVQSpec
from torch_ref.quantize import ResidualVQ as TResidualVQ
from torch_ref.quantize import SplitResidualVQ as TSplitResidualVQ

PLAIN = EMACodebookSpec(kmeans_init=False)


def _x(rng, b=2, f=25, d=16):
    return rng.standard_normal((b, f, d)).astype(np.float32)


def test_per_level_sizes_codes_and_fewer_levels(rng):
    rvq = ResidualVQ(dim=16, codebook_sizes=[64] + [8] * 3, ema=EMACodebookSpec(kmeans_iters=3))
    for _ in range(4):  # k-means initialises one level per step
        rvq(mx.array(_x(rng, b=4, f=50)))
    rvq.eval()
    x = mx.array(_x(rng))
    codes = rvq.encode(x)
    assert codes.shape == (2, 4, 25) and codes.dtype == mx.int32
    assert int(codes[:, 0].max()) >= 8  # the first level really has 64 codes
    assert int(codes[:, 1:].max()) < 8
    out = rvq(x)
    assert np.array_equal(np.array(out.codes), np.array(codes))
    assert np.array_equal(np.array(out.quantized), np.array(rvq.decode(codes)))
    # inference with fewer levels is a prefix, and more levels reconstruct better
    errs = []
    for k in range(1, 5):
        ck = rvq.encode(x, num_levels=k)
        assert np.array_equal(np.array(ck), np.array(codes[:, :k]))
        errs.append(float(mx.mean((rvq.decode(ck) - x) ** 2)))
        assert np.array_equal(np.array(rvq(x, num_levels=k).quantized), np.array(rvq.decode(ck)))
    assert errs == sorted(errs, reverse=True)


def test_kmeans_init_level_by_level(rng):
    """moshi's rule: level i may initialise only after level i-1 was ready before the call."""
    rvq = ResidualVQ(dim=8, codebook_sizes=[16, 16, 16], ema=EMACodebookSpec(kmeans_iters=2))
    for step in range(3):
        rvq(mx.array(_x(rng, d=8, f=40)))
        ready = [lv.codebook.is_initialized() for lv in rvq.levels]
        assert ready == [i <= step for i in range(3)], (step, ready)


def test_quantizer_dropout_truncates_sum_per_item(rng):
    mx.random.seed(0)
    rvq = ResidualVQ(dim=16, codebook_sizes=[32] * 4, quantizer_dropout=1.0, ema=PLAIN, seed=3)
    x = mx.array(_x(rng, b=8))
    out = rvq(x)  # training mode: every item keeps a random prefix of levels
    kept = np.array([[float(mx.abs(q[b]).max()) > 0 for q in out.levels] for b in range(8)])
    n_kept = kept.sum(1)
    assert np.all(kept == (np.arange(4)[None] < n_kept[:, None]))  # prefixes
    assert len(set(n_kept.tolist())) > 1 and n_kept.min() >= 1
    assert out.codes.shape == (8, 4, 25)  # codes of all levels are still produced
    rvq.eval()  # no dropout at inference
    assert np.array_equal(np.array(rvq(x).quantized), np.array(rvq.decode(rvq.encode(x))))


def test_split_rvq_sums_groups_fed_the_same_input(rng):
    mx.random.seed(0)
    split = SplitResidualVQ(dim=16, rvq_dim=8, first_sizes=[32], rest_sizes=[16] * 3, ema=PLAIN)
    split.eval()
    x = mx.array(_x(rng))
    out = split(x)
    assert out.codes.shape == (2, 4, 25)
    first = split.rvq_first.decode(split.rvq_first.encode(x))
    rest = split.rvq_rest.decode(split.rvq_rest.encode(x))  # the rest group sees x, not a residual
    compare(out.quantized, first + rest, atol=1e-6, name="split sum")
    assert np.array_equal(np.array(split.encode(x)), np.array(out.codes))
    assert np.array_equal(np.array(split.encode(x, num_levels=1)), np.array(out.codes[:, :1]))
    compare(split.decode(out.codes[:, :2]), split(x, num_levels=2).quantized, atol=1e-6)
    assert "in_proj" in split.rvq_first and "bias" not in split.rvq_first.in_proj  # Mimi: 1x1, no bias


@pytest.mark.parametrize("factorised", [False, True], ids=["plain", "factorised-cosine"])
def test_parity_eval_codes_and_decode(rng, factorised):
    kw = dict(dim=16, codebook_sizes=[64, 32, 32], rvq_dim=12, ema=PLAIN)
    if factorised:
        kw.update(codebook_dim=4, l2_normalize=True)
    m, t = build_pair(ResidualVQ, TResidualVQ, **kw)
    x = _x(rng, b=3, f=40)
    cm, ct = m.encode(mx.array(x)), t.encode(torch.from_numpy(x))
    assert ct.dtype == torch.int32
    assert np.array_equal(np.array(cm), ct.numpy())
    compare(m.decode(cm), t.decode(ct), atol=1e-5, name="decode")
    compare(m(mx.array(x)).quantized, t(torch.from_numpy(x)).quantized, atol=1e-5, name="call")


def test_registry_presets_build_both_sides():
    spec = SplitRVQSpec.from_preset("mimi")
    entry = get_model("split_residual_vq")
    m, t = entry.build_mlx(spec), entry.build_torch(spec)
    assert m.codebook_sizes == t.codebook_sizes == [2048] * 8
    assert tuple(m.rvq_first.in_proj.weight.shape) == tuple(t.rvq_first.in_proj.weight.shape) == (256, 512)
    assert not m.rvq_rest.levels[0].codebook.laplace_smoothing  # Mimi: clamp only
    rvq = get_model("residual_vq").build_mlx(RVQSpec.from_preset("codec_2048_1024x7"))
    assert rvq.codebook_sizes == [2048] + [1024] * 7
    dac = RVQSpec.from_preset("dac_44k")
    assert (dac.codebook_dim, dac.l2_normalize, len(dac.codebook_sizes)) == (8, True, 9)


def test_user_errors(rng):
    rvq = ResidualVQ(dim=16, codebook_sizes=[32, 8], ema=PLAIN)
    with pytest.raises(CodesError, match="num_levels must be an int in 1..2, got 3"):
        rvq.encode(mx.array(_x(rng)), num_levels=3)
    with pytest.raises(CodesError, match="code 8 in codebook 1 is out of range 0..7"):
        rvq.decode(mx.array([[[0, 1], [2, 8]]], dtype=mx.int32))
    with pytest.raises(CodesError, match="got 3 codebooks, expected 1..2"):
        rvq.decode(mx.zeros((1, 3, 5), dtype=mx.int32))
    with pytest.raises(CodesError, match="codes must be integers"):
        rvq.decode(mx.zeros((1, 2, 5)))
    with pytest.raises(CodesError, match=r"expected codes of shape \(B, K, F\)"):
        rvq.decode(mx.zeros((2, 5), dtype=mx.int32))
    t = TResidualVQ(dim=16, codebook_sizes=[32, 8], ema=PLAIN)
    with pytest.raises(CodesError, match="code 8 in codebook 1 is out of range 0..7"):
        t.decode(torch.tensor([[[0, 1], [2, 8]]]))
    with pytest.raises(CodesError, match=r"\(B, F, 16\)"):
        t(torch.zeros(2, 16))
    split = TSplitResidualVQ(dim=16, rvq_dim=8, first_sizes=[32], rest_sizes=[16], ema=PLAIN)
    with pytest.raises(CodesError, match="code 16 in codebook 1"):
        split.decode(torch.tensor([[[0], [16]]]))
