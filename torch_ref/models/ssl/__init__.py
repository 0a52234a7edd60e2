"""Self-supervised speech encoders in torch: the mirror of :mod:`mlx_speech.models.ssl` (WavLM,
HuBERT, wav2vec 2.0, w2v-BERT 2.0) with the same files, class and attribute names, so
``model.state_dict()`` keys equal the MLX parameter keys::

    import torch_ref
    model = torch_ref.load("~/models/wavlm-base-plus")              # frozen, eval mode
    feats = model.features(wav, layers=[6, 12], sample_rate=24000)  # [(B, F, 768), ...]

transformers stays the upstream reference both mirrors are tested against; this package exists
because a frozen backbone with parallel adapters beside its layers
(``hidden_states(..., adapters=...)``) must run, and checkpoint, the same in both frameworks.
The family is registered by :mod:`mlx_speech.models.ssl`; nothing is registered here.
"""
