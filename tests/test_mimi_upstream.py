"""Upstream parity: Kyutai's moshi ``MimiModel`` and transformers' ``MimiModel``, random init,
saved in their own formats and loaded through ``mlx_speech/models/mimi/formats.py`` into MLX and torch_ref.

Acceptance (issue 5): codes identical for 8 and 32 codebooks, decoded audio within 1e-4 of
moshi's; the same against transformers. moshi's codebooks start at zero (every code 0), so
they are filled randomly with ``cluster_usage = 1`` and ``_initialized = 1``; the layer scales
are raised from 0.01 so the transformers weigh in the output.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest
import torch

from mlx_speech.models.mimi.formats import detect_format
from mlx_speech.models.mimi.load import load_mimi
from torch_ref.models.mimi.load import load_mimi_torch
from mlx_speech.models.mimi.hf import hf_key_map
from mlx_speech.models.mimi.keys import apply_key_map
from convert.parity import compare
from mlx_speech.audio.synth import speechlike
from mlx_speech.models.mimi.spec import MimiSpec, mimi_202407

AUDIO_ATOL = 1e-4


def _randomize_upstream(model: torch.nn.Module, *, sum_name: str, flag_name: str,
                        layer_scale: float = 0.3, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith(sum_name):
                buf.copy_(torch.randn(buf.shape, generator=gen))
            elif name.endswith(("cluster_usage", flag_name)):
                buf.fill_(1.0)
        for name, p in model.named_parameters():
            if name.endswith("scale"):  # layer scales
                p.copy_(layer_scale * (0.5 + torch.rand(p.shape, generator=gen)))



def moshi_tiny(spec: MimiSpec, *, num_codebooks: int | None = None) -> torch.nn.Module:
    """A random-init moshi ``MimiModel`` shaped like ``spec`` with filled codebooks (seed 0)."""
    loaders = pytest.importorskip("moshi.models.loaders", reason="moshi not installed")
    seanet = {**loaders._seanet_kwargs, "dimension": spec.dimension, "n_filters": spec.n_filters,
              "ratios": spec.ratios}
    config = {
        "sample_rate": spec.sample_rate, "channels": 1, "frame_rate": spec.frame_rate,
        "seanet": seanet,
        "quantizer": {"dimension": spec.rvq_dim, "n_q": spec.total_codebooks,
                      "bins": spec.codebook_size, "input_dimension": spec.dimension,
                      "output_dimension": spec.dimension},
        "transformer": {**loaders._transformer_kwargs, "d_model": spec.dimension,
                        "num_heads": spec.num_heads, "num_layers": spec.num_layers,
                        "context": spec.context, "dim_feedforward": spec.ffn_dim,
                        "input_dimension": spec.dimension, "output_dimensions": [spec.dimension]},
    }
    torch.manual_seed(0)
    up = loaders.get_mimi(None, config, device="cpu",
                          num_codebooks=num_codebooks or spec.total_codebooks)
    _randomize_upstream(up, sum_name="embedding_sum", flag_name="_initialized", layer_scale=0.5)
    return up

def _wav(seconds: float = 1.0, batch: int = 1) -> np.ndarray:
    rows = [speechlike(sr=24000, seconds=seconds, f0=110.0 + 40 * b, seed=b) for b in range(batch)]
    return np.stack(rows).astype(np.float32)


# --- moshi ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moshi_pair(tmp_path_factory):
    loaders = pytest.importorskip(
        "moshi.models.loaders", reason="moshi not installed (pip install --no-deps moshi==0.2.13)")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    up = loaders.get_mimi(None, device="cpu", num_codebooks=8)
    _randomize_upstream(up, sum_name="embedding_sum", flag_name="_initialized")
    path = tmp_path_factory.mktemp("moshi") / "mimi.safetensors"
    save_file({k: v.contiguous() for k, v in up.state_dict().items()}, str(path))
    assert any(".in_projs.0." in k for k in up.state_dict())  # moshi 0.2.13's own spelling
    return up, path, load_mimi(path), load_mimi_torch(path)


@pytest.mark.upstream
@pytest.mark.parametrize("num_codebooks", [8, 32])
def test_moshi_codes_and_audio_match(moshi_pair, num_codebooks):
    up, path, ours, tref = moshi_pair
    assert detect_format(path) == "moshi"
    assert (ours.total_codebooks, ours.num_codebooks) == (32, 8)
    wav = _wav(1.0, batch=2)  # 24000 samples: 12.5 frames, the tail is zero-padded to 13
    up.set_num_codebooks(num_codebooks)
    with torch.no_grad():
        codes_up = up.encode(torch.from_numpy(wav)[:, None])
        audio_up = up.decode(codes_up)[:, 0]
    codes = ours.encode(mx.array(wav), num_codebooks=num_codebooks)
    assert codes.shape == (2, num_codebooks, 13)
    np.testing.assert_array_equal(np.array(codes), codes_up.numpy())
    compare(ours.decode(codes), audio_up, atol=AUDIO_ATOL, name=f"mlx audio k={num_codebooks}")
    codes_t = tref.encode(torch.from_numpy(wav), num_codebooks=num_codebooks)
    np.testing.assert_array_equal(codes_t.numpy(), codes_up.numpy())
    compare(tref.decode(codes_t), audio_up, atol=AUDIO_ATOL, name=f"torch_ref audio k={num_codebooks}")


@pytest.mark.upstream
def test_moshi_streaming_matches_ours(moshi_pair):
    """moshi's own frame-by-frame streaming == our MLX streaming (codes and audio)."""
    up, _, ours, _ = moshi_pair
    up.set_num_codebooks(8)
    wav = _wav(0.64)  # 8 frames
    ours.reset_state()
    codes_up, audio_up, codes_m, audio_m = [], [], [], []
    with torch.no_grad(), up.streaming(1):
        for i in range(0, wav.shape[1], 1920):
            c = up.encode(torch.from_numpy(wav[:, None, i:i + 1920]))
            codes_up.append(c.numpy())
            audio_up.append(up.decode(c)[:, 0].numpy())
    for i in range(0, wav.shape[1], 1920):
        c = ours.encode_step(mx.array(wav[:, i:i + 1920]))
        codes_m.append(np.array(c))
        audio_m.append(np.array(ours.decode_step(c)))
    np.testing.assert_array_equal(np.concatenate(codes_m, 2), np.concatenate(codes_up, 2))
    compare(np.concatenate(audio_m, 1), np.concatenate(audio_up, 1), atol=AUDIO_ATOL,
            name="streaming audio")


