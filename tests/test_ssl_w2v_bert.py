"""w2v-BERT 2.0 in MLX against transformers: the fbank front end against
SeamlessM4TFeatureExtractor, and every hidden state of random-init Wav2Vec2BertModel (each
relative-position type, with and without padding) within 1e-4."""

import mlx.core as mx
import numpy as np
import pytest

from convert.parity import compare
from mlx_speech.audio.synth import speechlike
from mlx_speech.models.ssl.load import KaldiFbank, load_ssl
from mlx_speech.models.ssl.fbank import kaldi_mel_filters

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.upstream

ATOL = 1e-4
SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
             conv_depthwise_kernel_size=7, left_max_position_embeddings=8,
             right_max_position_embeddings=4)


@pytest.fixture(scope="module")
def extractor():
    return transformers.SeamlessM4TFeatureExtractor()


@pytest.fixture(scope="module")
def speech():
    # 1.23 s: 121 fbank frames, an odd count, so the last stacked frame is padding upstream
    return np.asarray(speechlike(16000, 1.23, seed=1), np.float32)


def test_mel_filters_match_transformers():
    from transformers.audio_utils import mel_filter_bank

    ref = mel_filter_bank(num_frequency_bins=257, num_mel_filters=80, min_frequency=20,
                          max_frequency=8000, sampling_rate=16000, norm=None, mel_scale="kaldi",
                          triangularize_in_mel_space=True)
    np.testing.assert_allclose(kaldi_mel_filters(), ref, atol=1e-12)


def test_fbank_matches_feature_extractor(extractor, speech):
    ref = extractor(speech, sampling_rate=16000, return_tensors="np")
    feats, mask = KaldiFbank()(speech)
    assert feats.shape == ref["input_features"].shape == (1, 61, 160)
    np.testing.assert_array_equal(np.array(mask), ref["attention_mask"].astype(bool))
    assert not bool(mask[0, -1])  # odd frame count: the padded half-frame is masked
    compare(feats, ref["input_features"], atol=2e-4, name="fbank features")


def test_fbank_batch_of_different_lengths(extractor, speech):
    rows = [speech, speech[:9000] * 0.5]
    ref = extractor(rows, sampling_rate=16000, return_tensors="np", padding=True)
    feats, mask = KaldiFbank()(rows)
    np.testing.assert_array_equal(np.array(mask), ref["attention_mask"].astype(bool))
    compare(feats, ref["input_features"], atol=2e-4, name="batched fbank")


def _upstream(position_type, seed=0):
    torch.manual_seed(seed)
    model = transformers.Wav2Vec2BertModel(transformers.Wav2Vec2BertConfig(
        **SMALL, position_embeddings_type=position_type)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "pos_bias" in name:
                p.normal_(0.0, 0.5)
            elif "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
            elif name.startswith("encoder.layers") and p.ndim >= 2:
                p.normal_(0.0, 0.1)
    return model


@pytest.mark.parametrize("position_type", ["relative_key", "relative", "rotary", None],
                         ids=["relative_key", "relative", "rotary", "none"])
def test_hidden_states_match_transformers(tmp_path, extractor, speech, position_type):
    up = _upstream(position_type)
    up.save_pretrained(tmp_path)
    ours = load_ssl(tmp_path, family="w2v-bert")
    inputs = extractor([speech, speech[:12000]], sampling_rate=16000, return_tensors="np",
                       padding=True)
    feats, mask = inputs["input_features"], inputs["attention_mask"]
    assert mask.sum(1).tolist() == [60, 36]  # both rows padded: exercises every mask path
    with torch.no_grad():
        ref = up(torch.from_numpy(feats), attention_mask=torch.from_numpy(mask),
                 output_hidden_states=True)
    states = ours.hidden_states(mx.array(feats), mask=mx.array(mask.astype(bool)))
    assert len(states) == len(ref.hidden_states) == SMALL["num_hidden_layers"] + 1
    for i, (a, b) in enumerate(zip(states, ref.hidden_states)):
        compare(a, b, atol=ATOL, name=f"{position_type} hidden_states[{i}]")
        if i:
            assert float(mx.abs(a - states[i - 1]).max()) > 0.1  # layers visibly act
    compare(ours(mx.array(feats), mx.array(mask.astype(bool))), ref.last_hidden_state,
            atol=ATOL, name="last_hidden_state")


def test_features_end_to_end(tmp_path, extractor, speech):
    """features(wav) = our fbank + encoder; against the upstream processor + model pipeline."""
    up = _upstream("relative_key", seed=3)
    up.save_pretrained(tmp_path)
    ours = load_ssl(tmp_path)
    inputs = extractor(speech, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        ref = up(**inputs, output_hidden_states=True).hidden_states
    feats = ours.features(speech, layers=[1, 2])
    # our float32 fbank differs from upstream's float64 one by ~4e-5 (measured); so do the states
    compare(feats[0], ref[1], atol=3e-4, name="end-to-end layer 1")
    compare(feats[1], ref[2], atol=3e-4, name="end-to-end layer 2")


def test_adapter_checkpoint_loads_encoder(tmp_path, speech, extractor):
    """add_adapter=True: the adapter (after the encoder) is dropped, hidden states still match."""
    torch.manual_seed(0)
    up = transformers.Wav2Vec2BertModel(transformers.Wav2Vec2BertConfig(
        **SMALL, add_adapter=True, num_adapter_layers=1)).eval()
    up.save_pretrained(tmp_path)
    ours = load_ssl(tmp_path)
    inputs = extractor(speech[:8000], sampling_rate=16000, return_tensors="np")
    with torch.no_grad():
        ref = up(torch.from_numpy(inputs["input_features"]), output_hidden_states=True)
    states = ours.hidden_states(mx.array(inputs["input_features"]))
    compare(states[-1], ref.hidden_states[-1], atol=ATOL, name="adapter model encoder")
