"""9-codebook Mimi: Mimi's encoder / decoder around the bridge quantizer (head 0 semantic,
distilled toward Qwen; head 1 prosody; heads 2-8 acoustic). Made from a Mimi checkpoint by
``convert/mimi_surgery.py``; trained by the ``mimi9`` task. ``spec.py`` / ``model.py`` here,
``torch_ref/models/mimi9/`` mirrors the model. Registration only; no framework imported.
"""

from mlx_speech.registry import CodecInfo, register_family

register_family(
    "mimi9",
    summary="9-codebook Mimi with a semantic / prosody / acoustic bridge quantizer",
    models={"mimi9": {"spec": "mlx_speech.models.mimi9.spec:Mimi9Spec",
                      "mlx": "mlx_speech.models.mimi9.model:Mimi9Model",
                      "torch": "torch_ref.models.mimi9.model:Mimi9Model"}},
    codec=CodecInfo(sample_rate=24000, frame_rate=12.5, max_codebooks=9, default_codebooks=9),
    tasks={"mimi9": {"mlx": "mlx_speech.train.tasks_mimi9:Mimi9Task",
                     "torch": "torch_ref.train.tasks_mimi9:Mimi9Task"}},
    targets={"mimi9": ("mimi9", "mimi9_distill.yaml")},
    evals={"mimi9": "mlx_speech.eval.mimi9:command"},
)
