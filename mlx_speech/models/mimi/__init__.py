"""Mimi (Kyutai): 24 kHz speech codec, 12.5 frames/s, split RVQ (1 semantic + up to 31
acoustic codebooks of 2048), batch and streaming.

Files: ``spec.py`` (MimiSpec, ``mimi_202407``), ``model.py`` / ``seanet.py`` / ``vq.py`` (MLX;
torch_ref mirrors them under ``torch_ref/models/mimi/``), ``moshi.py`` / ``hf.py`` / ``keys.py``
(the upstream key maps), ``formats.py`` (reading any Mimi file, framework-free), ``load.py``
(MLX loading). This ``__init__`` only registers the family; it imports no framework.
"""

from mlx_speech.registry import CodecInfo, Format, register_family

register_family(
    "mimi",
    summary="Kyutai Mimi codec (moshi and transformers weights)",
    models={"mimi": {"spec": "mlx_speech.models.mimi.spec:MimiSpec",
                     "mlx": "mlx_speech.models.mimi.model:MimiModel",
                     "torch": "torch_ref.models.mimi.model:MimiModel"}},
    formats=(Format("mimi (moshi / transformers / tagged)",
                    detect="mlx_speech.models.mimi.formats:recognise",
                    mlx="mlx_speech.models.mimi.load:load_mimi",
                    torch="torch_ref.models.mimi.load:load_mimi_torch"),),
    codec=CodecInfo(sample_rate=24000, frame_rate=12.5, max_codebooks=32, default_codebooks=8),
)
