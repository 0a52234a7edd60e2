"""Evaluate speech restoration (``mlx-speech eval restore``): how much a restoration model
(Miipher-2) improves degraded speech, on a held-out manifest of clean utterances.

Per utterance: the clean audio, a degraded copy (the item's ``degraded`` file, or one made by
the degradation pipeline with a generator seeded by ``[seed, index]``, so a report is
reproducible and every model sees the same inputs), and the model's restoration of it. Both
the degraded and the restored audio are scored against the clean one (:func:`score_pair`):

* ``pesq``: wide-band PESQ (the pair resampled to 16 kHz) -> ``pesq_wb``;
* ``stoi``: STOI -> ``stoi``;
* ``si_sdr``: SI-SDR in dB -> ``si_sdr_db`` (a vocoder does not keep the phase, so this is
  low for any resynthesis; it shows the degraded side's noise level and gross failures);
* ``dnsmos``: DNSMOS of the scored signal alone -> ``dnsmos_ovrl`` / ``_sig`` / ``_bak`` /
  ``_p808``;
* ``sim``: speaker similarity to the clean utterance -> ``speaker_sim``.

Each pair is first aligned (:func:`mlx_speech.audio.quality.align`, lag up to ``max_shift``
seconds) and trimmed to its overlap. The report holds the means over the utterances for
``degraded`` and ``restored`` and their difference ``delta`` (restored minus degraded); a
value a metric cannot give (e.g. PESQ of a silent output) is left out of the mean and counted
in ``unscored``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from mlx_speech.errors import AudioError, SpecError
from mlx_speech.eval.codec import emit

METRICS = ("pesq", "stoi", "si_sdr", "dnsmos", "sim")
COLUMNS = {"pesq": ("pesq_wb",), "stoi": ("stoi",), "si_sdr": ("si_sdr_db",),
           "dnsmos": ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak", "dnsmos_p808"),
           "sim": ("speaker_sim",)}
_LABELS = {"pesq_wb": "PESQ-WB", "stoi": "STOI", "si_sdr_db": "SI-SDR (dB)",
           "dnsmos_ovrl": "DNSMOS OVRL", "dnsmos_sig": "DNSMOS SIG", "dnsmos_bak": "DNSMOS BAK",
           "dnsmos_p808": "DNSMOS P.808", "speaker_sim": "speaker sim"}
# the modules each metric imports, checked before any model work
_NEEDS = {"pesq": ("pesq",), "stoi": ("pystoi",), "si_sdr": (), "dnsmos": ("speechmos.dnsmos",),
          "sim": ("resemblyzer",)}
PESQ_RATE = 16000

RestoreFn = Callable[[np.ndarray, int], tuple[np.ndarray, int]]
DegradeFn = Callable[[np.ndarray, int], np.ndarray]


def parse_metrics(metrics: str | Iterable[str]) -> tuple[str, ...]:
    """Metric names (a comma-separated string or names) checked against :data:`METRICS`,
    without repeats, in :data:`METRICS` order."""
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics)]
    names = [m for m in names if m]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        what = f"unknown metric {bad[0]!r}" if bad else "no metric given"
        raise SpecError(f"metrics: {what}; choose from {', '.join(METRICS)}")
    return tuple(m for m in METRICS if m in names)


def check_available(metrics: Sequence[str]) -> None:
    """Raise :class:`~mlx_speech.errors.MissingDependencyError` now if a metric's package is
    missing, rather than after the first utterance has been restored."""
    from mlx_speech.audio.quality import require  # noqa: PLC0415

    for m in metrics:
        for module in _NEEDS[m]:
            require(module, m)


def check_audio(items: Iterable[Any]) -> None:
    """Raise :class:`AudioError` for the first missing, unreadable, damaged or empty audio
    file of ``items`` (``path`` and ``degraded``), before any model work."""
    from mlx_speech.audio.io import info  # noqa: PLC0415

    for item in items:
        for path in (item.path, getattr(item, "degraded", None)):
            if path and info(path)["frames"] == 0:
                raise AudioError(f"audio file {path} is empty (0 frames)")


def _metric(name: str, clean: np.ndarray, test: np.ndarray, sr: int) -> dict[str, float]:
    from mlx_speech.audio import metrics as objective  # noqa: PLC0415
    from mlx_speech.audio import quality  # noqa: PLC0415

    if name == "pesq":
        from mlx_speech.audio.io import resample  # noqa: PLC0415

        c16, t16 = (resample(x.astype(np.float32), sr, PESQ_RATE) for x in (clean, test))
        return {"pesq_wb": objective.pesq_score(c16, t16, PESQ_RATE, mode="wb")}
    if name == "stoi":
        return {"stoi": objective.stoi_score(clean, test, sr)}
    if name == "si_sdr":
        return {"si_sdr_db": float(objective.si_sdr(clean, test))}
    if name == "dnsmos":
        return {f"dnsmos_{k}": v for k, v in quality.dnsmos(test, sr).items()}
    return {"speaker_sim": quality.speaker_similarity(clean, test, sr)}


def score_pair(clean: Any, test: Any, sr: int, metrics: Sequence[str] = METRICS, *,
               max_shift: float = 0.1) -> dict[str, Any]:
    """The chosen metrics of ``test`` against ``clean`` (1-D, both at ``sr``), after aligning
    them with a lag of at most ``max_shift`` seconds (0: only trim to the shorter).

    Returns ``{"lag": samples, <column>: value, ...}`` with the columns of :data:`COLUMNS`; a
    metric that cannot score the pair (:class:`AudioError`: silence, too short for STOI, ...)
    gives None in its columns. A missing package still raises.
    """
    from mlx_speech.audio.quality import align  # noqa: PLC0415

    c, t, lag = align(clean, test, round(max_shift * sr))
    out: dict[str, Any] = {"lag": lag}
    for name in parse_metrics(metrics):
        try:
            out |= _metric(name, c, t, sr)
        except AudioError:
            out |= dict.fromkeys(COLUMNS[name])
    return out


class _Means:
    """Running sums of one side's columns; None values are counted, not averaged."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.values: dict[str, list[float]] = {c: [] for c in columns}
        self.unscored: dict[str, int] = dict.fromkeys(columns, 0)

    def add(self, row: dict[str, Any]) -> None:
        for c, v in self.values.items():
            if row[c] is None:
                self.unscored[c] += 1
            else:
                v.append(float(row[c]))

    def means(self) -> dict[str, float | None]:
        return {c: float(np.mean(v)) if v else None for c, v in self.values.items()}


