"""BSQ-ViT audio tokenizer: log-mel patches -> ViT with conformer convolution -> binary
spherical quantization (18 / 36 bits per patch) -> ViT -> mel -> Griffin-Lim or HiFi-GAN.

Files: ``spec.py`` (BSQViTSpec, presets, the vocoder spec), ``vit.py`` (the transformer
stacks), ``model.py`` (BSQViTModel: front end, coding, streaming; torch_ref mirrors both under
``torch_ref/models/bsq_vit/``), ``windows.py`` (where windows fall and the streams that walk
them, framework-free, shared by both), ``load.py`` (joining a trained HiFi-GAN into a
tokenizer file), ``train_spec.py`` / ``gan_spec.py`` (the ``bsq_vit`` task's recipe and its
PatchGAN; the task is ``train/tasks_bsq_vit.py``). No upstream checkpoints exist: our tagged
files are the format, so there is no format reader. This ``__init__`` only registers the
family; it imports no framework.
"""

from mlx_speech.registry import CodecInfo, register_family

register_family(
    "bsq_vit",
    summary="BSQ-ViT audio tokenizer (mel patches, binary spherical quantization, 16 kHz)",
    models={"bsq_vit": {"spec": "mlx_speech.models.bsq_vit.spec:BSQViTSpec",
                        "mlx": "mlx_speech.models.bsq_vit.model:BSQViTModel",
                        "torch": "torch_ref.models.bsq_vit.model:BSQViTModel"}},
    # the b18 preset's rates; a loaded model's own spec says what it is
    codec=CodecInfo(sample_rate=16000, frame_rate=6.25, max_codebooks=64, default_codebooks=16),
    tasks={"bsq_vit": {"mlx": "mlx_speech.train.tasks_bsq_vit:BSQViTTask",
                       "torch": "torch_ref.train.tasks_bsq_vit:BSQViTTask"}},
    targets={"bsq_vit": ("bsq_vit", "bsq_vit_b18.yaml"),
             "bsq_vit_b36": ("bsq_vit", "bsq_vit_b36.yaml")},
    evals={"bsq_vit": "mlx_speech.eval.bsq_vit:command"},
)
