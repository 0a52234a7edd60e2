"""Vocos-style vocoder: ConvNeXt backbone at the frame rate + inverse-STFT head (``spec.py``,
``model.py``; torch_ref mirrors it under ``torch_ref/models/vocos/``). Trained by the ``hifigan``
task (``model.kind: vocos``: the same discriminators and losses as HiFi-GAN) and used by
``mlx-speech synth`` like a HiFi-GAN generator. Registration only; no framework imported.
"""

from mlx_speech.registry import register_family

register_family(
    "vocos",
    summary="Vocos-style vocoder (ConvNeXt + inverse STFT), trained by the hifigan task",
    models={"vocos": {"spec": "mlx_speech.models.vocos.spec:VocosSpec",
                      "mlx": "mlx_speech.models.vocos.model:VocosGenerator",
                      "torch": "torch_ref.models.vocos.model:VocosGenerator"}},
    targets={"vocos_slt": ("hifigan", "vocos_slt_cpu.yaml"), "vocos_slt_gta": ("hifigan", "vocos_slt_gta_cpu.yaml"),
             "vocos_slt_mel": ("hifigan", "vocos_slt_mel_cpu.yaml"), "vocos_nsk": ("hifigan", "vocos_nsk_mel_cpu.yaml")},
)
