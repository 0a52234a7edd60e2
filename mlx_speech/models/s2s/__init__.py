"""Speech-to-speech models (issue 23).

Model B, ``moshi_lm``: a Moshi-style temporal + depth transformer over text and audio codes that
loads moshi's LM checkpoints. Files: ``lm_spec.py`` (MoshiLMSpec, presets ``moshiko`` and
``tiny``), ``lm_stream.py`` (the acoustic delay pattern, framework-free), ``lm.py`` /
``depformer.py`` (MLX; torch_ref mirrors them under ``torch_ref/models/s2s/``),
``moshi_keys.py`` (moshi's key map), ``lm_formats.py`` (what a moshi folder is, framework-free),
``lm_load.py`` (MLX loading, ``save_moshi_lm``). This ``__init__`` only registers the family; it
imports no framework.
"""

from mlx_speech.registry import Format, register_family

register_family(
    "s2s",
    summary="Speech-to-speech LMs (Moshi-style temporal + depth transformer, moshi weights)",
    models={"moshi_lm": {"spec": "mlx_speech.models.s2s.lm_spec:MoshiLMSpec",
                         "mlx": "mlx_speech.models.s2s.lm:MoshiLM",
                         "torch": "torch_ref.models.s2s.lm:MoshiLM"}},
    formats=(Format("moshi LM (model.safetensors + config.json)",
                    detect="mlx_speech.models.s2s.lm_formats:recognise",
                    mlx="mlx_speech.models.s2s.lm_load:load_moshi_lm",
                    torch="torch_ref.models.s2s.lm_load:load_moshi_lm_torch"),),
)
