"""Speech-to-speech models over codec codes.

Model A, the encoder-decoder (``spec.py``: S2SSpec and presets; ``encdec.py``: S2SModel, MLX,
mirrored in ``torch_ref/models/s2s/encdec.py``; ``encdec_pattern.py``: the codebook patterns,
framework-free; ``sampling.py``: token sampling, shared with the other s2s models;
``train_spec.py``: the ``s2s`` task's recipe, the task being ``train/tasks_s2s.py``). No upstream
checkpoints exist: our tagged files are the format. This ``__init__`` only registers the
family; it imports no framework.
"""

from mlx_speech.registry import register_family

register_family(
    "s2s",
    summary="speech-to-speech over codec codes (encoder-decoder)",
    models={"s2s": {"spec": "mlx_speech.models.s2s.spec:S2SSpec",
                    "mlx": "mlx_speech.models.s2s.encdec:S2SModel",
                    "torch": "torch_ref.models.s2s.encdec:S2SModel"}},
    tasks={"s2s": {"mlx": "mlx_speech.train.tasks_s2s:S2STask",
                   "torch": "torch_ref.train.tasks_s2s:S2STask"}},
    targets={"s2s": ("s2s", "s2s_base.yaml"), "s2s_tiny": ("s2s", "s2s_tiny.yaml")},
)
