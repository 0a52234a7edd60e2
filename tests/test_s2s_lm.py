"""The Moshi-style LM on its own (issue 23, model B): streaming equals teacher forcing, MLX
equals torch_ref, our tagged files round-trip, 4- / 8-bit quantization of the temporal
transformer stays close, bad codes are one line. Tiny random-init models, no moshi needed
(``test_s2s_moshi.py`` compares with moshi itself)."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch

import mlx_speech
import torch_ref
from mlx_speech.errors import CodesError
from mlx_speech.models.s2s.lm import MoshiLM
from mlx_speech.models.s2s.lm_load import save_moshi_lm
from mlx_speech.models.s2s.lm_spec import tiny
from mlx_speech.models.s2s.lm_stream import delay_codes

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FRAMES = 16  # twice the tiny window


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """An MLX tiny LM with every norm perturbed and its torch_ref twin (through our file)."""
    mx.random.seed(0)
    model = MoshiLM(tiny())
    params = nn.utils.tree_flatten(model.parameters())
    model.load_weights([(k, v + 0.1 * mx.random.normal(v.shape)) for k, v in params])
    path = tmp_path_factory.mktemp("lm") / "lm.safetensors"
    save_moshi_lm(path, model)
    return model, torch_ref.load(path), path


def user_stream(spec, frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, spec.card, (1, spec.user_codebooks, frames))


def test_text_step_with_cache_equals_full_pass(pair):
    model, _, _ = pair
    s = model.spec
    rng = np.random.default_rng(2)
    codes = np.concatenate([rng.integers(0, s.text_card, (2, 1, FRAMES)),
                            rng.integers(0, s.card, (2, s.n_q, FRAMES))], axis=1)
    seq = mx.array(delay_codes(codes, s).astype(np.int32))
    full_h, full_t = model.forward_text(seq)
    cache = model.transformer.make_cache()
    steps = [model.forward_text(seq[:, :, t: t + 1], cache=cache, offset=t)
             for t in range(seq.shape[2])]
    np.testing.assert_allclose(np.array(mx.concatenate([h for h, _ in steps], 1)),
                               np.array(full_h), atol=1e-5)
    np.testing.assert_allclose(np.array(mx.concatenate([t for _, t in steps], 1)),
                               np.array(full_t), atol=1e-5)


def assert_generation_is_teacher_forced(model: MoshiLM, user: np.ndarray) -> None:
    """Greedy tokens are the argmax of the teacher-forced logits of the stream they make.

    moshi's ``LMGen`` feeds the user's frame ``t`` together with the model's frame ``t - 1``,
    one frame earlier than ``LMModel.forward`` pairs them, so the teacher-forced user stream is
    the generation's shifted by one frame."""
    s = model.spec
    text, audio = model.generate(user)
    F = text.shape[1]
    assert F == user.shape[2] - s.max_delay
    codes = np.concatenate([text[:, None], audio, user[:, :, 1: F + 1]], axis=1)
    text_logits, audio_logits = model(codes)
    np.testing.assert_array_equal(np.argmax(np.array(text_logits[:, 0]), -1), text)
    audio_logits = np.array(audio_logits)
    for k, d in enumerate(s.delays[1: s.dep_q + 1]):
        valid = slice(0, F - d)
        np.testing.assert_array_equal(np.argmax(audio_logits[:, k, valid], -1),
                                      audio[:, k, valid], err_msg=f"codebook {k}")
        assert np.isnan(audio_logits[:, k, F - d:]).all()


def test_generation_equals_teacher_forcing_on_its_own_output(pair):
    model, _, _ = pair
    assert_generation_is_teacher_forced(model, user_stream(model.spec, FRAMES))


