"""Qwen teacher: hidden states of any layer equal mlx-lm's own forward and transformers' Qwen2;
durations align states to frames (even spreading, word timings) with clear errors."""

import mlx.core as mx
import numpy as np
import pytest

from mlx_speech.teachers.durations import (DurationError, check_durations,
                                           durations_from_word_timings, even_durations)

mlx_lm = pytest.importorskip("mlx_lm")

from mlx_speech.teachers.qwen import QwenTeacher, align_to_frames  # noqa: E402

CONFIG = dict(model_type="qwen2", hidden_size=64, num_hidden_layers=3, intermediate_size=128,
              num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, vocab_size=101,
              max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=True)
TOKENS = np.array([[1, 5, 9, 22, 3, 7, 50, 100], [4, 4, 8, 15, 16, 23, 42, 0]])


@pytest.fixture(scope="module")
def teacher():
    return QwenTeacher.from_config(CONFIG, seed=0)


def test_last_layer_is_mlx_lm_forward(teacher):
    assert teacher.num_layers == 3 and teacher.hidden_size == 64
    ours = teacher.hidden_states(TOKENS, layer=-1)
    ref = teacher.model.model(mx.array(TOKENS))  # mlx-lm's own forward (final norm included)
    assert ours.shape == (2, 8, 64)
    np.testing.assert_array_equal(np.array(ours), np.array(ref))
    logits = teacher.model(mx.array(TOKENS))
    np.testing.assert_allclose(np.array(teacher.model.model.embed_tokens.as_linear(ours)),
                               np.array(logits), atol=1e-5)


@pytest.mark.parametrize("layer", [1, 2])
def test_intermediate_layer_is_mlx_lm_forward_of_the_truncated_model(teacher, layer):
    """mlx-lm run with only the first ``layer`` blocks (same weights) = our layer + final norm."""
    from mlx.utils import tree_flatten
    from mlx_lm.models import qwen2

    short = qwen2.Model(qwen2.ModelArgs.from_dict({**CONFIG, "num_hidden_layers": layer}))
    weights = [(k, v) for k, v in tree_flatten(teacher.model.parameters())
               if not k.startswith("model.layers.") or int(k.split(".")[2]) < layer]
    short.load_weights(weights, strict=True)
    ref = short.model(mx.array(TOKENS))
    ours = teacher.model.model.norm(teacher.hidden_states(TOKENS, layer=layer))
    np.testing.assert_array_equal(np.array(ours), np.array(ref))
    emb = teacher.hidden_states(TOKENS, layer=0)
    np.testing.assert_array_equal(np.array(emb),
                                  np.array(teacher.model.model.embed_tokens(mx.array(TOKENS))))


