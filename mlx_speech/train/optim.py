"""AdamW over named parameter groups, global-norm clipping and EMA weights (MLX).

The update is ``torch.optim.AdamW``'s (decoupled weight decay, bias correction), so a recipe
trains the same way in MLX and torch_ref (a parity test checks this)::

    p <- p * (1 - lr * wd)
    m <- b1 * m + (1 - b1) * g;   v <- b2 * v + (1 - b2) * g^2
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

with ``g`` first scaled by ``min(1, max_norm / (||g|| + 1e-6))`` (``clip_grad_norm_``).
Parameters live in flat ``{name: array}`` dicts (``encoder.layers.0.linear1.weight``); frozen
groups have no state. Norm, clipping and update run as one compiled MLX graph; given several
CPU streams (``streams``, set by the trainer with ``cpu_shards``), the parameters are cut into
one share of about equal size per stream, and each stream sums its squares and updates its
share (the same maths; the norm adds the partial sums in another order).
"""

from __future__ import annotations

import dataclasses
import math

import mlx.core as mx
import numpy as np

from mlx_speech.errors import CheckpointError
from mlx_speech.weights.strict import check_state
from mlx_speech.specs.train import EMASpec, OptimizerSpec
from mlx_speech.train.schedule import Group


def _sum_squares(grads):
    return sum(mx.sum(mx.square(g.astype(mx.float32))) for g in grads)


def _clip_scale(norm, max_norm):
    return mx.minimum(1.0, max_norm / (norm + 1e-6))  # torch's clip_grad_norm_ factor


def _update(params, grads, ms, vs, lrs, wds, b1, b2, eps, bc1, bc2, gscale):
    """The AdamW update of every parameter, gradients already scaled by ``gscale``."""
    out_p, out_m, out_v = [], [], []
    for p, g, m, v, lr, wd in zip(params, grads, ms, vs, lrs, wds):
        g = g * gscale
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * (g * g)
        p = p * (1.0 - lr * wd) - (lr / bc1) * m / (mx.sqrt(v) / mx.sqrt(bc2) + eps)
        out_p.append(p)
        out_m.append(m)
        out_v.append(v)
    return out_p, out_m, out_v


def _adamw(params, grads, ms, vs, lrs, wds, b1, b2, eps, bc1, bc2, max_norm):
    """Global norm, clipping and the AdamW update of every parameter, as one graph."""
    # Gradients of ``x @ w.T`` weights arrive as transposed views; one copy to row-major lets
    # the fused update below run as a contiguous (vectorised) loop instead of a strided one
    # (docs/performance.md, "Training").
    grads = [mx.contiguous(g) for g in grads]
    norm = mx.sqrt(_sum_squares(grads))
    return (norm, *_update(params, grads, ms, vs, lrs, wds, b1, b2, eps, bc1, bc2,
                           _clip_scale(norm, max_norm)))


_adamw_compiled = mx.compile(_adamw)
# the same maths split for several CPU streams: partial sums of squares, then the update
_sum_squares_compiled = mx.compile(_sum_squares)
_update_compiled = mx.compile(
    lambda params, grads, ms, vs, lrs, wds, b1, b2, eps, bc1, bc2, norm, max_norm: _update(
        params, grads, ms, vs, lrs, wds, b1, b2, eps, bc1, bc2, _clip_scale(norm, max_norm)))


