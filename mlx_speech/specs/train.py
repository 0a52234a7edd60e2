"""Training recipe specs: optimiser + parameter groups, schedule, EMA, data, checkpoints, guards.

Framework-neutral (imports neither mlx nor torch). One ``TrainSpec`` drives both trainers,
``mlx_speech.train.trainer.Trainer`` (MLX, ``mlx.launch`` for data parallel) and
``torch_ref.train.trainer.Trainer`` (torch, ``torchrun`` + DDP), with the same meaning:

* ``data.batch_size`` is the *global* batch of one optimiser step: it is split across the
  ``world`` ranks and then into ``grad_accum`` micro-batches, so changing the number of ranks
  or the accumulation does not change the maths (the loss is a mean over samples).
* ``step`` counts optimiser iterations (also those a NaN/Inf guard skipped); the schedule and
  checkpoints are indexed by it.
* ``model`` is the task's own spec as a mapping; the task named by ``task`` checks it strictly
  (``mel_denoise`` -> :class:`MelDenoiserSpec`, ``mel_denoise_gan`` -> :class:`MelDenoiseGANSpec`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from mlx_speech.specs.audio import MelSpec
from mlx_speech.specs.base import Spec, require


def _field(factory: Any) -> Any:
    return dataclasses.field(default_factory=factory)


def _plain(value: Any) -> Any:
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _ListSpec(Spec):
    """A spec some of whose fields are lists of specs (``Spec.to_dict`` keeps those as objects)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in super().to_dict().items()}


@dataclasses.dataclass
class ParamGroupSpec(Spec):
    """Parameters whose flat name (``encoder.layers.0.linear1.weight``) matches a pattern.

    ``match`` holds ``fnmatch`` patterns (``head.*``, ``*.bias``); the first group that matches
    a parameter owns it, unmatched parameters use the optimiser's defaults. ``lr`` and
    ``weight_decay`` of ``None`` inherit the optimiser's; ``frozen`` parameters get no update
    and no optimiser state (they still count in EMA and checkpoints).
    """

    name: str
    match: list[str]
    lr: float | None = None
    weight_decay: float | None = None
    frozen: bool = False

    def validate(self) -> None:
        w = f"{type(self).__name__}({self.name!r})"
        require(bool(self.match), w, "match needs at least one pattern")
        require(self.lr is None or self.lr >= 0, w, f"lr must be >= 0, got {self.lr}")
        require(self.weight_decay is None or self.weight_decay >= 0, w, "weight_decay must be >= 0")


