"""Speech-to-speech models (issue 23).

Model A, ``s2s``: the encoder-decoder over codec codes (``spec.py``: S2SSpec and presets;
``encdec.py``: S2SModel, MLX, mirrored in ``torch_ref/models/s2s/encdec.py``;
``encdec_pattern.py``: the codebook patterns, framework-free; ``sampling.py``: token sampling,
shared by both models; ``train_spec.py``: the ``s2s`` task's recipe, the task being
``train/tasks_s2s.py``). Our tagged files are its format.

Model B, ``moshi_lm``: a Moshi-style temporal + depth transformer over text and audio codes that
loads moshi's LM checkpoints. Files: ``lm_spec.py`` (MoshiLMSpec, presets ``moshiko`` and
``tiny``), ``lm_stream.py`` (the acoustic delay pattern, framework-free), ``lm.py`` /
``depformer.py`` (MLX; torch_ref mirrors them under ``torch_ref/models/s2s/``),
``moshi_keys.py`` (moshi's key map), ``lm_formats.py`` (what a moshi folder is, framework-free),
``lm_load.py`` (MLX loading, ``save_moshi_lm``), ``lm_train_spec.py`` (the ``s2s_lm`` task's
recipe, the task being ``train/tasks_s2s_lm.py`` over ``train/s2s_lm_data.py``).

This ``__init__`` only registers the family; it imports no framework.
"""

from mlx_speech.registry import Format, register_family

register_family(
    "s2s",
    summary="Speech-to-speech: encoder-decoder over codec codes; Moshi-style LM (moshi weights)",
    models={"s2s": {"spec": "mlx_speech.models.s2s.spec:S2SSpec",
                    "mlx": "mlx_speech.models.s2s.encdec:S2SModel",
                    "torch": "torch_ref.models.s2s.encdec:S2SModel"},
            "moshi_lm": {"spec": "mlx_speech.models.s2s.lm_spec:MoshiLMSpec",
                         "mlx": "mlx_speech.models.s2s.lm:MoshiLM",
                         "torch": "torch_ref.models.s2s.lm:MoshiLM"}},
    formats=(Format("moshi LM (model.safetensors + config.json)",
                    detect="mlx_speech.models.s2s.lm_formats:recognise",
                    mlx="mlx_speech.models.s2s.lm_load:load_moshi_lm",
                    torch="torch_ref.models.s2s.lm_load:load_moshi_lm_torch"),),
    tasks={"s2s": {"mlx": "mlx_speech.train.tasks_s2s:S2STask",
                   "torch": "torch_ref.train.tasks_s2s:S2STask"},
           "s2s_lm": {"mlx": "mlx_speech.train.tasks_s2s_lm:S2SLMTask",
                      "torch": "torch_ref.train.tasks_s2s_lm:S2SLMTask"}},
    targets={"s2s": ("s2s", "s2s_base.yaml"), "s2s_tiny": ("s2s", "s2s_tiny.yaml"),
             "s2s_lm": ("s2s_lm", "s2s_lm_small.yaml"),
             "s2s_lm_tiny": ("s2s_lm", "s2s_lm_tiny.yaml")},
)