def test_unwindowed_stack_and_sampler_hook(pair):
    """``context=None`` steps with the growing cache instead of the compiled ring, and a
    sampler other than :func:`greedy` runs the frame uncompiled; both give the same tokens."""
    model, _, _ = pair
    unwindowed = MoshiLM(model.spec.replace(context=None))
    unwindowed.load_weights(nn.utils.tree_flatten(model.parameters()))
    user = user_stream(model.spec, 10, seed=7)
    assert_generation_is_teacher_forced(unwindowed, user)
    streams = []

    def argmax(logits: mx.array, stream: str) -> mx.array:
        streams.append(stream)
        return mx.argmax(logits, axis=-1).astype(mx.int32)

    for a, b in zip(model.generate(user, sampler=argmax), model.generate(user)):
        np.testing.assert_array_equal(a, b)
    assert streams[: 1 + model.spec.dep_q] == ["text"] + ["audio"] * model.spec.dep_q
    assert len(streams) == 10 * (1 + model.spec.dep_q)


def test_mlx_equals_torch_ref(pair):
    model, tref, path = pair
    s = model.spec
    rng = np.random.default_rng(3)
    codes = np.concatenate([rng.integers(-1, s.text_card, (2, 1, 10)),
                            rng.integers(-1, s.card, (2, s.n_q, 10))], axis=1)
    with torch.no_grad():
        for ours, theirs in zip(model(codes), tref(codes)):
            np.testing.assert_allclose(np.array(ours), theirs.numpy(), atol=1e-4)
    user = user_stream(s, FRAMES, seed=4)
    for a, b in zip(model.generate(user), tref.generate(user)):
        np.testing.assert_array_equal(a, b)
    again = mlx_speech.load(path)  # our tagged file back into MLX
    np.testing.assert_array_equal(again.generate(user)[0], model.generate(user)[0])


def test_reset_state_starts_a_new_conversation(pair):
    model, _, _ = pair
    user = user_stream(model.spec, 8, seed=5)
    first = model.generate(user)
    model.reset_state()
    outs = [model.step(user[:, :, t]) for t in range(8)]
    np.testing.assert_array_equal(np.stack([o[0] for o in outs if o is not None], 1), first[0])


def test_quantized_temporal_transformer_stays_close(pair, capsys):
    model, _, path = pair
    s = model.spec
    rng = np.random.default_rng(6)
    codes = np.concatenate([rng.integers(0, s.text_card, (1, 1, 12)),
                            rng.integers(0, s.card, (1, s.n_q, 12))], axis=1)
    ref_text, ref_audio = (np.array(x) for x in model(codes))
    scale = float(np.abs(ref_text).max())
    errors = {}
    for bits, bound in ((8, 0.05), (4, 0.75)):
        q = mlx_speech.load(path)
        nn.quantize(q.transformer, group_size=64, bits=bits)
        assert isinstance(q.transformer.layers[0].self_attn.q_proj, nn.QuantizedLinear)
        text, audio = (np.array(x) for x in q(codes))
        rel = float(np.sqrt(np.nanmean((audio - ref_audio) ** 2) / np.nanmean(ref_audio ** 2)))
        errors[bits] = (round(float(np.abs(text - ref_text).max()), 4),
                        round(float(np.nanmax(np.abs(audio - ref_audio))), 4), round(rel, 4))
        assert max(errors[bits][:2]) < bound * scale, (bits, errors[bits], scale)
        assert q.generate(user_stream(s, 6))[0].shape == (1, 6 - s.max_delay)
    with capsys.disabled():
        print(f"\nquantized temporal transformer vs fp32 (max |text logit err|, max |audio "
              f"logit err|, relative RMS audio err; logit scale {scale:.2f}): "
              f"8-bit {errors[8]}, 4-bit {errors[4]}")


def test_bad_codes_are_one_line(pair):
    model, tref, _ = pair
    s = model.spec
    for m in (model, tref):
        m.reset_state()
        for bad, words in ((np.int64(3), "expected"),
                           (np.zeros((1, s.user_codebooks + 1), int), "expected"),
                           (np.full((1, s.user_codebooks), s.card), "outside"),
                           (np.zeros((1, s.user_codebooks), np.float32), "integers")):
            with pytest.raises(CodesError, match=words) as exc:
                m.step(bad)
            assert "\n" not in str(exc.value)
        assert m.step(np.zeros((1, s.user_codebooks), int)) is None  # state not poisoned
        with pytest.raises(CodesError, match="channel 0"):
            m(np.full((1, s.num_codebooks, 3), s.text_card + 1))
        with pytest.raises(CodesError, match="expected"):
            m(np.zeros((1, s.num_codebooks), int))