def evaluate_items(items: Iterable[Any], restore_fn: RestoreFn, degrade_fn: DegradeFn | None,
                   sr: int, *, metrics: Sequence[str] = METRICS, per_item: bool = False,
                   max_shift: float = 0.1) -> dict[str, Any]:
    """The report (see the module docstring) over ``items`` (manifest :class:`Item`-likes with
    ``path`` and optionally ``degraded``), all audio handled at ``sr``.

    ``degrade_fn(clean, index) -> degraded`` makes the degraded copy of an item that has no
    ``degraded`` file (None: every item must have one); ``restore_fn(degraded, sr) ->
    (restored, out_sr)`` restores it (resampled back to ``sr`` when ``out_sr`` differs).
    ``per_item`` adds one row per utterance under ``"rows"``.
    """
    from mlx_speech.audio.io import load as load_audio  # noqa: PLC0415
    from mlx_speech.audio.io import resample  # noqa: PLC0415

    metrics = parse_metrics(metrics)
    columns = [c for m in metrics for c in COLUMNS[m]]
    sides = {"degraded": _Means(columns), "restored": _Means(columns)}
    rows = []
    count = 0
    for index, item in enumerate(items):
        clean, _ = load_audio(item.path, sr=sr, mono=True)
        if getattr(item, "degraded", None):
            degraded, _ = load_audio(item.degraded, sr=sr, mono=True)
        elif degrade_fn is None:
            raise AudioError(f"{item.path}: the manifest gives no 'degraded' file for it and no "
                             "degradation was set up to make one")
        else:
            degraded = _signal(degrade_fn(clean, index), f"{item.path}: the degraded audio")
        restored, out_sr = restore_fn(degraded, sr)
        restored = _signal(resample(_signal(restored, f"{item.path}: the restored audio"),
                                    int(out_sr), sr), f"{item.path}: the restored audio")
        scores = {side: score_pair(clean, wav, sr, metrics, max_shift=max_shift)
                  for side, wav in (("degraded", degraded), ("restored", restored))}
        for side, row in scores.items():
            sides[side].add(row)
        if per_item:
            rows.append({"path": item.path} | scores)
        count += 1
    if count == 0:
        raise AudioError("no utterances to evaluate")
    means = {side: m.means() for side, m in sides.items()}
    delta = {c: (None if means["restored"][c] is None or means["degraded"][c] is None
                 else means["restored"][c] - means["degraded"][c]) for c in columns}
    report: dict[str, Any] = {"items": count, "sample_rate": sr, "metrics": list(metrics)}
    report |= {side: _rounded(v) for side, v in (*means.items(), ("delta", delta))}
    report["unscored"] = {side: {c: n for c, n in m.unscored.items() if n}
                          for side, m in sides.items()}
    if per_item:
        report["rows"] = rows
    return report


def _signal(wav: Any, what: str) -> np.ndarray:
    """A model's or degrader's output as finite, non-empty (T,) float32, or one AudioError line."""
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
        why = ("not finite" if x.ndim == 1 and x.size else
               "empty" if x.ndim == 1 else f"of shape {x.shape}, not (T,)")
        raise AudioError(f"{what} is {why}")
    return x


def _rounded(values: dict[str, float | None]) -> dict[str, float | None]:
    return {c: None if v is None else round(v, 4) for c, v in values.items()}