@dataclasses.dataclass
class OptimizerSpec(_ListSpec):
    """AdamW (decoupled weight decay, bias-corrected, as ``torch.optim.AdamW``) + schedule.

    Schedule factor ``f(step)``: linear warm-up ``(step + 1) / warmup_steps`` for the first
    ``warmup_steps`` steps, then ``constant`` 1, ``cosine`` from 1 to ``min_lr_ratio`` at the
    last step, or ``exponential`` ``decay_gamma ** (step - warmup_steps)`` floored at
    ``min_lr_ratio``. Every group's lr is multiplied by it. ``grad_clip`` clips the global L2
    norm of all trainable gradients (``None`` disables).
    """

    lr: float = 1e-3
    betas: list[float] = _field(lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.01
    schedule: Literal["constant", "cosine", "exponential"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    decay_gamma: float = 0.999
    grad_clip: float | None = 1.0
    groups: list[ParamGroupSpec] = _field(list)

    def validate(self) -> None:
        w = type(self).__name__
        require(self.lr >= 0, w, f"lr must be >= 0, got {self.lr}")
        require(len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas), w,
                f"betas must be two numbers in [0, 1), got {self.betas}")
        require(self.eps > 0, w, "eps must be > 0")
        require(self.weight_decay >= 0, w, "weight_decay must be >= 0")
        require(self.warmup_steps >= 0, w, "warmup_steps must be >= 0")
        require(0.0 <= self.min_lr_ratio <= 1.0, w, "min_lr_ratio must be in [0, 1]")
        require(0.0 < self.decay_gamma <= 1.0, w, "decay_gamma must be in (0, 1]")
        require(self.grad_clip is None or self.grad_clip > 0, w, "grad_clip must be > 0 or null")
        names = [g.name for g in self.groups]
        require(len(set(names)) == len(names), w, f"group names must be unique, got {names}")


@dataclasses.dataclass
class EMASpec(Spec):
    """Exponential moving average of the weights: ``ema = decay * ema + (1 - decay) * w``.

    Before ``start_step`` the EMA copies the weights. ``eval`` runs validation on the EMA.
    Writing an ``ema:`` section enables it (``enabled: false`` turns it off again).
    """

    enabled: bool = True
    decay: float = 0.999
    start_step: int = 0
    eval: bool = True

    def validate(self) -> None:
        w = type(self).__name__
        require(0.0 <= self.decay < 1.0, w, f"decay must be in [0, 1), got {self.decay}")
        require(self.start_step >= 0, w, "start_step must be >= 0")


@dataclasses.dataclass
class SourceSpec(Spec):
    """One data source. ``kind``: ``manifest`` (JSONL file), ``folder`` (audio files, optional
    ``.txt`` next to each), ``ljspeech`` (directory with ``metadata.csv`` and ``wavs/``).

    ``weight``: the source's share of the samples drawn per epoch (set it on all sources or on
    none; none means every item once per epoch). ``lang`` fills in items without a language.
    ``langs`` keeps only items in those languages.
    """

    kind: Literal["manifest", "folder", "ljspeech"]
    path: str
    weight: float | None = None
    lang: str | None = None
    langs: list[str] | None = None

    def validate(self) -> None:
        w = f"{type(self).__name__}({self.path!r})"
        require(bool(self.path), w, "path must not be empty")
        require(self.weight is None or self.weight > 0, w, f"weight must be > 0, got {self.weight}")


@dataclasses.dataclass
class DataSpec(_ListSpec):
    """Loader settings. Audio is read at ``sample_rate`` (resampled when the file differs).

    ``crop_seconds``: random crop of that length per item (shorter items are zero-padded and
    their true length is passed on); ``None`` keeps whole items, padded to the longest in the
    batch. ``bucket_size``: sort windows of ``batch_size * bucket_size`` items by length before
    batching (0 disables). ``val_fraction`` holds out that share of the training items when no
    ``val_sources`` are given. ``prefetch`` batches are prepared ahead by ``workers`` threads.
    """

    sources: list[SourceSpec] = _field(list)
    val_sources: list[SourceSpec] = _field(list)
    val_fraction: float = 0.0
    sample_rate: int = 16000
    batch_size: int = 8
    crop_seconds: float | None = 1.0
    min_seconds: float = 0.0
    max_seconds: float | None = None
    bucket_size: int = 0
    prefetch: int = 4
    workers: int = 2

    def validate(self) -> None:
        w = type(self).__name__
        require(self.batch_size > 0, w, f"batch_size must be > 0, got {self.batch_size}")
        require(1000 <= self.sample_rate <= 768000, w, f"sample_rate {self.sample_rate} out of range")
        require(self.crop_seconds is None or self.crop_seconds > 0, w, "crop_seconds must be > 0 or null")
        require(0.0 <= self.val_fraction < 1.0, w, "val_fraction must be in [0, 1)")
        require(self.max_seconds is None or self.max_seconds > self.min_seconds, w,
                "max_seconds must exceed min_seconds")
        require(self.bucket_size >= 0 and self.prefetch >= 1 and self.workers >= 1, w,
                "bucket_size >= 0, prefetch >= 1 and workers >= 1 are required")
        weights = [s.weight is None for s in self.sources]
        require(all(weights) or not any(weights), w,
                "set weight on every source or on none")


@dataclasses.dataclass
class CheckpointSpec(Spec):
    """Checkpoint every ``every`` steps (and at the end) into ``<out_dir>/checkpoints``,
    keeping the newest ``keep_last`` files."""

    every: int = 500
    keep_last: int = 3

    def validate(self) -> None:
        w = type(self).__name__
        require(self.every > 0, w, "every must be > 0")
        require(self.keep_last >= 1, w, "keep_last must be >= 1")


@dataclasses.dataclass
class MonitorSpec(Spec):
    """Progress bar, JSONL log (``<out_dir>/metrics.jsonl``) and resource guards.

    ``memory_limit_gb``: ceiling on this process's memory (RSS plus accelerator memory). Above
    ``memory_warn_fraction`` of it the trainer warns once; above it the trainer doubles the
    gradient accumulation (same maths, half the activations) while micro-batches can be halved,
    else it writes a checkpoint and stops cleanly. ``thermal_pause``: on macOS pause while the
    OS reports a serious or critical thermal state.
    """

    log_every: int = 10
    progress: bool = True
    memory_limit_gb: float | None = None
    memory_warn_fraction: float = 0.9
    thermal_pause: bool = True
    thermal_poll_s: float = 10.0

    def validate(self) -> None:
        w = type(self).__name__
        require(self.log_every > 0, w, "log_every must be > 0")
        require(self.memory_limit_gb is None or self.memory_limit_gb > 0, w,
                "memory_limit_gb must be > 0 or null")
        require(0.0 < self.memory_warn_fraction <= 1.0, w, "memory_warn_fraction must be in (0, 1]")
        require(self.thermal_poll_s > 0, w, "thermal_poll_s must be > 0")


@dataclasses.dataclass
class TrainSpec(Spec):
    """A training recipe (see the module docstring for the shared semantics).

    ``disc_optimizer`` holds overrides of ``optimizer``'s fields for the discriminator's own
    optimiser in GAN tasks (``{lr: 2e-4}``; empty: the same settings; parameter ``groups`` are
    not inherited). ``max_nonfinite``: stop after this many consecutive steps with a NaN/Inf
    loss or gradient (each is skipped). ``val_every``: validate every this many steps (0: only
    at the end when validation data exist); ``val_batches`` caps the batches per validation.
    ``compile``: MLX compiles the loss + gradient graph (``mx.compile``, retraced for each new
    batch shape: set false for uncropped variable-length batches); torch_ref ignores it.
    ``cpu_shards``: on the CPU, MLX splits each micro-batch into this many row shards and
    evaluates them at once on separate CPU streams (``"auto"``: one per core; 1: off; always 1
    on a GPU, for models with buffers, for tasks with batch-level loss terms, or with several
    ranks). The maths is that of
    ``grad_accum`` (shard losses weighted by their rows); torch_ref ignores it.
    """

    task: str
    model: dict[str, Any] = _field(dict)
    data: DataSpec = _field(DataSpec)
    optimizer: OptimizerSpec = _field(OptimizerSpec)
    disc_optimizer: dict[str, Any] = _field(dict)
    ema: EMASpec = _field(lambda: EMASpec(enabled=False))
    checkpoint: CheckpointSpec = _field(CheckpointSpec)
    monitor: MonitorSpec = _field(MonitorSpec)
    steps: int = 1000
    grad_accum: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = True
    cpu_shards: int | Literal["auto"] = "auto"
    seed: int = 0
    out_dir: str = "runs/train"
    max_nonfinite: int = 5
    val_every: int = 0
    val_batches: int | None = None

    def validate(self) -> None:
        w = type(self).__name__
        require(bool(self.task), w, "task must be named")
        require(self.steps > 0, w, f"steps must be > 0, got {self.steps}")
        require(self.grad_accum >= 1, w, "grad_accum must be >= 1")
        require(self.data.batch_size % self.grad_accum == 0, w,
                f"data.batch_size {self.data.batch_size} must be divisible by grad_accum {self.grad_accum}")
        require(self.cpu_shards == "auto" or self.cpu_shards >= 1, w,
                f"cpu_shards must be 'auto' or an integer >= 1, got {self.cpu_shards!r}")
        require(self.max_nonfinite >= 1, w, "max_nonfinite must be >= 1")
        require(self.val_every >= 0, w, "val_every must be >= 0")
        require(self.val_batches is None or self.val_batches > 0, w, "val_batches must be > 0 or null")
        self.disc_opt()

    def disc_opt(self) -> OptimizerSpec:
        """The discriminator's optimiser: ``optimizer`` with ``disc_optimizer``'s overrides."""
        base = {k: v for k, v in self.optimizer.to_dict().items() if k != "groups"}
        merged = {**base, **self.disc_optimizer}
        return OptimizerSpec._build(merged, strict=True, where=f"{type(self).__name__}.disc_optimizer")


# --- the tiny tasks shipped with the trainer (tests, benchmark, smoke runs) -------------------
@dataclasses.dataclass
class SpecAugmentSpec(Spec):
    """SpecAugment masks on ``(frames, bins)`` features: ``time_masks`` spans of up to
    ``time_width`` frames and ``freq_masks`` bands of up to ``freq_width`` bins, zeroed.
    Writing a ``spec_augment:`` section enables it."""

    enabled: bool = True
    time_masks: int = 2
    time_width: int = 10
    freq_masks: int = 2
    freq_width: int = 8

    def validate(self) -> None:
        w = type(self).__name__
        require(min(self.time_masks, self.time_width, self.freq_masks, self.freq_width) >= 0, w,
                "mask counts and widths must be >= 0")


@dataclasses.dataclass
class MelDenoiserSpec(Spec):
    """``mel_denoise``: a small transformer that maps the log-mel of noisy speech (white noise
    at an SNR drawn from ``snr_db``, SpecAugment on the input) to the clean log-mel; masked L1.

    A stand-in workload for the training infrastructure (tests, benchmark), not a product model.
    """

    mel: MelSpec = _field(lambda: MelSpec.from_preset("speech_16k").replace(n_mels=40))
    dim: int = 64
    num_layers: int = 2
    num_heads: int = 4
    ffn_dim: int = 128
    activation: Literal["gelu", "relu", "silu"] = "gelu"
    dropout: float = 0.0
    snr_db: list[float] = _field(lambda: [5.0, 20.0])
    spec_augment: SpecAugmentSpec = _field(lambda: SpecAugmentSpec(enabled=False))

    def validate(self) -> None:
        w = type(self).__name__
        require(self.dim > 0 and self.num_layers > 0 and self.ffn_dim > 0, w, "sizes must be positive")
        require(self.num_heads > 0 and self.dim % self.num_heads == 0, w,
                f"dim {self.dim} must be divisible by num_heads {self.num_heads}")
        require(0.0 <= self.dropout < 1.0, w, "dropout must be in [0, 1)")
        require(len(self.snr_db) == 2 and self.snr_db[0] <= self.snr_db[1], w,
                f"snr_db must be [low, high], got {self.snr_db}")


@MelDenoiserSpec.preset("tiny")
def mel_denoiser_tiny() -> MelDenoiserSpec:
    return MelDenoiserSpec()


@dataclasses.dataclass
class MelDenoiseGANSpec(Spec):
    """``mel_denoise_gan``: the :class:`MelDenoiserSpec` generator plus a per-frame MLP
    discriminator (``disc_dim`` wide); least-squares GAN loss weighted ``adv_weight`` next to
    the L1 loss weighted ``recon_weight``."""

    generator: MelDenoiserSpec = _field(MelDenoiserSpec)
    disc_dim: int = 64
    adv_weight: float = 0.1
    recon_weight: float = 1.0

    def validate(self) -> None:
        w = type(self).__name__
        require(self.disc_dim > 0, w, "disc_dim must be > 0")
        require(self.adv_weight >= 0 and self.recon_weight >= 0, w, "loss weights must be >= 0")
