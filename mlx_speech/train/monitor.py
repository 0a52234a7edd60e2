"""Training monitors: progress bar, JSONL metrics log, memory ceiling, macOS thermal state.

Framework-neutral (imports neither mlx nor torch); both trainers use these unchanged. The
accelerator's memory is passed in as a callable by each trainer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

# NSProcessInfoThermalState: nominal, fair, serious, critical.
THERMAL_STATES = ("nominal", "fair", "serious", "critical")
THERMAL_SERIOUS = 2


class Progress:
    """A tqdm bar over optimiser steps (``step/s`` rate and ETA), on stderr; no-op if disabled."""

    def __init__(self, *, total: int, initial: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm  # noqa: PLC0415

            self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                             file=sys.stderr, mininterval=0.5, smoothing=0.1, desc="train")

    def update(self, n: int = 1, **postfix: Any) -> None:
        if self._bar is None:
            return
        if postfix:
            self._bar.set_postfix({k: _fmt(v) for k, v in postfix.items()}, refresh=False)
        self._bar.update(n)

    def write(self, message: str) -> None:
        if self._bar is not None:
            self._bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


class MetricsLog:
    """Append-only JSONL file of dicts (one line per record, flushed as written)."""

    def __init__(self, path: str | os.PathLike, *, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Drop records of steps after ``step`` (written after the checkpoint a run resumes
        from), so the log of an interrupted + resumed run reads like one straight run."""
        if not self.enabled or not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if rec.get("step", 0) <= step:
                kept.append(line)
        from mlx_speech.utils.atomic import atomic_write_text  # noqa: PLC0415

        atomic_write_text(self.path, "".join(k + "\n" for k in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                 for k, v in record.items()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(clean) + "\n")
            fh.flush()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of a JSONL metrics log."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


class MemoryGuard:
    """This process's memory (RSS + ``device_bytes()``) against an optional ceiling.

    :meth:`check` returns ``"ok"``, ``"warn"`` (first time above ``warn_fraction`` of the
    ceiling; not repeated until usage falls back below it) or ``"over"`` (above the ceiling).
    """

    def __init__(self, limit_gb: float | None, *, warn_fraction: float = 0.9,
                 device_bytes: Callable[[], int] = lambda: 0) -> None:
        self.limit_gb = limit_gb
        self.warn_fraction = warn_fraction
        self.device_bytes = device_bytes
        self._proc = psutil.Process()
        self._warned = False

    def usage_gb(self) -> float:
        return (self._proc.memory_info().rss + int(self.device_bytes())) / 2**30

    def check(self) -> tuple[str, float]:
        used = self.usage_gb()
        if self.limit_gb is None:
            return "ok", used
        if used > self.limit_gb:
            return "over", used
        if used > self.warn_fraction * self.limit_gb:
            if not self._warned:
                self._warned = True
                return "warn", used
        else:
            self._warned = False
        return "ok", used


@functools.lru_cache(maxsize=1)
def _thermal_reader() -> Callable[[], int] | None:
    """``[[NSProcessInfo processInfo] thermalState]`` through the Objective-C runtime (ctypes),
    set up once; None where it is unavailable."""
    if sys.platform != "darwin":
        return None
    try:
        objc = ctypes.cdll.LoadLibrary(ctypes.util.find_library("objc"))
        ctypes.cdll.LoadLibrary("/System/Library/Frameworks/Foundation.framework/Foundation")
        objc.objc_getClass.restype = ctypes.c_void_p
        objc.objc_getClass.argtypes = [ctypes.c_char_p]
        objc.sel_registerName.restype = ctypes.c_void_p
        objc.sel_registerName.argtypes = [ctypes.c_char_p]
        send_ptr = ctypes.cast(objc.objc_msgSend, ctypes.c_void_p).value
        send_obj = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(send_ptr)
        send_int = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)(send_ptr)
        info = send_obj(objc.objc_getClass(b"NSProcessInfo"), objc.sel_registerName(b"processInfo"))
        selector = objc.sel_registerName(b"thermalState")
    except (OSError, AttributeError, TypeError, ValueError):
        return None
    if not info:
        return None
    return lambda: int(send_int(info, selector))


def macos_thermal_state() -> int | None:
    """``NSProcessInfo.processInfo.thermalState`` (0 nominal .. 3 critical) on macOS; None
    elsewhere or when the OS does not report it."""
    reader = _thermal_reader()
    if reader is None:
        return None
    try:
        state = reader()
    except (OSError, ValueError):
        return None
    return state if 0 <= state < len(THERMAL_STATES) else None


class ThermalGate:
    """Blocks while the thermal state is serious or worse (polling every ``poll_s``).

    ``probe`` returns the state (0..3) or None when unknown; ``sleep`` is injectable for tests.
    :meth:`wait` returns the seconds spent paused.
    """

    def __init__(self, *, enabled: bool, poll_s: float = 10.0,
                 probe: Callable[[], int | None] = macos_thermal_state,
                 sleep: Callable[[float], None] = time.sleep,
                 say: Callable[[str], None] = lambda m: None) -> None:
        self.enabled, self.poll_s = enabled, poll_s
        self.probe, self.sleep, self.say = probe, sleep, say

    def wait(self) -> float:
        if not self.enabled:
            return 0.0
        paused = 0.0
        state = self.probe()
        if state is not None and state >= THERMAL_SERIOUS:
            self.say(f"thermal state {THERMAL_STATES[state]}: pausing training")
            while state is not None and state >= THERMAL_SERIOUS:
                self.sleep(self.poll_s)
                paused += self.poll_s
                state = self.probe()
            self.say(f"thermal state back to {THERMAL_STATES[state] if state is not None else 'unknown'} "
                     f"after {paused:.0f} s: resuming")
        return paused
