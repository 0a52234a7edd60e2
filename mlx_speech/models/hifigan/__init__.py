"""HiFi-GAN generator (Kong et al. 2020): ``spec.py`` (V1 / V2 / V3 / tiny presets),
``model.py`` (MLX; torch_ref mirrors it), ``official.py`` (the official checkpoint layout,
framework-free), ``load.py`` (MLX loading). Trained by the ``hifigan`` task (GAN).
Registration only; no framework imported.
"""

from mlx_speech.registry import Format, register_family

register_family(
    "hifigan",
    summary="HiFi-GAN vocoder (official generator checkpoints)",
    models={"hifigan": {"spec": "mlx_speech.models.hifigan.spec:HiFiGANSpec",
                        "mlx": "mlx_speech.models.hifigan.model:HiFiGANGenerator",
                        "torch": "torch_ref.models.hifigan.model:HiFiGANGenerator"}},
    formats=(Format("official generator", detect="mlx_speech.models.hifigan.official:recognise",
                    mlx="mlx_speech.models.hifigan.load:load_official",
                    torch="torch_ref.models.hifigan.official:load_official"),),
    tasks={"hifigan": {"mlx": "mlx_speech.train.tasks_hifigan:HiFiGANTask",
                       "torch": "torch_ref.train.tasks_hifigan:HiFiGANTask"}},
    targets={"hifigan": ("hifigan", "hifigan_v1.yaml")},
)