@pytest.mark.upstream
def test_saved_teacher_matches_transformers_qwen2(teacher, tmp_path):
    """save -> transformers Qwen2 (torch_ref twin) and -> mlx-lm load_model: same states."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from torch_ref.teachers.qwen import QwenTeacher as TorchTeacher
    from torch_ref.teachers.qwen import align_to_frames as torch_align

    teacher.save(tmp_path)
    twin = TorchTeacher.from_pretrained(tmp_path)
    for layer in range(4):
        a = np.array(teacher.hidden_states(TOKENS, layer))
        b = twin.hidden_states(TOKENS, layer).numpy()
        np.testing.assert_allclose(a, b, atol=1e-4, err_msg=f"layer {layer}")
    again = QwenTeacher.from_pretrained(tmp_path)
    np.testing.assert_array_equal(np.array(again.hidden_states(TOKENS, 2)),
                                  np.array(teacher.hidden_states(TOKENS, 2)))
    d = np.array([[2, 0, 3, 1, 1, 4, 2, 2], [1, 1, 1, 1, 1, 1, 1, 8]])
    np.testing.assert_allclose(np.array(teacher.frame_states(TOKENS, num_frames=15, layer=2,
                                                             durations=d)),
                               torch_align(twin.hidden_states(TOKENS, 2), d, 15).numpy(),
                               atol=1e-4)
    assert isinstance(twin.hidden_states(TOKENS, 1), torch.Tensor)
    fresh = TorchTeacher.from_config(CONFIG)  # random torch twin from the same config dict
    assert fresh.num_layers == 3 and fresh.hidden_states(TOKENS, 1).shape == (2, 8, 64)


def test_align_repeats_by_durations(teacher):
    h = teacher.hidden_states(TOKENS, layer=2)
    d = np.array([[2, 0, 3, 1, 1, 4, 2, 2], [1, 1, 1, 1, 1, 1, 1, 8]])
    frames = align_to_frames(h, d, 15)
    assert frames.shape == (2, 15, 64)
    expect0 = np.repeat(np.array(h[0]), d[0], axis=0)
    expect1 = np.repeat(np.array(h[1]), d[1], axis=0)
    np.testing.assert_array_equal(np.array(frames[0]), expect0)
    np.testing.assert_array_equal(np.array(frames[1]), expect1)
    # one duration row applies to every row of the batch
    shared = align_to_frames(h, d[0], 15)
    np.testing.assert_array_equal(np.array(shared[1]), np.repeat(np.array(h[1]), d[0], axis=0))


def test_durations_must_sum_to_frame_count(teacher):
    h = teacher.hidden_states(TOKENS[:1], layer=1)
    with pytest.raises(DurationError, match="row 0 sum to 14 frames but the audio has 15"):
        align_to_frames(h, [2, 0, 3, 1, 1, 4, 1, 2], 15)
    with pytest.raises(DurationError, match=">= 0"):
        align_to_frames(h, [-1, 0, 3, 1, 1, 4, 5, 2], 15)
    with pytest.raises(DurationError, match="T = 8 tokens"):
        align_to_frames(h, [15], 15)
    with pytest.raises(DurationError, match="whole numbers"):
        check_durations(np.full(8, 1.5), num_tokens=8, num_frames=12)


def test_even_spreading():
    assert even_durations(4, 10).tolist() == [2, 3, 2, 3]
    assert even_durations(3, 2).tolist() == [0, 1, 1]  # more tokens than frames
    d = even_durations(7, 250)
    assert d.sum() == 250 and d.max() - d.min() <= 1


def test_frame_states_default_is_even(teacher):
    a = teacher.frame_states(TOKENS, num_frames=20, layer=1)
    b = align_to_frames(teacher.hidden_states(TOKENS, 1), even_durations(8, 20), 20)
    np.testing.assert_array_equal(np.array(a), np.array(b))


def test_durations_from_word_timings():
    # "the cat sat": BOS token (no word), 'the' one token, 'cat' two tokens, 'sat' one token
    words = [("the", 0.10, 0.30), ("cat", 0.35, 0.80), ("sat", 0.90, 1.30)]
    d = durations_from_word_timings(words, [None, 0, 1, 1, 2], num_frames=75, frame_rate=50.0)
    # word frames: the [0, 18) (incl. leading silence and the pause after it), cat [18, 45),
    # sat [45, 75); cat's 27 frames split 13 / 14 over its two tokens
    assert d.tolist() == [0, 18, 13, 14, 30]
    assert d.sum() == 75
    with pytest.raises(DurationError, match="word 1 .'cat'. has no token"):
        durations_from_word_timings(words, [0, 2], num_frames=75, frame_rate=50.0)
    with pytest.raises(DurationError, match="time order"):
        durations_from_word_timings(words[::-1], [0, 1, 2], num_frames=75, frame_rate=50.0)


def test_bad_tokens_and_layers(teacher):
    with pytest.raises(DurationError, match="0..100"):
        teacher.hidden_states(np.array([1, 2, 101]))
    with pytest.raises(ValueError, match="out of range"):
        teacher.hidden_states(TOKENS, layer=4)
