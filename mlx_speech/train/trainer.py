"""The MLX trainer: :class:`~mlx_speech.train.loop.TrainLoop` with MLX models and maths.

Weights are kept as a flat dict of float32 master copies (``self.params``); each forward binds
them into the module (cast to bf16 under ``precision: bf16``; gradients flow back to the fp32
masters). Only non-``_`` attributes are parameters, so caches and streaming state never
enter gradients, EMA or checkpoints. Per step:

1. micro-batches: ``value_and_grad`` of the task loss w.r.t. the trainable parameters, summed
   then divided by their number;
2. data parallel: one ``all_sum`` of gradients + loss over ranks, divided by the world size;
3. global-norm clipping, NaN/Inf check (a bad step changes nothing), AdamW per group, EMA.

Buffers: model arrays outside ``trainable_parameters()`` (EMA codebook statistics, which the
quantizers freeze themselves; anything a task freezes with ``Module.freeze``) get no optimiser
and no gradient. A forward may replace them (an EMA codebook update); the trainer then adopts
the new arrays after each micro-batch (the next micro-batch continues from them), averages
them over ranks and keeps them only when the step is finite -- as torch_ref keeps its
registered buffers. The step returns the buffers as outputs, so a model whose buffer updates
are plain array maths (modules declaring ``GRAPH_BUFFERS``, e.g. BatchNorm) trains compiled;
any other model with buffers trains uncompiled (a notice says so). The discriminator pass of a
GAN step discards buffer updates of the generator (only the generator pass's count).

CPU shards: on a multi-core CPU, MLX runs element-wise work, reductions and the optimiser on
one thread per stream, so a single-stream step leaves the other cores idle outside the GEMMs.
With ``cpu_shards`` > 1 (``"auto"``: one per core) each micro-batch is cut into row shards that
are evaluated at once on their own CPU streams, with MLX's OpenBLAS on one thread each; every
shard's loss and metrics are weighted by its share of the rows, so the sum is the micro-batch
mean, the maths of ``grad_accum`` (the recipe contract: losses are means over samples; a task
whose loss has batch-level terms says so with ``batch_level_loss`` and gets one shard). The
optimiser and the EMA then update one share of the parameters per stream.

GAN tasks run a discriminator step (gradients w.r.t. ``discriminator.*`` only, its own
optimiser) and then a generator step against the updated discriminator.
Dropout draws from ``mx.random``, re-seeded every step from a checkpointed key chain that is
the same on every rank, mixed with the rank.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from mlx_speech import _blas
from mlx_speech.errors import CheckpointError
from mlx_speech.weights.strict import check_state
from mlx_speech.specs.train import OptimizerSpec
from mlx_speech.train.checkpoint import add_prefix, strip_prefix
from mlx_speech.train.distributed import DataParallel
from mlx_speech.train.loop import StepResult, TrainLoop
from mlx_speech.train.optim import EMA, AdamW
from mlx_speech.train.schedule import resolve_groups

_DISC = "discriminator."


def graph_buffers(model: Any) -> bool:
    """Whether every module holding buffers updates them with array maths alone (declared by
    ``GRAPH_BUFFERS = True``, as BatchNorm does), so a compiled step can return the new values.
    A buffer update that branches in Python on array values (k-means initialisation, dead-code
    restarts) or a frozen module that is not declared keeps the step uncompiled."""
    for _, mod in model.named_modules():
        own = [k for k in mod._no_grad if isinstance(mod.get(k), mx.array)]
        if own and not getattr(mod, "GRAPH_BUFFERS", False):
            return False
    return True


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def rank_seed(value: int, rank: int) -> int:
    """A 64-bit seed for ``rank`` from a shared 64-bit draw (a rank-0 checkpoint then restores
    every rank's stream)."""
    return (value ^ (rank * 0x9E3779B97F4A7C15)) % 2**64


class Trainer(TrainLoop):
    """Train a registered task with MLX. See :class:`TrainLoop` for the arguments."""

    framework = "mlx"

    # -- set-up ----------------------------------------------------------------------------------
    def _init_distributed(self) -> tuple[int, int]:
        self.dp = DataParallel()
        return self.dp.rank, self.dp.world

    def _setup(self) -> None:
        spec = self.spec
        mx.random.seed(spec.seed)
        self.model = self.task.build()
        self.model.train()
        self.params: dict[str, mx.array] = self.dp.broadcast(dict(tree_flatten(self.model.parameters())))
        self.dtype = mx.bfloat16 if spec.precision == "bf16" else mx.float32
        trainable = {n for n, _ in tree_flatten(self.model.trainable_parameters())}
        self.buffers = frozenset(n for n in self.params if n not in trainable)
        self.compiled = spec.compile and (not self.buffers or graph_buffers(self.model))
        if spec.compile and not self.compiled:
            self.say(f"training uncompiled: the model updates {len(self.buffers)} buffer(s) in its "
                     f"forward (e.g. {sorted(self.buffers)[0]})")
        names = [n for n in self.params if n not in self.buffers]
        self.optims: dict[str, AdamW] = {}
        if self.task.gan:
            gen = [n for n in names if not n.startswith(_DISC)]
            disc = [n for n in names if n.startswith(_DISC)]
            self.optims["optim"] = self._make_opt(gen, spec.optimizer, "optimizer")
            self.optims["doptim"] = self._make_opt(disc, spec.disc_opt(), "disc_optimizer")
        else:
            self.optims["optim"] = self._make_opt(names, spec.optimizer, "optimizer")
        self.ema = EMA(spec.ema, self.params) if spec.ema.enabled else None
        self.key = mx.random.key(spec.seed)
        self._vg: dict[tuple, Callable] = {}
        self.cpu_shards = self._resolve_cpu_shards()
        self._streams = [mx.new_stream(mx.cpu) for _ in range(self.cpu_shards)] if self.cpu_shards > 1 else []
        for opt in self.optims.values():
            opt.streams = self._streams
        if self.ema is not None:
            self.ema.streams = self._streams
        self._bind(self.params)

    def _export(self) -> None:
        # the weights validation reads: the EMA's when it runs with ``ema.eval``, else the
        # fp32 masters (a forward rebinds them, cast, anyway)
        use_ema = self.ema is not None and self.spec.ema.eval
        self._bind(self.ema.weights if use_ema else self.params)
        try:
            self.task.export(self.model)
        finally:
            self._bind(self.params)

    def _resolve_cpu_shards(self) -> int:
        """Row shards per micro-batch (``cpu_shards``; 1 where sharding cannot help or would
        change the maths)."""
        want = self.spec.cpu_shards
        if (self.buffers or self.task.batch_level_loss
                or mx.default_device().type != mx.DeviceType.cpu):
            return 1
        if want == "auto":
            # ranks on one machine share its cores already; one GEMM thread per shard needs a
            # BLAS whose thread count we set (MLX's OpenBLAS on Linux)
            if self.world > 1 or _blas.status()["backend"] != "openblas":
                return 1
            return min(_cores(), 8)
        return int(want)

    def _make_opt(self, names: list[str], spec: OptimizerSpec, where: str) -> AdamW:
        return AdamW(resolve_groups(names, spec, where=where), spec, self.params)

    # -- helpers ---------------------------------------------------------------------------------
    def _cast(self, values: dict[str, mx.array]) -> dict[str, mx.array]:
        """Weights in the compute dtype; buffers stay as they are (float32 statistics)."""
        if self.dtype == mx.float32:
            return values
        return {k: v if k in self.buffers else v.astype(self.dtype) for k, v in values.items()}

    def _bind(self, values: dict[str, mx.array]) -> None:
        self.model.update(tree_unflatten(list(values.items())))

    def _seed_step(self) -> None:
        """Advance the key chain (identical on every rank, checkpointed) and seed this rank's
        ``mx.random`` stream from the new sub-key and the rank."""
        keys = mx.random.split(self.key)
        self.key = keys[0]
        lo, hi = (int(v) for v in np.array(keys[1]))
        mx.random.seed(rank_seed((hi << 32) | lo, self.rank))

    def _value_and_grad(self, kind: str, fn: Callable[[dict[str, mx.array]], Any],
                        names: list[str], shard: int | None = None) -> Callable:
        """``(train, fixed, inputs) -> ((loss, metrics), grads)``, compiled once per ``kind``
        (``mx.compile`` retraces for new input shapes; ``compile: false`` in the recipe skips it).
        With ``shard`` (its CPU stream's index): ``(train, fixed, inputs, weight)``, the loss
        multiplied by ``weight``; one function per stream, traced on that stream."""
        key = (kind, tuple(names), shard)
        if key not in self._vg:
            def f(train: dict[str, mx.array], fixed: dict[str, mx.array], inputs: dict[str, mx.array]):
                self._bind(self._cast({**fixed, **train}))
                loss, metrics = fn(inputs)
                if not self.buffers:
                    return loss, metrics
                # the buffers the forward left in the module are an output of the step, so a
                # compiled step returns them too (its trace does not re-run the assignments)
                current = dict(tree_flatten(self.model.parameters()))
                return loss, metrics, {n: current[n] for n in self.buffers}

            def weighted(train: dict[str, mx.array], fixed: dict[str, mx.array],
                         inputs: dict[str, mx.array], weight: mx.array):
                # metrics are weighted by the caller: here ``metric * weight`` would repeat
                # ``loss * weight`` for a metric that is the loss, and mx.compile's merging of
                # equal nodes then fails on the duplicate output (IndexError _Map_base::at)
                loss, metrics = f(train, fixed, inputs)
                return loss * weight, metrics

            vg = mx.value_and_grad(f if shard is None else weighted)
            if self.compiled:
                vg = mx.compile(vg, inputs=mx.random.state, outputs=mx.random.state)
            self._vg[key] = vg
        return self._vg[key]

    def _grads(self, kind: str, fn: Callable[[dict[str, mx.array]], tuple[mx.array, dict[str, mx.array]]],
               names: list[str], micro: list[dict[str, np.ndarray]]
               ) -> tuple[mx.array, dict[str, mx.array], dict[str, mx.array], dict[str, mx.array]]:
        """Mean loss, gradients (w.r.t. ``names``) and metrics over micro-batches and ranks,
        and the buffers the forward replaced (their newest values, averaged over ranks)."""
        train = {n: self.params[n] for n in names}
        fixed = {n: v for n, v in self.params.items() if n not in train}
        updated: dict[str, mx.array] = {}
        vg = self._value_and_grad(kind, fn, names)
        grads: dict[str, mx.array] | None = None
        loss_sum = mx.array(0.0)
        metric_sum: dict[str, mx.array] = {}
        for inputs in micro:
            rows = len(next(iter(inputs.values())))
            if min(self.cpu_shards, rows) > 1:
                (loss, metrics), g = self._sharded(kind, fn, names, train, fixed, inputs, rows)
            else:
                (loss, metrics, *bufs), g = vg(train, fixed, {k: mx.array(v) for k, v in inputs.items()})
            if self.buffers:
                new = {n: v for n, v in bufs[0].items() if v is not fixed[n]}
                fixed.update(new)  # the next micro-batch continues from the updated state
                updated.update(new)
            grads = g if grads is None else {k: grads[k] + g[k] for k in grads}
            loss_sum = loss_sum + loss
            metric_sum = {k: metric_sum.get(k, 0.0) + v for k, v in metrics.items()}
            if len(micro) > 1:  # bound memory to one micro-batch's graph
                mx.eval(grads, loss_sum, metric_sum, updated)
        n = len(micro)
        packed = dict(grads) if n == 1 else {k: v / n for k, v in grads.items()}
        packed["\0loss"] = loss_sum / n
        packed.update({f"\0m.{k}": v / n for k, v in metric_sum.items()})
        packed = self.dp.average(packed)
        loss = packed.pop("\0loss")
        metrics = {k[3:]: packed.pop(k) for k in list(packed) if k.startswith("\0m.")}
        if updated:
            updated = self.dp.average(updated)
        return loss, packed, metrics, updated

    def _sharded(self, kind: str, fn: Callable, names: list[str], train: dict[str, mx.array],
                 fixed: dict[str, mx.array], inputs: dict[str, np.ndarray], rows: int
                 ) -> tuple[tuple[mx.array, dict[str, mx.array]], dict[str, mx.array]]:
        """One micro-batch as row shards on the CPU streams, evaluated together: the
        rows-weighted sum of the shards' losses, metrics and gradients."""
        bounds = np.linspace(0, rows, min(self.cpu_shards, rows) + 1).round().astype(int)
        loss, metrics, grads = None, {}, {}
        for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
            vg = self._value_and_grad(kind, fn, names, shard=i)
            part = {k: mx.array(v[a:b]) for k, v in inputs.items()}
            weight = mx.array((b - a) / rows, dtype=mx.float32)
            with mx.stream(self._streams[i]):
                (l_i, m_i), g_i = vg(train, fixed, part, weight)
            m_i = {k: v * weight for k, v in m_i.items()}
            if loss is None:
                loss, metrics, grads = l_i, m_i, g_i
            else:
                loss = loss + l_i
                metrics = {k: metrics[k] + m_i[k] for k in metrics}
                grads = {k: grads[k] + g_i[k] for k in grads}
        # each sum reads one gradient of every shard, so the evaluation order interleaves them
        with _blas.blas_threads(1):
            mx.eval(loss, metrics, grads)
        return (loss, metrics), grads

    # -- hooks -----------------------------------------------------------------------------------
    def _train_step(self, micro: list[dict[str, np.ndarray]], lr_scale: float, step: int) -> StepResult:
        self._seed_step()
        model, task = self.model, self.task
        metrics: dict[str, float] = {}
        finite = True
        if task.gan:
            d_loss, d_grads, d_met, _ = self._grads(
                "disc", lambda x: task.discriminator_loss(model.generator, model.discriminator, x),
                self.optims["doptim"].names, micro)
            ok, _ = self._update("doptim", d_loss, d_grads, lr_scale)
            finite = finite and ok
            metrics.update({k: float(v.item()) for k, v in d_met.items()})
            loss, grads, met, updated = self._grads(
                "gen", lambda x: task.generator_loss(model.generator, model.discriminator, x),
                self.optims["optim"].names, micro)
        else:
            loss, grads, met, updated = self._grads("loss", lambda x: task.loss(model, x),
                                           self.optims["optim"].names, micro)
        ok, norm = self._update("optim", loss, grads, lr_scale)
        finite = finite and ok
        metrics.update({k: float(v.item()) for k, v in met.items()})
        if updated and finite:
            self.params.update(updated)
        if self.ema is not None and finite:
            self.ema.update(self.params, step)
            mx.eval(self.ema.weights)
        self._bind(self.params)  # the module holds concrete arrays between steps
        return StepResult(loss=float(loss.item()), grad_norm=norm, finite=finite, metrics=metrics)

    def _update(self, opt_key: str, loss: mx.array, grads: dict[str, mx.array],
                lr_scale: float) -> tuple[bool, float]:
        """Clip + AdamW; applied only when the loss and the gradient norm are finite."""
        opt = self.optims[opt_key]
        if not opt.names:
            return bool(np.isfinite(float(loss.item()))), 0.0
        prop = opt.propose(self.params, grads, lr_scale)
        mx.eval(loss, *prop.arrays())
        norm, loss_f = float(prop.norm.item()), float(loss.item())
        if not (np.isfinite(norm) and np.isfinite(loss_f)):
            return False, norm
        self.params.update(opt.commit(prop))
        return True, norm

    def _eval_batch(self, inputs: dict[str, np.ndarray]) -> tuple[float, int]:
        weights = self.ema.weights if self.ema is not None and self.spec.ema.eval else self.params
        self.model.eval()
        try:
            self._bind(self._cast(weights))
            loss, _ = self.task.loss(self.model, {k: mx.array(v) for k, v in inputs.items()})
            rows = len(next(iter(inputs.values())))
            return float(loss.item()) * rows, rows
        finally:
            self.model.train()
            self._bind(self.params)

    def _state_arrays(self) -> dict[str, np.ndarray]:
        out = add_prefix({k: np.array(v) for k, v in self.params.items()}, "model")
        if self.ema is not None:
            out.update(add_prefix(self.ema.state_arrays(), "ema"))
        for key, opt in self.optims.items():
            out.update(add_prefix(opt.state_arrays(), key))
        out["rng.mlx_key"] = np.array(self.key)
        return out

    def _load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        weights = strip_prefix(arrays, "model")
        check_state(weights, self.params, where="checkpoint", what="the model")
        self.params = {k: mx.array(weights[k]) for k in self.params}
        if self.ema is not None:
            ema = strip_prefix(arrays, "ema")
            if not ema:
                raise CheckpointError("the recipe enables EMA but the checkpoint has no EMA weights")
            self.ema.load_state_arrays(ema)
        for key, opt in self.optims.items():
            opt.load_state_arrays(strip_prefix(arrays, key))
        if "rng.mlx_key" not in arrays:
            raise CheckpointError("checkpoint has no MLX random key (rng.mlx_key)")
        self.key = mx.array(arrays["rng.mlx_key"])
        self._bind(self.params)

    def _sum_scalars(self, values: list[float]) -> list[float]:
        return self.dp.sum_scalars(values)

    def _device_bytes(self) -> int:
        return int(mx.get_active_memory()) if mx.metal.is_available() else 0

    def _release_memory(self) -> None:
        mx.clear_cache()

    # -- inspection (tests, export) ----------------------------------------------------------------
    def weights(self, *, ema: bool = False) -> dict[str, np.ndarray]:
        """Current float32 weights (or the EMA's) as numpy arrays, MLX layouts."""
        src = self.ema.weights if ema and self.ema is not None else self.params
        return {k: np.array(v) for k, v in src.items()}

    def summary_info(self) -> dict[str, Any]:
        return {"framework": self.framework, "rank": self.rank, "world": self.world,
                "parameters": int(sum(v.size for v in self.params.values()))}
