"""Self-supervised speech encoders in MLX: WavLM, HuBERT, wav2vec 2.0 and w2v-BERT 2.0, loaded
from local transformers folders (``hf.py`` is the key map, ``load.py`` the MLX loader)::

    import mlx_speech
    model = mlx_speech.load("~/models/wavlm-base-plus")          # frozen, inference mode
    feats = model.features(wav, layers=[6, 12], sample_rate=24000)  # [(B, F, 768), ...]

:mod:`torch_ref.models.ssl` mirrors them in torch (same module tree and keys, so
``torch_ref.load(folder)`` works too); transformers remains the upstream reference both are
tested against.

``models={}``: no tagged SSL checkpoint of our own. The weights come from transformers folders
(read by both frameworks), and a model that embeds an encoder (Miipher-2's frozen backbone with
adapters) registers and tags its own checkpoint, whose keys include the encoder's; the two
spec classes would also need two model entries for nothing that loads today.
Registration only; no framework imported.
"""

from mlx_speech.registry import Format, register_family

register_family(
    "ssl",
    summary="SSL encoders: WavLM, HuBERT, wav2vec 2.0, w2v-BERT 2.0 (transformers folders)",
    models={},
    formats=(Format("transformers SSL folder", detect="mlx_speech.models.ssl.spec:recognise",
                    mlx="mlx_speech.models.ssl.load:load_ssl",
                    torch="torch_ref.models.ssl.load:load_ssl"),),
)
