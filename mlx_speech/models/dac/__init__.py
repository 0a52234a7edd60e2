"""DAC-style codecs: Descript's Audio Codec (official 44.1 / 24 / 16 kHz weights) and our
causal speech codecs at 200 / 50 / 12.5 Hz, with or without transformer layers (hybrid).

Files: ``spec.py`` (DACSpec and presets), ``cnn.py`` / ``model.py`` (MLX; torch_ref mirrors them
under ``torch_ref/models/dac/``), the shared factorised RVQ in ``mlx_speech/quantize/factorized.py``;
``keys.py`` (the codec's upstream key map), ``official.py`` (Descript's ``.pth``), ``hf.py``
(transformers ``DacModel`` folders), ``formats.py`` (what a path is, framework-free), ``load.py``
(MLX loading, ``save_dac``). This ``__init__`` only registers the family; it imports no framework.
"""

from mlx_speech.registry import CodecInfo, Format, register_family

register_family(
    "dac",
    summary="DAC-style codecs (Descript DAC weights; causal speech and hybrid presets)",
    models={"dac": {"spec": "mlx_speech.models.dac.spec:DACSpec",
                    "mlx": "mlx_speech.models.dac.model:DACModel",
                    "torch": "torch_ref.models.dac.model:DACModel"}},
    formats=(Format("dac (Descript .pth / transformers / tagged)",
                    detect="mlx_speech.models.dac.formats:recognise",
                    mlx="mlx_speech.models.dac.load:load_dac",
                    torch="torch_ref.models.dac.load:load_dac_torch"),),
    # rates of the official 44.1 kHz model; a loaded model's own spec says what it is
    codec=CodecInfo(sample_rate=44100, frame_rate=44100 / 512, max_codebooks=32,
                    default_codebooks=9),
    tasks={"dac": {"mlx": "mlx_speech.train.tasks_dac:DACTask",
                   "torch": "torch_ref.train.tasks_dac:DACTask"}},
    targets={"dac": ("dac", "dac_hybrid_50hz.yaml")},
    evals={"dac": "mlx_speech.eval.dac:command"},
)
