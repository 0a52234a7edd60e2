"""Upstream parity: vector-quantize-pytorch VectorQuantize / ResidualVQ state dicts load through
convert/vq_pytorch.py and give the same codes; moshi's EMA codebook folds bit-exactly."""

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_speech.weights.checkpoint import load_pickle_state
from mlx_speech.weights.mlx import load_torch_state_into_mlx
from convert.parity import compare
from convert.vq_pytorch import (convert_residual_vq, convert_vector_quantize, rvq_spec_from_state,
                                vq_spec_from_state)
from mlx_speech.errors import CheckpointError
from mlx_speech.quantize.codebook import EMACodebook
from mlx_speech.quantize.rvq import build_residual_vq
from mlx_speech.quantize.vq import build_vector_quantizer
from torch_ref.quantize.rvq import build_residual_vq as t_build_residual_vq
from torch_ref.quantize.vq import build_vector_quantizer as t_build_vector_quantizer


def _saved_state(module, tmp_path):
    """Save in upstream's own format (a torch pickle) and read it back the safe way."""
    path = tmp_path / "upstream.pt"
    torch.save(module.state_dict(), path)
    return load_pickle_state(path)


def _train_upstream(module, shape, steps=6, offset=1.0):
    gen = torch.Generator().manual_seed(0)
    module.train()
    for _ in range(steps):
        module(torch.randn(*shape, generator=gen) * 2 + offset)
    module.eval()


@pytest.mark.upstream
@pytest.mark.parametrize("cosine,trained", [(False, True), (True, True), (False, False)],
                         ids=["euclidean-trained", "cosine-trained", "euclidean-fresh"])
def test_vector_quantize_codes_match(tmp_path, cosine, trained):
    vqp = pytest.importorskip("vector_quantize_pytorch")
    torch.manual_seed(0)
    up = vqp.VectorQuantize(dim=32, codebook_size=64, codebook_dim=8, decay=0.8,
                            kmeans_init=trained, use_cosine_sim=cosine, threshold_ema_dead_code=2)
    if trained:
        _train_upstream(up, (4, 50, 32))
    up.eval()
    x = torch.randn(2, 40, 32) * 2 + 1
    with torch.no_grad():
        q_up, idx_up, _ = up(x)
    state = _saved_state(up, tmp_path)
    spec = vq_spec_from_state(state, l2_normalize=cosine)
    converted = convert_vector_quantize(state)
    m = load_torch_state_into_mlx(build_vector_quantizer(spec), converted)
    t = t_build_vector_quantizer(spec)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in converted.items()}, strict=True)
    m.eval()
    t.eval()
    assert np.array_equal(np.array(m.encode(mx.array(x.numpy()))), idx_up.numpy())
    assert np.array_equal(t.encode(x).numpy(), idx_up.numpy())
    compare(m(mx.array(x.numpy())).quantized, q_up, atol=1e-5, name="quantized")
    # the fold keeps upstream's codebook to one float32 rounding (exactly when untrained)
    embed = state["_codebook.embed"][0].numpy()
    rebuilt = np.array(m.codebook.codebook)
    if trained:
        np.testing.assert_allclose(rebuilt, embed, rtol=2.5e-7, atol=1e-30)
    else:
        assert np.array_equal(rebuilt, embed)


@pytest.mark.upstream
def test_residual_vq_codes_match(tmp_path):
    vqp = pytest.importorskip("vector_quantize_pytorch")
    torch.manual_seed(0)
    up = vqp.ResidualVQ(dim=32, codebook_size=64, num_quantizers=4, codebook_dim=8,
                        kmeans_init=True, decay=0.8)
    _train_upstream(up, (4, 50, 32), offset=0.0)
    x = torch.randn(2, 40, 32)
    with torch.no_grad():
        q_up, idx_up, _ = up(x)  # idx (B, F, K)
    state = _saved_state(up, tmp_path)
    spec = rvq_spec_from_state(state)
    assert spec.codebook_sizes == [64] * 4 and spec.rvq_dim == 8 and spec.proj_bias
    converted = convert_residual_vq(state)
    m = load_torch_state_into_mlx(build_residual_vq(spec), converted)
    m.eval()
    codes = np.array(m.encode(mx.array(x.numpy())))  # (B, K, F)
    assert np.array_equal(codes.transpose(0, 2, 1), idx_up.numpy())
    compare(m.decode(mx.array(codes)), q_up, atol=1e-5, name="decode")
    t = t_build_residual_vq(spec)
    t.load_state_dict({k: torch.from_numpy(v) for k, v in converted.items()}, strict=True)
    t.eval()
    assert np.array_equal(t.encode(x).numpy(), codes)


@pytest.mark.upstream
def test_unsupported_upstream_state_is_named():
    vqp = pytest.importorskip("vector_quantize_pytorch")
    state = vqp.VectorQuantize(dim=16, codebook_size=32).state_dict()
    state["_codebook.batch_mean"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unsupported upstream keys _codebook.batch_mean"):
        convert_vector_quantize(state)
    state = vqp.VectorQuantize(dim=16, codebook_size=32, heads=2,
                               separate_codebook_per_head=True).state_dict()
    with pytest.raises(CheckpointError, match=r"single head"):
        convert_vector_quantize(state)
    with pytest.raises(CheckpointError, match="missing upstream keys _codebook.initted"):
        convert_vector_quantize({"_codebook.embed": torch.zeros(1, 4, 2),
                                 "_codebook.cluster_size": torch.ones(1, 4)})


@pytest.mark.upstream
def test_moshi_codebook_folds_bit_exactly(rng):
    core_vq = pytest.importorskip("moshi.quantization.core_vq")
    up = core_vq.EuclideanCodebook(dim=8, codebook_size=32)
    up.embedding_sum.copy_(torch.from_numpy(rng.standard_normal((32, 8)).astype(np.float32)))
    up.cluster_usage.copy_(torch.from_numpy(rng.uniform(0, 2, 32).astype(np.float32)))
    up._initialized.fill_(1.0)
    up.eval()
    m = EMACodebook(size=32, dim=8)
    state = up.state_dict()
    m.load_weights([("embedding_sum", mx.array(state["embedding_sum"].numpy())),
                    ("cluster_usage", mx.array(state["cluster_usage"].numpy())),
                    ("initialized", mx.array(state["_initialized"].numpy()))])
    assert np.array_equal(np.array(m.codebook), up.embedding.numpy())
    x = torch.randn(50, 8)
    assert np.array_equal(np.array(m.encode(mx.array(x.numpy()))), up.encode(x).numpy())
