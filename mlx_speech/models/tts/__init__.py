"""Text-to-speech acoustic model: FastSpeech2-style with a learned aligner (``spec.py``,
``fastspeech.py``; torch_ref mirrors under ``torch_ref/models/tts/``), and the voice folder
format (``voice.py``). Synthesis glue is :mod:`mlx_speech.pipelines.synth`; alignment losses
are :mod:`mlx_speech.train.tts_align`; the ``tts`` training task is
:mod:`mlx_speech.train.tasks_tts` (spec ``train_spec.py``). Registration only; no framework
imported.
"""

from mlx_speech.registry import Format, register_family

register_family(
    "tts",
    summary="FastSpeech2-style TTS acoustic model with learned alignment; voice folders",
    models={"fastspeech2": {"spec": "mlx_speech.models.tts.spec:FastSpeechSpec",
                            "mlx": "mlx_speech.models.tts.fastspeech:FastSpeech2",
                            "torch": "torch_ref.models.tts.fastspeech:FastSpeech2"}},
    formats=(Format("voice folder", detect="mlx_speech.models.tts.voice:recognise",
                    mlx="mlx_speech.models.tts.voice:load_voice",
                    torch="torch_ref.models.tts.voice:load_voice_torch"),),
    tasks={"tts": {"mlx": "mlx_speech.train.tasks_tts:TTSTask",
                   "torch": "torch_ref.train.tasks_tts:TTSTask"}},
    targets={"tts": ("tts", "tts_slt_tiny.yaml"), "tts_hi_nsk": ("tts", "tts_hi_nsk.yaml"),
             "tts_te_nsk": ("tts", "tts_te_nsk.yaml")},
    evals={"tts": "mlx_speech.eval.tts:command"},
)