def split_by_size(sizes: list[int], parts: int) -> list[range]:
    """Cut ``range(len(sizes))`` into at most ``parts`` consecutive runs of about equal total
    size (the per-stream shares of an update over several CPU streams)."""
    total, bounds, acc = sum(sizes), [0], 0
    for i, n in enumerate(sizes):
        acc += n
        if len(bounds) < parts and acc >= total * len(bounds) / parts and i + 1 < len(sizes):
            bounds.append(i + 1)
    bounds.append(len(sizes))
    return [range(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


@dataclasses.dataclass
class Proposal:
    """A computed but not yet applied step: the pre-clip gradient norm and the new values."""

    norm: mx.array
    params: dict[str, mx.array]
    m: dict[str, mx.array]
    v: dict[str, mx.array]

    def arrays(self) -> list:
        return [self.norm, self.params, self.m, self.v]


class AdamW:
    """AdamW over the non-frozen :class:`~mlx_speech.train.schedule.Group` s of a model."""

    def __init__(self, groups: list[Group], spec: OptimizerSpec, params: dict[str, mx.array]) -> None:
        self.spec = spec
        self.groups = [g for g in groups if not g.frozen]
        self.names = [n for g in self.groups for n in g.params]
        self._base_lr = [g.lr for g in self.groups for _ in g.params]
        self._wd = [mx.array(g.weight_decay, dtype=mx.float32) for g in self.groups for _ in g.params]
        self.m = {n: mx.zeros_like(params[n]) for n in self.names}
        self.v = {n: mx.zeros_like(params[n]) for n in self.names}
        self.t = 0
        self.streams: list = []  # CPU streams to spread the update over (the trainer's)

    def lrs(self, factor: float) -> dict[str, float]:
        """Current lr of each group (for logs)."""
        return {g.name: g.lr * factor for g in self.groups}

    def propose(self, params: dict[str, mx.array], grads: dict[str, mx.array],
                factor: float) -> Proposal:
        """One step at ``lr = base * factor`` with global-norm clipping, not yet applied.

        MLX arrays are immutable, so the old values stay valid: :meth:`commit` the proposal
        when its norm (and the loss) are finite, or drop it to skip the step."""
        b1, b2 = self.spec.betas
        f32 = mx.float32
        t = self.t + 1
        clip = self.spec.grad_clip
        lrs = [mx.array(lr * factor, dtype=f32) for lr in self._base_lr]
        P, G = [params[n] for n in self.names], [grads[n] for n in self.names]
        M, V = [self.m[n] for n in self.names], [self.v[n] for n in self.names]
        consts = (mx.array(b1, dtype=f32), mx.array(b2, dtype=f32), mx.array(self.spec.eps, dtype=f32),
                  mx.array(1.0 - b1 ** t, dtype=f32), mx.array(1.0 - b2 ** t, dtype=f32))
        max_norm = mx.array(math.inf if clip is None else clip, dtype=f32)
        if len(self.streams) < 2:
            norm, new_p, new_m, new_v = _adamw_compiled(P, G, M, V, lrs, self._wd, *consts, max_norm)
        else:
            norm, new_p, new_m, new_v = self._propose_on_streams(P, G, M, V, lrs, consts, max_norm)
        return Proposal(norm=norm, params=dict(zip(self.names, new_p)),
                        m=dict(zip(self.names, new_m)), v=dict(zip(self.names, new_v)))

    def _propose_on_streams(self, P, G, M, V, lrs, consts, max_norm):
        """:meth:`propose`'s maths with the parameters cut into one share per CPU stream."""
        shares = list(zip(self.streams, split_by_size([p.size for p in P], len(self.streams))))
        pick = lambda xs, r: xs[r.start:r.stop]  # noqa: E731
        grads, partial = [], []
        for stream, r in shares:
            with mx.stream(stream):  # row-major once (see _adamw), read by both passes below
                grads.append([mx.contiguous(g) for g in pick(G, r)])
                partial.append(_sum_squares_compiled(grads[-1]))
        norm = mx.sqrt(sum(partial))
        new_p, new_m, new_v = [], [], []
        for (stream, r), g in zip(shares, grads):
            with mx.stream(stream):
                p, m, v = _update_compiled(pick(P, r), g, pick(M, r), pick(V, r),
                                           pick(lrs, r), pick(self._wd, r), *consts, norm, max_norm)
            new_p += p
            new_m += m
            new_v += v
        return norm, new_p, new_m, new_v

    def commit(self, proposal: Proposal) -> dict[str, mx.array]:
        """Apply a proposal: the optimiser state advances; returns the new parameter values."""
        self.t += 1
        self.m, self.v = proposal.m, proposal.v
        return proposal.params

    def state_arrays(self) -> dict[str, np.ndarray]:
        out = {f"{n}.exp_avg": np.array(self.m[n]) for n in self.names}
        out.update({f"{n}.exp_avg_sq": np.array(self.v[n]) for n in self.names})
        out["step"] = np.array([self.t], dtype=np.int64)
        return out

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        want = {f"{n}.{k}" for n in self.names for k in ("exp_avg", "exp_avg_sq")} | {"step"}
        check_state(arrays, dict.fromkeys(want), where="optimizer state",
                    what="the parameter groups", shapes=False)
        self.m = {n: mx.array(arrays[f"{n}.exp_avg"]) for n in self.names}
        self.v = {n: mx.array(arrays[f"{n}.exp_avg_sq"]) for n in self.names}
        self.t = int(arrays["step"][0])


@mx.compile
def _ema_compiled(ema: list[mx.array], params: list[mx.array], d: mx.array) -> list[mx.array]:
    return [e * d + p * (1.0 - d) for e, p in zip(ema, params)]


class EMA:
    """EMA of every parameter (trainable and frozen): ``ema = d * ema + (1 - d) * w``; it
    copies the weights until ``start_step``."""

    def __init__(self, spec: EMASpec, params: dict[str, mx.array]) -> None:
        self.spec = spec
        self.weights = {k: mx.array(v) for k, v in params.items()}
        self.streams: list = []  # CPU streams to spread the update over (the trainer's)

    def update(self, params: dict[str, mx.array], step: int) -> None:
        if step < self.spec.start_step:
            self.weights = dict(params)
            return
        names = list(self.weights)
        E, P = [self.weights[k] for k in names], [params[k] for k in names]
        d = mx.array(self.spec.decay, dtype=mx.float32)
        if len(self.streams) < 2:
            new = _ema_compiled(E, P, d)
        else:
            new = []
            for stream, r in zip(self.streams, split_by_size([e.size for e in E], len(self.streams))):
                with mx.stream(stream):
                    new += _ema_compiled(E[r.start:r.stop], P[r.start:r.stop], d)
        self.weights = dict(zip(names, new))

    def state_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self.weights.items()}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if set(arrays) != set(self.weights):
            raise CheckpointError("EMA weights in the checkpoint do not match the model's parameters")
        self.weights = {k: mx.array(v) for k, v in arrays.items()}