def evaluate(weights: str | Path, manifest: str | Path, *, max_items: int | None = None,
             seed: int = 0, metrics: str | Sequence[str] = METRICS,
             degrade: str | Path | None = None, per_item: bool = False,
             max_shift: float = 0.1) -> dict[str, Any]:
    """The report of the Miipher-2 model at ``weights`` on ``manifest`` (its first
    ``max_items``), at the model's output rate.

    Items without a ``degraded`` file are degraded by the pipeline of ``degrade`` (a YAML
    spec) or the ``default`` preset, each with ``np.random.default_rng([seed, index])``.
    Input is checked (metric names and packages, manifest, audio files, spec) before the
    model is loaded.
    """
    from mlx_speech.data.manifest import read_manifest  # noqa: PLC0415

    metrics = parse_metrics(metrics)
    check_available(metrics)
    items = read_manifest(manifest)[:max_items]
    check_audio(items)
    if degrade is not None and not Path(degrade).is_file():
        raise SpecError(f"degradation config not found: {degrade}")
    degrade_spec = None
    if degrade is not None or any(not it.degraded for it in items):
        from mlx_speech.data.degrade import DegradeSpec  # noqa: PLC0415

        degrade_spec = (DegradeSpec.from_preset("default") if degrade is None
                        else DegradeSpec.from_yaml(degrade))

    import mlx_speech  # noqa: PLC0415
    from mlx_speech.pipelines.restore import restore_array  # noqa: PLC0415

    model = mlx_speech.load(weights, family="miipher2")
    sr = int(model.sample_rate)
    degrade_fn = None
    if degrade_spec is not None:
        from mlx_speech.data.degrade import Degrader  # noqa: PLC0415

        degrader = Degrader(degrade_spec, sample_rate=sr)

        def degrade_fn(wav: np.ndarray, index: int) -> np.ndarray:
            return degrader(wav, np.random.default_rng([seed, index]))[0]

    report = evaluate_items(items, lambda wav, rate: restore_array(model, wav, rate), degrade_fn,
                            sr, metrics=metrics, per_item=per_item, max_shift=max_shift)
    return {"weights": str(weights), "manifest": str(manifest), "seed": seed,
            "degrade": "default" if degrade is None else str(degrade)} | report


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table of a restoration report: one row per metric column."""
    def num(v: float | None, sign: str = "") -> str:
        return "n/a" if v is None else f"{v:{sign}.3f}"

    lines = [f"{report['items']} utterances at {report['sample_rate']} Hz",
             f"{'metric':<13}  {'degraded':>8}  {'restored':>8}  {'delta':>8}"]
    for c in report["degraded"]:
        lines.append(f"{_LABELS[c]:<13}  {num(report['degraded'][c]):>8}  "
                     f"{num(report['restored'][c]):>8}  {num(report['delta'][c], '+'):>8}")
    for side, counts in report["unscored"].items():
        if counts:
            lines.append(f"not scorable ({side}): "
                         + ", ".join(f"{_LABELS[c]} {n}" for c, n in counts.items()))
    return "\n".join(lines)


# --- `mlx-speech eval restore` (to be registered by the miipher2 family) ------------------------
@click.command("restore")
@click.option("--weights", required=True, type=click.Path(path_type=Path),
              help="A Miipher-2 model (anything mlx_speech.load reads for the miipher2 family).")
@click.option("--manifest", required=True, type=click.Path(path_type=Path),
              help="Held-out JSONL manifest of clean utterances (an item's optional 'degraded' "
                   "file is used as its degraded copy).")
@click.option("--max-items", type=click.IntRange(1), default=None, help="Evaluate the first N items.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the degradations (item i uses the generator [seed, i]).")
@click.option("--degrade-config", type=click.Path(path_type=Path), default=None,
              help="Degradation pipeline YAML (default: the 'default' preset).")
@click.option("--metrics", "metric_names", default=",".join(METRICS), show_default=True,
              help="Comma-separated metrics to compute.")
@click.option("--per-item", is_flag=True, help="Add one row per utterance to the JSON report.")
@click.option("--json", "--json-out", "json_out", type=click.Path(path_type=Path), default=None,
              help="Also write the report as JSON to this file.")
def command(weights: Path, manifest: Path, max_items: int | None, seed: int,
            degrade_config: Path | None, metric_names: str, per_item: bool,
            json_out: Path | None) -> None:
    """PESQ, STOI, SI-SDR, DNSMOS and speaker similarity of degraded and restored speech
    against the clean originals, and how much the restoration changes each."""
    from mlx_speech.pipelines.codec import check_output  # noqa: PLC0415

    metrics = parse_metrics(metric_names)
    if json_out is not None:
        check_output(json_out, (".json",), "reports")
    emit(evaluate(weights, manifest, max_items=max_items, seed=seed, metrics=metrics,
                  degrade=degrade_config, per_item=per_item), json_out, table=format_table)