@pytest.mark.upstream
def test_moshi_sliding_context_small_model(tmp_path):
    """A small moshi Mimi whose 6-frame attention window is much shorter than the input: the
    context semantics (window, cache trimming) and the downsample's replicate pad match."""
    from safetensors.torch import save_file

    spec = MimiSpec.from_preset("mimi_tiny", num_codebooks=4)
    up = moshi_tiny(spec, num_codebooks=4)
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in up.state_dict().items()}, str(path))
    wav = _wav(0.05)  # 1200 samples = 25 frames = 50 encoder frames >> context 6
    with torch.no_grad():
        codes_up = up.encode(torch.from_numpy(wav)[:, None])
        audio_up = up.decode(codes_up)[:, 0]
    ours = load_mimi(path, spec=spec)
    codes = ours.encode(mx.array(wav))
    np.testing.assert_array_equal(np.array(codes), codes_up.numpy())
    compare(ours.decode(codes), audio_up, atol=1e-5, name="tiny moshi audio")


# --- transformers ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    torch.manual_seed(0)
    up = transformers.MimiModel(transformers.MimiConfig()).eval()
    _randomize_upstream(up, sum_name="embed_sum", flag_name="codebook.initialized")
    with torch.no_grad():  # bring the (random) decoder output into the audio range
        # the decoder's last conv, found through nn.Module's public API: transformers moves the
        # SEANet between versions (5.17: up.decoder.layers; 5.25: up.decoder.decoder_seanet)
        last = [m for m in up.decoder.modules() if isinstance(m, torch.nn.Conv1d)][-1]
        last.weight.mul_(0.01)
        last.bias.mul_(0.01)
    folder = tmp_path_factory.mktemp("hf_mimi")
    up.save_pretrained(str(folder))
    return up, folder, load_mimi(folder), load_mimi_torch(folder / "model.safetensors")


@pytest.mark.upstream
@pytest.mark.parametrize("num_codebooks", [8, 32])
def test_transformers_codes_and_audio_match(hf_pair, num_codebooks):
    up, folder, ours, tref = hf_pair
    assert detect_format(folder) == "transformers"
    wav = _wav(0.96)  # 12 whole frames: transformers pads partial frames differently
    with torch.no_grad():
        codes_up = up.encode(torch.from_numpy(wav)[:, None], num_quantizers=num_codebooks).audio_codes
        audio_up = up.decode(codes_up).audio_values[:, 0]
    codes = ours.encode(mx.array(wav), num_codebooks=num_codebooks)
    np.testing.assert_array_equal(np.array(codes), codes_up.numpy())
    compare(ours.decode(codes), audio_up, atol=AUDIO_ATOL, name=f"mlx vs transformers k={num_codebooks}")
    codes_t = tref.encode(torch.from_numpy(wav), num_codebooks=num_codebooks)
    np.testing.assert_array_equal(codes_t.numpy(), codes_up.numpy())
    compare(tref.decode(codes_t), audio_up, atol=AUDIO_ATOL, name="torch_ref vs transformers")


@pytest.mark.upstream
def test_transformers_rope_permutation_is_needed(hf_pair):
    """Loading the HF q/k projections without undoing their rotate-half permutation still
    runs, but the audio is wrong: the permutation test above has teeth."""
    from safetensors.numpy import load_file

    from mlx_speech.weights.mlx import load_torch_state_into_mlx
    from mlx_speech.models.mimi.model import build_mimi

    up, folder, right, _ = hf_pair
    spec = mimi_202407(8)
    key_map = hf_key_map(spec)
    key_map.copy.update(key_map.permute)
    key_map.permute = {}
    state = apply_key_map(load_file(str(folder / "model.safetensors")), key_map, where="hf")
    wrong = load_torch_state_into_mlx(build_mimi(spec), state)
    wav = _wav(0.96)
    with torch.no_grad():
        latents_up = up.encoder(torch.from_numpy(wav)[:, None]).latents.transpose(1, 2).numpy()
    scale = np.abs(latents_up).max()
    err_right = np.abs(np.array(right.encode_latents(mx.array(wav))) - latents_up).max() / scale
    err_wrong = np.abs(np.array(wrong.encode_latents(mx.array(wav))) - latents_up).max() / scale
    assert err_right < 1e-5 and err_wrong > 100 * err_right + 1e-4, (err_right, err_wrong)
