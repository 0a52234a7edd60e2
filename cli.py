"""``mlx-speech`` command line: dispatch only; heavy imports live inside each command.

User errors print one line to stderr and exit with code 2; ``--verbose`` shows the traceback.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import click

# Exceptions that are the user's doing even when not raised as our UserError.
_USER_EXC = (FileNotFoundError, IsADirectoryError, PermissionError, ModuleNotFoundError)


class _Group(click.Group):
    """A click group that turns user errors into one line on stderr and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        from mlx_speech.errors import UserError  # noqa: PLC0415

        verbose = bool(ctx.find_root().params.get("verbose"))
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except (UserError, *_USER_EXC) as exc:
            _report(exc, verbose, prefix="error")
            ctx.exit(2)
        except Exception as exc:  # noqa: BLE001 - a bug: still one line unless --verbose
            _report(exc, verbose, prefix=f"internal error ({type(exc).__name__})",
                    hint=" (run with --verbose for the traceback)")
            ctx.exit(1)


def _report(exc: BaseException, verbose: bool, *, prefix: str, hint: str = "") -> None:
    if verbose:
        traceback.print_exc()
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else type(exc).__name__
    click.echo(f"{prefix}: {msg}{'' if verbose else hint}", err=True)


def _emit(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    width = max(len(k) for k in data) if data else 0
    for k, v in data.items():
        click.echo(f"{k:<{width}}  {v}")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", "-v", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="mlx-speech", prog_name="mlx-speech")
def cli(verbose: bool) -> None:
    """mlx-speech: speech models in MLX with a PyTorch mirror."""
    import mlx_speech  # noqa: PLC0415

    mlx_speech.accelerate()  # before any command imports mlx (a no-op on macOS and GPU backends)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(as_json: bool) -> None:
    """Package versions, MLX device and BLAS, memory."""
    from mlx_speech.sysinfo import system_info  # noqa: PLC0415

    _emit(system_info(), as_json)


@cli.group(cls=_Group)
def audio() -> None:
    """Inspect and convert audio files."""


@audio.command("inspect")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audio_inspect(paths: tuple[Path, ...], as_json: bool) -> None:
    """Print sample rate, channels, duration, level of each file."""
    from mlx_speech.audio.io import info as audio_info  # noqa: PLC0415

    results = {str(p): audio_info(p) for p in paths}
    if as_json:
        click.echo(json.dumps(results, indent=2, default=str))
        return
    for p, d in results.items():
        click.echo(p)
        for k, v in d.items():
            click.echo(f"  {k:<12} {v}")


@audio.command("convert")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--sr", type=int, default=None, help="Resample to this rate (Hz).")
@click.option("--mono", is_flag=True, help="Mix down to one channel.")
@click.option("--subtype", default=None, help="soundfile subtype, e.g. PCM_16, PCM_24, FLOAT.")
def audio_convert(src: Path, dst: Path, sr: int | None, mono: bool, subtype: str | None) -> None:
    """Convert SRC to DST (format from DST's extension: wav, flac, ogg)."""
    from mlx_speech.audio.io import convert  # noqa: PLC0415

    convert(src, dst, sr=sr, mono=mono, subtype=subtype)
    click.echo(f"wrote {dst}")


@cli.command()
@click.option("--input", "input_path", type=click.Path(path_type=Path), default=None,
              help="Speech file to use (default: a built-in synthetic speech-like signal).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("out/demo_griffinlim.wav"),
              show_default=True, help="Where to write the reconstruction.")
@click.option("--preset", default="hifigan_22k", show_default=True, help="MelSpec preset.")
@click.option("--n-iter", default=64, show_default=True, type=click.IntRange(1, 10000),
              help="Griffin-Lim iterations.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def demo(input_path: Path | None, output: Path, preset: str, n_iter: int, as_json: bool) -> None:
    """DSP demo: speech -> log-mel -> Griffin-Lim -> WAV, with quality metrics."""
    from mlx_speech.demo import run_demo  # noqa: PLC0415

    result = run_demo(input_path=input_path, output=output, preset=preset, n_iter=n_iter)
    _emit(result, as_json)


@cli.group(cls=_Group, name="convert")
def convert_group() -> None:
    """Move checkpoints between MLX and torch_ref layouts."""


@convert_group.command("to-torch")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
def convert_to_torch(src: Path, dst: Path) -> None:
    """Convert an MLX safetensors checkpoint to torch_ref layout."""
    from convert.checkpoint import convert_file  # noqa: PLC0415

    meta = convert_file(src, dst, target="torch")
    click.echo(f"wrote {dst} ({meta['model']}, {meta['num_tensors']} tensors, torch layout)")


@convert_group.command("to-mlx")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
def convert_to_mlx(src: Path, dst: Path) -> None:
    """Convert a torch_ref safetensors checkpoint to MLX layout."""
    from convert.checkpoint import convert_file  # noqa: PLC0415

    meta = convert_file(src, dst, target="mlx")
    click.echo(f"wrote {dst} ({meta['model']}, {meta['num_tensors']} tensors, MLX layout)")


@convert_group.command("hifigan-generator")
@click.argument("src", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--ema", is_flag=True, help="Export the EMA weights of the run.")
@click.option("--half", is_flag=True, help="Store the weights as float16 (half the file; computed in float32).")
def convert_hifigan_generator(src: tuple[Path, ...], dst: Path, ema: bool, half: bool) -> None:
    """Export the generator (HiFi-GAN or Vocos) of a `train hifigan` checkpoint for `synth`.

    With several SRC checkpoints (same generator), DST holds the average of their weights."""
    from convert.hifigan_train import export_generator  # noqa: PLC0415

    info = export_generator(list(src), dst, ema=ema, half=half)
    avg = f", average of {info['checkpoints']} checkpoints" if info["checkpoints"] > 1 else ""
    click.echo(f"wrote {dst} ({info['kind']} generator, {info['tensors']} tensors, "
               f"hop {info['hop_length']}{avg}, {info['dtype']})")


@convert_group.command("mimi-surgery")
@click.option("--src", required=True, type=click.Path(path_type=Path),
              help="Mimi weights: moshi file, transformers folder/file or an mlx-speech Mimi file.")
@click.option("--dst", required=True, type=click.Path(path_type=Path),
              help="Output folder (model.safetensors + surgery_report.json).")
@click.option("--arrangement", type=click.Choice(["split", "residual"]), default="split",
              show_default=True, help="Bridge data flow; split reproduces Mimi exactly.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fresh tensors.")
@click.option("--qwen-dim", type=click.IntRange(1), default=None, help="Qwen hidden width (1536).")
@click.option("--wavlm-dim", type=click.IntRange(1), default=None, help="WavLM feature width (1024).")
def convert_mimi_surgery(src: Path, dst: Path, arrangement: str, seed: int, qwen_dim: int | None,
                         wavlm_dim: int | None) -> None:
    """Make a 9-codebook Mimi (head 0 fresh and gated off, heads 1-8 = Mimi's 0-7)."""
    from convert.mimi_surgery import surgery  # noqa: PLC0415

    surgery(src, dst, arrangement=arrangement, seed=seed, qwen_dim=qwen_dim,
            wavlm_dim=wavlm_dim, echo=click.echo)


@cli.command()
@click.argument("target")
@click.option("--config", "-c", type=click.Path(path_type=Path), default=None,
              help="Recipe YAML for a named TARGET (default: the target's recipe shipped in mlx_speech/configs/).")
@click.option("--backend", type=click.Choice(["mlx", "torch"]), default="mlx", show_default=True,
              help="mlx (mlx.launch for data parallel) or torch (torchrun + DDP).")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output directory (overrides the recipe's out_dir).")
@click.option("--steps", type=click.IntRange(1), default=None, help="Override the number of steps.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe field (value in YAML), e.g. --set data.batch_size=16.")
@click.option("--no-progress", is_flag=True, help="No progress bar (the JSONL log is still written).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def train(target: str, config: Path | None, backend: str, out_dir: Path | None, steps: int | None,
          overrides: tuple[str, ...], no_progress: bool, as_json: bool) -> None:
    """Train TARGET: tts, mimi9, hifigan (recipe from --config or the shipped one), or a recipe YAML path.

    Resumes from the newest checkpoint in the recipe's out_dir.
    """
    from mlx_speech.train.targets import resolve  # noqa: PLC0415

    job = resolve(target, config)
    extra = [f"steps={steps}"] if steps is not None else []
    from mlx_speech.train.recipe import load_recipe, make_trainer  # noqa: PLC0415

    spec = load_recipe(job.config, [*overrides, *extra])
    trainer = make_trainer(spec, backend, out_dir=out_dir, progress=False if no_progress else None)
    summary = trainer.run()
    if trainer.rank == 0:
        _emit(summary, as_json)


@cli.group(cls=_Group, name="data")
def data_group() -> None:
    """Datasets: offline speech corpora."""


@data_group.command("synth-corpus")
@click.option("--langs", default="en,hi,te", show_default=True, help="Comma-separated: en, hi, te.")
@click.option("--n", "n", type=click.IntRange(1), default=30, show_default=True,
              help="Utterances in total, spread evenly over the languages.")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Output directory (wavs/, manifest.jsonl).")
@click.option("--sr", type=int, default=16000, show_default=True, help="Sample rate of the WAVs.")
@click.option("--workers", type=click.IntRange(1), default=2, show_default=True, help="Parallel workers.")
@click.option("--engines", default=None, help="Limit to these synthesizers: festival,espeak,flite.")
@click.option("--seed", type=int, default=0, show_default=True, help="Sentence / voice choice seed.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_synth_corpus(langs: str, n: int, out_dir: Path, sr: int, workers: int, engines: str | None,
                      seed: int, as_json: bool) -> None:
    """Generate a speech corpus offline with festival, espeak-ng and flite (WAV + timings + manifest)."""
    from mlx_speech.data.synth_corpus import synth_corpus  # noqa: PLC0415

    summary = synth_corpus(
        out_dir, langs=[x.strip() for x in langs.split(",") if x.strip()], n=n, sample_rate=sr,
        workers=workers, engines=None if engines is None else [e.strip() for e in engines.split(",")],
        seed=seed, progress=not as_json)
    _emit(summary, as_json)


@data_group.command("tts-gta")
@click.option("--voice", default="en_slt", show_default=True, help="Bundled voice name or voice folder.")
@click.option("--manifest", required=True, type=click.Path(path_type=Path),
              help="The voice's training corpus (manifest.jsonl with phone timings).")
@click.option("--out", "-o", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for one <wav stem>.npy per utterance (a hifigan recipe's model.mel_dir).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_tts_gta(voice: str, manifest: Path, out_dir: Path, as_json: bool) -> None:
    """Ground-truth-aligned mels of a TTS voice, for fine-tuning its vocoder on them."""
    from mlx_speech.data.manifest import DataError  # noqa: PLC0415
    from mlx_speech.train.tts_gta import gta_mels  # noqa: PLC0415

    if not manifest.is_file():
        raise DataError(f"manifest not found: {manifest}")
    _emit(gta_mels(voice, manifest, out_dir, progress=not as_json), as_json)


@data_group.command("tts-frontend")
@click.option("--manifest", "manifests", multiple=True, required=True, type=click.Path(path_type=Path),
              help="The voice's training corpus (manifest.jsonl with word / phone timings); repeatable.")
@click.option("--voice-dir", "-o", "voice_dir", required=True, type=click.Path(path_type=Path),
              help="The voice folder that gets frontend.json.")
@click.option("--dev", type=click.Path(path_type=Path), default=None,
              help="A corpus the fit does not see: report the pause agreement there too.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_tts_frontend(manifests: tuple[Path, ...], voice_dir: Path, dev: Path | None, as_json: bool) -> None:
    """The corpus teacher's English word forms and pauses as a voice's frontend.json (the tts
    recipe writes it for corpus-aligned voices; this adds it to a voice trained before)."""
    from mlx_speech.data.manifest import DataError  # noqa: PLC0415
    from mlx_speech.text.adapt import write_for_voice  # noqa: PLC0415

    for m in [*manifests, *([dev] if dev is not None else [])]:
        if not m.is_file():
            raise DataError(f"manifest not found: {m}")
    _emit(write_for_voice(list(manifests), voice_dir, dev), as_json)


@data_group.command("teacher-cache")
@click.option("--config", "-c", "config", type=click.Path(path_type=Path), required=True,
              help="A mimi9 recipe (task: mimi9), e.g. mlx_speech/configs/mimi9_distill.yaml.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe field (value in YAML), e.g. --set model.qwen.layer=12.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def data_teacher_cache(config: Path, overrides: tuple[str, ...], no_progress: bool, as_json: bool) -> None:
    """Fill a mimi9 recipe's teacher-target cache for every utterance up front (training would
    otherwise fill it on the fly)."""
    from mlx_speech.errors import SpecError  # noqa: PLC0415
    from mlx_speech.train.mimi9_targets import build_cache  # noqa: PLC0415

    if not config.is_file():
        raise SpecError(f"config file not found: {config}")
    _emit(build_cache(config, list(overrides), progress=not no_progress), as_json)


@cli.command()
@click.argument("text", required=False)
@click.option("--file", "-f", "text_file", type=click.Path(path_type=Path), default=None,
              help="Read the text from this UTF-8 file instead.")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("out.wav"), show_default=True,
              help="Output WAV.")
@click.option("--voice", default="en_slt", show_default=True, help="Bundled voice name or voice folder.")
@click.option("--weights", type=click.Path(path_type=Path), default=None,
              help="Voice folder (acoustic.safetensors + voice.json); overrides --voice.")
@click.option("--speaker", type=int, default=0, show_default=True, help="Speaker index of a multi-speaker voice.")
@click.option("--speed", type=float, default=1.0, show_default=True, help="Speaking rate, 0.25..4 (2 = twice as fast).")
@click.option("--pitch", type=float, default=0.0, show_default=True, help="Pitch shift in semitones, -12..12.")
@click.option("--vocoder", type=click.Choice(["neural", "griffin-lim", "hifigan"]), default=None,
              help="Waveform generator: neural (the voice's own vocoder, or --vocoder-weights) or "
                   "griffin-lim (no weights). Default: the voice's choice (neural where it ships one). "
                   "hifigan is the older name of neural.")
@click.option("--vocoder-weights", "--hifigan", "vocoder_path", type=click.Path(path_type=Path), default=None,
              help="Neural vocoder: a tagged vocos / hifigan .safetensors (convert hifigan-generator) or an "
                   "official HiFi-GAN g_XXXXXXXX (config.json beside it).")
@click.option("--gl-iters", type=click.IntRange(1, 1000), default=12, show_default=True,
              help="Griffin-Lim iterations (from PGHI start phases; = mlx_speech.pipelines.synth.GL_ITERS).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def synth(text: str | None, text_file: Path | None, output: Path, voice: str, weights: Path | None,
          speaker: int, speed: float, pitch: float, vocoder: str | None, vocoder_path: Path | None,
          gl_iters: int, as_json: bool) -> None:
    """Speak TEXT (or --file) into a WAV with a TTS voice (the bundled English voice by default)."""
    import time  # noqa: PLC0415

    from mlx_speech.pipelines.synth import SynthError, Synthesizer  # noqa: PLC0415

    if (text is None) == (text_file is None):
        raise SynthError("give the text either as an argument or with --file, not both or neither")
    if text_file is not None:
        try:
            text = text_file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SynthError(f"{text_file} is not UTF-8 text") from None
    if vocoder == "griffin-lim" and vocoder_path is not None:
        raise SynthError("--vocoder-weights needs a neural vocoder, not --vocoder griffin-lim")
    t0 = time.perf_counter()
    syn = Synthesizer(weights or voice, vocoder=vocoder, vocoder_path=vocoder_path, gl_iters=gl_iters)
    n = syn.sentences(text)
    from tqdm import tqdm  # noqa: PLC0415

    with tqdm(total=n, unit="sentence", desc="synth", disable=as_json or n < 2) as bar:
        wav = syn.synthesize(text, speed=speed, pitch_shift=pitch, speaker=speaker, progress=bar.update)
    from mlx_speech.audio.io import save  # noqa: PLC0415

    path = save(output, wav, syn.sample_rate)
    seconds = len(wav) / syn.sample_rate
    elapsed = time.perf_counter() - t0
    _emit({"output": str(path), "seconds": round(seconds, 3), "sentences": n, "sample_rate": syn.sample_rate,
           "voice": syn.voice_dir.name, "vocoder": syn.vocoder_name, "elapsed_s": round(elapsed, 3)}, as_json)


@cli.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--output", "-o", "dst", type=click.Path(path_type=Path), required=True,
              help="Restored audio file (.wav / .flac / .ogg), at the restorer's sample rate.")
@click.option("--weights", type=click.Path(path_type=Path), required=True,
              help="Miipher-2 restorer: a miipher2 .safetensors file (e.g. a training run's "
                   "miipher2.safetensors); none is bundled.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def restore(src: Path, dst: Path, weights: Path, no_progress: bool, as_json: bool) -> None:
    """Restore degraded speech in SRC (noise, reverb, band limits, codecs) with Miipher-2.

    Any length and input rate: the file is streamed in overlapping windows that are
    cross-faded, so memory stays flat.
    """
    from mlx_speech.pipelines.restore import restore_file  # noqa: PLC0415

    _emit(restore_file(src, dst, weights=weights, progress=not (no_progress or as_json),
                       notice=_notice), as_json)


class _DefaultCommandGroup(_Group):
    """A group whose first argument, when it names no subcommand, goes to ``default``
    (``mlx-speech s2s IN.wav -o OUT.wav`` is ``mlx-speech s2s convert IN.wav -o OUT.wav``)."""

    default = "convert"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [self.default, *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_DefaultCommandGroup, name="s2s")
def s2s_group() -> None:
    """Speech-to-speech: `s2s IN.wav -o OUT.wav --weights W` (the encoder-decoder model)."""


@s2s_group.command("convert")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--output", "-o", "dst", type=click.Path(path_type=Path), required=True,
              help="Audio file to write (.wav / .flac / .ogg), at the codec's rate.")
@click.option("--weights", type=click.Path(path_type=Path), required=True,
              help="An s2s model file (e.g. a training run's s2s.safetensors).")
@click.option("--codec-weights", type=click.Path(path_type=Path), default=None,
              help="The codec's weights (default: the path the model was trained with).")
@click.option("--speaker", type=click.IntRange(0), default=None, help="Speaker id of the output.")
@click.option("--emotion", type=click.IntRange(0), default=None, help="Emotion id of the output.")
@click.option("--language", type=click.IntRange(0), default=None, help="Language id of the output.")
@click.option("--temperature", type=click.FloatRange(0.0), default=0.0, show_default=True,
              help="Sampling temperature (0: greedy).")
@click.option("--top-k", type=click.IntRange(0), default=0, show_default=True)
@click.option("--top-p", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--stream", is_flag=True, help="Decode frame by frame and print each frame's latency.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def s2s_convert(src: Path, dst: Path, weights: Path, codec_weights: Path | None,
                speaker: int | None, emotion: int | None, language: int | None,
                temperature: float, top_k: int, top_p: float, seed: int, stream: bool,
                as_json: bool) -> None:
    """Convert the speech in SRC with an s2s model: codec codes in, generated codes out."""
    from mlx_speech.pipelines.s2s_convert import convert_file  # noqa: PLC0415

    _emit(convert_file(src, dst, weights=weights, speaker=speaker, emotion=emotion,
                       language=language, stream=stream, codec_weights=codec_weights,
                       temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                       notice=_notice), as_json)


@s2s_group.command("generate")
@click.option("--weights", type=click.Path(path_type=Path), required=True,
              help="A moshi LM folder (model.safetensors + config.json) or our moshi_lm file.")
@click.option("--user-codes", type=click.Path(path_type=Path), required=True,
              help="The user's codes file, (1, n_q - dep_q, T) (e.g. from `codec encode`).")
@click.option("--output", "-o", "dst", type=click.Path(path_type=Path), required=True,
              help="Codes file to write (.safetensors): the model's audio codes + text tokens.")
@click.option("--greedy/--sample", default=True, show_default=True,
              help="Most likely tokens (moshi's LMGen without sampling) or sampled ones.")
@click.option("--temperature", type=click.FloatRange(0.0), default=0.8, show_default=True,
              help="With --sample: audio temperature.")
@click.option("--text-temperature", type=click.FloatRange(0.0), default=0.7, show_default=True,
              help="With --sample: text temperature.")
@click.option("--top-k", type=click.IntRange(0), default=250, show_default=True,
              help="With --sample: keep the k most likely tokens (0: all).")
@click.option("--top-p", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def s2s_generate(weights: Path, user_codes: Path, dst: Path, greedy: bool, temperature: float,
                 text_temperature: float, top_k: int, top_p: float, seed: int,
                 no_progress: bool, as_json: bool) -> None:
    """The Moshi-style LM's answer to a user's codes: one model step per frame."""
    from mlx_speech.pipelines.s2s import generate_file  # noqa: PLC0415

    sampler = None
    if not greedy:
        from mlx_speech.models.s2s.sampling import make_sampler  # noqa: PLC0415

        sampler = make_sampler(temperature=temperature, text_temperature=text_temperature,
                               top_k=top_k, top_p=top_p, seed=seed)
    _emit(generate_file(weights, user_codes, dst, greedy=greedy, sampler=sampler,
                        progress=not (no_progress or as_json)), as_json)


@cli.group(cls=_Group, name="codec")
def codec_group() -> None:
    """Neural audio codecs (mimi, mimi9, dac, bsq-vit, ...): audio <-> codes files."""


class _Registered(click.Choice):
    """A choice among registry names, read when the CLI parses (not when it is imported)."""

    def __init__(self, names: str) -> None:
        self._names = names
        super().__init__([])

    @property
    def choices(self) -> list[str]:  # type: ignore[override]
        from mlx_speech import registry  # noqa: PLC0415

        return getattr(registry, self._names)()

    @choices.setter
    def choices(self, _: Any) -> None:
        pass

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        # registry names use "_"; a command line may spell them with "-" (bsq-vit)
        if isinstance(value, str) and value not in self.choices:
            value = value.replace("-", "_")
        return super().convert(value, param, ctx)


_CODEC_MODELS = _Registered("codec_names")
_WEIGHTS_HELP = ("Codec weights: an mlx-speech checkpoint or folder, or a format the codec's family "
                 "reads (Mimi: a moshi .safetensors or a transformers folder).")
_CODEBOOKS_HELP = ("Codebooks to use (Mimi: 1..32, default 8; mimi9: 1..9, default 9; DAC: 1..the "
                   "model's levels, default all; BSQ-ViT: all of them).")


def _notice(msg: str) -> None:
    click.echo(msg, err=True)


@codec_group.command("encode")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--output", "-o", "dst", type=click.Path(path_type=Path), required=True,
              help="Codes file to write (.safetensors).")
@click.option("--model", "model_name", type=_CODEC_MODELS, default="mimi", show_default=True)
@click.option("--weights", type=click.Path(path_type=Path), required=True, help=_WEIGHTS_HELP)
@click.option("--num-codebooks", "-n", type=click.IntRange(1), default=None, help=_CODEBOOKS_HELP)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def codec_encode(src: Path, dst: Path, model_name: str, weights: Path, num_codebooks: int | None,
                 no_progress: bool, as_json: bool) -> None:
    """Encode the audio file SRC to a codes file (resampled to the codec's rate if needed)."""
    from mlx_speech.pipelines.codec import encode_file  # noqa: PLC0415

    _emit(encode_file(src, dst, model_name=model_name, weights=weights,
                      num_codebooks=num_codebooks, progress=not (no_progress or as_json),
                      notice=_notice), as_json)


@codec_group.command("decode")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--output", "-o", "dst", type=click.Path(path_type=Path), required=True,
              help="Audio file to write (.wav / .flac).")
@click.option("--model", "model_name", type=_CODEC_MODELS, default="mimi", show_default=True)
@click.option("--weights", type=click.Path(path_type=Path), required=True, help=_WEIGHTS_HELP)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def codec_decode(src: Path, dst: Path, model_name: str, weights: Path, no_progress: bool,
                 as_json: bool) -> None:
    """Decode the codes file SRC to audio at the codec's sample rate."""
    from mlx_speech.pipelines.codec import decode_file  # noqa: PLC0415

    _emit(decode_file(src, dst, model_name=model_name, weights=weights,
                      progress=not (no_progress or as_json)), as_json)


@codec_group.command("roundtrip")
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--output", "-o", "dst", type=click.Path(path_type=Path), default=None,
              help="Also write the decoded audio here.")
@click.option("--model", "model_name", type=_CODEC_MODELS, default="mimi", show_default=True)
@click.option("--weights", type=click.Path(path_type=Path), required=True, help=_WEIGHTS_HELP)
@click.option("--num-codebooks", "-n", type=click.IntRange(1), default=None, help=_CODEBOOKS_HELP)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def codec_roundtrip(src: Path, dst: Path | None, model_name: str, weights: Path,
                    num_codebooks: int | None, no_progress: bool, as_json: bool) -> None:
    """Encode and decode SRC; print SNR, mel distance and PESQ / STOI (where installed)."""
    from mlx_speech.pipelines.codec import roundtrip_file  # noqa: PLC0415

    _emit(roundtrip_file(src, dst, model_name=model_name, weights=weights,
                         num_codebooks=num_codebooks, progress=not (no_progress or as_json),
                         notice=_notice), as_json)


@cli.command()
@click.argument("input_path", metavar="IN", type=click.Path(path_type=Path))
@click.option("--model", "family", required=True,
              type=click.Choice(["wavlm", "hubert", "wav2vec2", "w2v-bert"]),
              help="SSL encoder family (checked against the weights' config.json).")
@click.option("--weights", required=True, type=click.Path(path_type=Path),
              help="Local transformers directory: config.json + model.safetensors / pytorch_model.bin.")
@click.option("--layer", "layers", type=int, multiple=True, required=True,
              help="Hidden state index (0 = input of the first layer; negative counts from the "
                   "end); repeat for several.")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="Output .npy: (F, D) for one layer, (L, F, D) for several.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def features(input_path: Path, family: str, weights: Path, layers: tuple[int, ...], output: Path,
             as_json: bool) -> None:
    """SSL hidden states of the audio file IN (resampled to 16 kHz, mixed to mono)."""
    import numpy as np  # noqa: PLC0415

    from mlx_speech.audio.io import load  # noqa: PLC0415
    from mlx_speech.models.ssl.load import load_ssl  # noqa: PLC0415
    from mlx_speech.utils.atomic import atomic_path  # noqa: PLC0415

    if output.suffix != ".npy":
        from mlx_speech.errors import UserError  # noqa: PLC0415

        raise UserError(f"--output must end in .npy, got {output}")
    wav, sr = load(input_path, sr=16000, mono=True)
    model = load_ssl(weights, family=family)
    try:
        feats = model.features(wav, layers=list(layers), sample_rate=sr)
    except ValueError as exc:  # a layer index out of range
        from mlx_speech.errors import UserError  # noqa: PLC0415

        raise UserError(str(exc)) from None
    arrays = [np.array(f[0]) for f in feats]
    out = arrays[0] if len(arrays) == 1 else np.stack(arrays)
    with atomic_path(output, suffix=".npy") as tmp:
        np.save(tmp, out.astype(np.float32))
    _emit({"output": str(output), "shape": list(out.shape), "model": model.spec.model_type,
           "layers": list(layers), "frames_per_second": round(out.shape[-2] / (len(wav) / sr), 2)},
          as_json)


class _EvalGroup(_Group):
    """``eval NAME``: the evaluations the model families register (``evals=``); each is a click
    command in ``mlx_speech/eval/``, imported only when listed or run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from mlx_speech import registry  # noqa: PLC0415

        return sorted(registry.evals())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from mlx_speech import registry  # noqa: PLC0415

        target = registry.evals().get(cmd_name)
        return None if target is None else registry.resolve(target)


@cli.group(cls=_EvalGroup, name="eval")
def eval_group() -> None:
    """Evaluate trained models on held-out data."""


def main() -> None:
    cli(prog_name="mlx-speech")


if __name__ == "__main__":
    sys.exit(main())
