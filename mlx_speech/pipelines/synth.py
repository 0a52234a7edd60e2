"""Text -> waveform: frontend + FastSpeech2 acoustic model + vocoder (neural or Griffin-Lim).

A voice is a folder::

    acoustic.safetensors   tagged FastSpeech2 checkpoint (MLX or torch layout)
    voice.json             {"language", "mel_preset", "speakers", "vocoder", ...}
    vocoder.safetensors    optional tagged neural vocoder, Vocos or HiFi-GAN (same mel preset);
                           an older voice's ``hifigan.safetensors`` is read too
                           (or voice.json's "shared_vocoder": NAME, the bundled file
                           assets/tts/vocoders/NAME.safetensors that voices of one speaker share)
    frontend.json          optional: the corpus teacher's English word forms and pauses
                           (mlx_speech.text.adapt; written by the tts recipe for corpus voices)

The vocoder of a synthesis is ``vocoder="neural"`` (the voice's own file, or ``vocoder_path``),
``"griffin-lim"`` (no weights; the fallback), or ``None``: the voice's choice, ``voice.json``'s
``"vocoder"`` (``"neural"`` where the voice ships one). ``"hifigan"`` is the older name of
``"neural"``.

The bundled voice lives in ``mlx_speech/assets/tts/en_slt``. ``Synthesizer.synthesize`` speaks
long text sentence by sentence and joins the pieces with a short pause.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import mlx.core as mx

from mlx_speech._blas import blas_threads
from mlx_speech.errors import CheckpointError, UserError
from mlx_speech.specs.audio import MelSpec
from mlx_speech.text import LANGUAGES, TextError, TextFrontend
from mlx_speech.text.adapt import ADAPTATION_FILE, FrontendAdaptation

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "tts"
SHARED_VOCODERS = ASSETS / "vocoders"  # vocoders several bundled voices share (voice.json "shared_vocoder")
DEFAULT_VOICE = "en_slt"
VOCODERS = ("neural", "griffin-lim", "hifigan")
VOCODER_FILES = ("vocoder.safetensors", "hifigan.safetensors")  # a voice's own neural vocoder
_NEURAL = ("HiFiGANGenerator", "VocosGenerator")
SPEED_RANGE = (0.25, 4.0)
_PAUSE_S = 0.15
# Griffin-Lim defaults of the synthesis path. On the 25 held-out sentences, mean spectral
# convergence against the NNLS magnitude / pocketsphinx WER (teacher 0.124; +-0.02 is noise
# on 193 words): PGHI start phases, 12 iterations 0.162 / 0.145, 8: 0.169 / 0.171; zero phase,
# 32 iterations (the old default) 0.156 / 0.145, 8: 0.230 / 0.150. bench/tts.py: speed.
GL_ITERS = 12
GL_INIT = "pghi"
# Threads of MLX's OpenBLAS while synthesizing. The matmuls here are small ((600, 128) x
# (128, 128)-sized) and, on a loaded machine, idle threads spin waiting for a descheduled
# sibling, so one thread is faster than two (docs/performance.md, "TTS and Griffin-Lim").
SYNTH_BLAS_THREADS = 1


class SynthError(UserError, ValueError):
    """A synthesis request that cannot be served (bad voice, speed, speaker, vocoder)."""


def bundled_voices() -> list[str]:
    return sorted(p.name for p in ASSETS.iterdir() if (p / "voice.json").is_file()) if ASSETS.is_dir() else []


def resolve_voice(voice: str | os.PathLike | None) -> Path:
    """A bundled voice name or a voice folder -> its folder (clear error otherwise)."""
    name = str(voice or DEFAULT_VOICE)
    p = Path(name)
    if (p / "voice.json").is_file():
        return p
    if (ASSETS / name / "voice.json").is_file():
        return ASSETS / name
    raise SynthError(f"voice {name!r} not found: give a folder with voice.json + acoustic.safetensors "
                     f"or one of the bundled voices ({', '.join(bundled_voices()) or 'none'})")


class Synthesizer:
    """Load a voice once, synthesize many texts. ``vocoder``: "neural", "griffin-lim", or None
    (the voice's default); see the module docstring."""

    def __init__(self, voice: str | os.PathLike | None = None, *, vocoder: str | None = None,
                 vocoder_path: str | os.PathLike | None = None, hifigan_path: str | os.PathLike | None = None,
                 gl_iters: int = GL_ITERS, gl_init: str = GL_INIT) -> None:
        from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415

        self.voice_dir = resolve_voice(voice)
        self.meta = json.loads((self.voice_dir / "voice.json").read_text(encoding="utf-8"))
        self.mel = MelSpec.from_preset(self.meta.get("mel_preset", "hifigan_22k"))
        self.sample_rate = self.mel.sample_rate
        self.language = self.meta.get("language", "en")
        self.speakers = list(self.meta.get("speakers", ["default"]))
        path = self.voice_dir / "acoustic.safetensors"
        self.acoustic, self.spec = load_mlx_model(path)
        if type(self.acoustic).__name__ != "FastSpeech2":
            raise CheckpointError(f"{path}: expected a fastspeech2 checkpoint")
        self.acoustic.eval()
        self.frontend = TextFrontend(adaptation=self._adaptation())
        if vocoder_path is not None and hifigan_path is not None:
            raise SynthError("give the vocoder weights once (vocoder_path or its older name hifigan_path)")
        vocoder_path = vocoder_path if vocoder_path is not None else hifigan_path
        vocoder = self.default_vocoder(vocoder_path) if vocoder is None else vocoder
        if vocoder not in VOCODERS:
            raise SynthError(f"unknown vocoder {vocoder!r}; choose from {', '.join(VOCODERS)}")
        if vocoder == "griffin-lim" and vocoder_path is not None:
            raise SynthError("vocoder weights were given with the griffin-lim vocoder; drop one of them")
        self.vocoder_name = "griffin-lim" if vocoder == "griffin-lim" else "neural"
        from mlx_speech.audio.griffinlim import GL_INITS  # noqa: PLC0415

        if gl_init not in GL_INITS:
            raise SynthError(f"unknown Griffin-Lim init {gl_init!r}; choose from {', '.join(GL_INITS)}")
        self.gl_iters, self.gl_init = gl_iters, gl_init
        self._neural = self._load_neural(vocoder_path) if self.vocoder_name == "neural" else None

    def _adaptation(self) -> Any:
        """The voice's ``frontend.json`` (teacher-matched English phones), if it ships one."""
        path = self.voice_dir / ADAPTATION_FILE
        if not path.is_file():
            return None
        try:
            return FrontendAdaptation.load(path)
        except TextError as exc:
            raise CheckpointError(str(exc)) from None

    def own_vocoder(self) -> Path | None:
        """The neural vocoder file the voice ships, if any: in its folder, or the bundled shared
        vocoder its ``voice.json`` names (``"shared_vocoder"``: one file for voices of one speaker)."""
        own = next((self.voice_dir / f for f in VOCODER_FILES if (self.voice_dir / f).is_file()), None)
        name = self.meta.get("shared_vocoder")
        if own is not None or name is None:
            return own
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]+", name):
            raise CheckpointError(f"{self.voice_dir / 'voice.json'}: shared_vocoder must be the name of a "
                                  f"bundled vocoder (letters, digits, _), got {name!r}")
        path = SHARED_VOCODERS / f"{name}.safetensors"
        if not path.is_file():
            have = sorted(p.stem for p in SHARED_VOCODERS.glob("*.safetensors")) if SHARED_VOCODERS.is_dir() else []
            raise CheckpointError(f"{self.voice_dir / 'voice.json'}: no bundled shared vocoder {name!r} "
                                  f"(bundled: {', '.join(have) or 'none'})")
        return path

    def default_vocoder(self, vocoder_path: str | os.PathLike | None = None) -> str:
        """The voice's vocoder: neural where weights are given or the voice asks for its own."""
        if vocoder_path is not None:
            return "neural"
        wanted = self.meta.get("vocoder", "griffin-lim")
        return "neural" if wanted in ("neural", "hifigan") and self.own_vocoder() is not None else "griffin-lim"

    def _load_neural(self, path: str | os.PathLike | None) -> Any:
        path = self.own_vocoder() if path is None else Path(path)
        if path is None:
            raise SynthError(f"voice {self.voice_dir.name!r} ships no neural vocoder: use --vocoder "
                             "griffin-lim, or --vocoder-weights PATH (a tagged vocos / hifigan file, or an "
                             "official HiFi-GAN g_XXXXXXXX generator) for the same mel front end")
        if not path.is_file():
            raise SynthError(f"vocoder checkpoint {str(path)!r} not found")
        if path.suffix == ".safetensors":
            from mlx_speech.weights.mlx import load_mlx_model  # noqa: PLC0415

            gen, _ = load_mlx_model(path)
        else:
            from mlx_speech.models.hifigan.load import load_official_generator  # noqa: PLC0415
            from mlx_speech.models.hifigan.official import spec_from_config  # noqa: PLC0415

            cfg = path.parent / "config.json"
            gen = load_official_generator(path, spec_from_config(cfg if cfg.is_file() else None))
        if type(gen).__name__ not in _NEURAL:
            raise CheckpointError(f"{path}: not a vocoder checkpoint (a {type(gen).__name__}; expected "
                                  "a vocos or hifigan generator)")
        gen.remove_weight_norm()
        if gen.spec.n_mels != self.mel.n_mels or gen.hop_length != self.mel.hop_length:
            raise SynthError(f"vocoder {path.name} takes {gen.spec.n_mels} mels at hop {gen.hop_length}; the "
                             f"voice's mel has {self.mel.n_mels} at hop {self.mel.hop_length}")
        gen.eval()
        return gen

    # --- pieces -------------------------------------------------------------------------------
    def mel_for(self, ids: list[int], *, speed: float = 1.0, pitch_shift: float = 0.0,
                speaker: int = 0) -> mx.array:
        """Phone ids of one sentence -> log-mel ``(1, T, n_mels)`` (evaluated)."""
        lang = mx.array([LANGUAGES.index(self.language)], dtype=mx.int32)
        with blas_threads(SYNTH_BLAS_THREADS):
            mel, _ = self.acoustic.synthesize(mx.array([ids], dtype=mx.int32),
                                              speaker=mx.array([speaker], dtype=mx.int32),
                                              language=lang, speed=speed, pitch_shift=pitch_shift)
            mx.eval(mel)
        return mel

    def vocode(self, mel: mx.array) -> np.ndarray:
        """Log-mel ``(1, T, n_mels)`` -> waveform ``(T * hop,)`` float32."""
        if mel.shape[1] == 0:
            return np.zeros(0, np.float32)
        with blas_threads(SYNTH_BLAS_THREADS):
            if self._neural is not None:
                wav = self._neural(mel)[0]
            else:
                from mlx_speech.audio.griffinlim import mel_to_audio  # noqa: PLC0415

                k = self.mel.mel_kwargs()
                k.pop("center")
                wav = mel_to_audio(mel, log_input=True, n_iter=self.gl_iters, init=self.gl_init, **k)[0]
            return np.array(wav, dtype=np.float32)

    def synthesize(self, text: str, *, speed: float = 1.0, pitch_shift: float = 0.0, speaker: int = 0,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Text -> waveform ``(T,)`` float32 at :attr:`sample_rate` (peak-limited to 0.95)."""
        if not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
            raise SynthError(f"speed {speed} outside {SPEED_RANGE[0]}..{SPEED_RANGE[1]}")
        if not -12.0 <= pitch_shift <= 12.0:
            raise SynthError(f"pitch shift {pitch_shift} outside -12..12 semitones")
        if not 0 <= speaker < self.spec.n_speakers:
            raise SynthError(f"speaker {speaker} out of range: this voice has {self.spec.n_speakers} "
                             f"({', '.join(self.speakers)})")
        utts = self.frontend.encode(text, self.language)
        pause = np.zeros(int(_PAUSE_S * self.sample_rate), np.float32)
        pieces = []
        for i, u in enumerate(utts):
            wav = self.vocode(self.mel_for(list(u.ids), speed=speed, pitch_shift=pitch_shift, speaker=speaker))
            pieces += [wav, pause] if i < len(utts) - 1 else [wav]
            if progress is not None:
                progress(1)
        out = np.concatenate(pieces)
        peak = float(np.abs(out).max(initial=0.0))
        return out * (0.95 / peak) if peak > 0.95 else out

    def sentences(self, text: str) -> int:
        return len(self.frontend.encode(text, self.language))
