"""Assemble scripts/gpu_check.sh's one JSON file: pytest counts, the bench's JSON, versions and
devices.

Contract: never fails because a part is missing. Counts come from pytest's junit XML; where that
is absent or unreadable, from the ``-q`` summary line of the log ("3 failed, 10 passed, 2
skipped in 4.1s"); a missing or flag-less bench is recorded as such, with its reason. The exit
status is 0 when the JSON was written, whatever the suite's result (the JSON says that).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

_SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def counts_from_junit(path: Path) -> dict | None:
    """``{"passed", "failed", "errors", "skipped", "failed_ids"}`` from a junit XML, or None."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    out = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failed_ids": []}
    for case in root.iter("testcase"):
        kinds = {child.tag for child in case}
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        if "failure" in kinds:
            out["failed"] += 1
            out["failed_ids"].append(name)
        elif "error" in kinds:
            out["errors"] += 1
            out["failed_ids"].append(name)
        elif "skipped" in kinds:
            out["skipped"] += 1
        else:
            out["passed"] += 1
    return out


def counts_from_log(text: str) -> dict | None:
    """The counts of pytest's last summary line (``== 1 failed, 2 passed in 3s ==``), or None."""
    lines = [ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)
             and " in " in ln]
    if not lines:
        return None
    found = {kind.rstrip("s") if kind.startswith("error") else kind: int(n)
             for n, kind in _SUMMARY.findall(lines[-1])}
    return {"passed": found.get("passed", 0), "failed": found.get("failed", 0),
            "errors": found.get("error", 0), "skipped": found.get("skipped", 0), "failed_ids": []}


def last_json(text: str) -> dict | None:
    """The last top-level JSON object in ``text`` (bench scripts print one, possibly indented,
    after their progress lines)."""
    for start in [m.start() for m in re.finditer(r"^\{", text, re.M)][::-1]:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            continue
    return None


def versions() -> dict:
    out = {"python": platform.python_version()}
    for dist in ("mlx", "mlx-cuda-13", "mlx-cuda", "mlx-metal", "torch", "transformers", "numpy",
                 "moshi"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def devices() -> dict:
    """MLX's default device and GPU name, torch's CUDA device name; each part best-effort."""
    out: dict = {}
    try:
        import mlx.core as mx

        out["mlx_gpu"] = bool(mx.is_available(mx.gpu))
        if out["mlx_gpu"]:
            info = mx.device_info() if hasattr(mx, "device_info") else {}
            out["mlx_device"] = str(info.get("device_name", mx.gpu))
    except Exception as exc:  # noqa: BLE001  (a report, not a test)
        out["mlx_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import torch

        out["torch_cuda"] = torch.cuda.is_available()
        if out["torch_cuda"]:
            out["torch_device"] = torch.cuda.get_device_name(0)
    except Exception as exc:  # noqa: BLE001
        out["torch_error"] = f"{type(exc).__name__}: {exc}"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--junit", type=Path, required=True)
    ap.add_argument("--pytest-log", type=Path, required=True)
    ap.add_argument("--pytest-rc", type=int, default=None)
    ap.add_argument("--bench-log", type=Path, required=True)
    ap.add_argument("--bench-status", default="ran", help="ran | absent: REASON | failed: REASON")
    ap.add_argument("--seconds", type=float, default=None, help="the check's wall time")
    ap.add_argument("--no-device-probe", action="store_true", help="skip importing mlx/torch")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    log = args.pytest_log.read_text(errors="replace") if args.pytest_log.is_file() else ""
    counts = counts_from_junit(args.junit)
    source = "junit"
    if counts is None:
        counts, source = counts_from_log(log), "log"
    bench_text = args.bench_log.read_text(errors="replace") if args.bench_log.is_file() else ""
    bench = last_json(bench_text) if args.bench_status == "ran" else None
    report = {
        "suite": {"device": "gpu", "counts": counts, "counts_from": source if counts else None,
                  "rc": args.pytest_rc, "tail": log.splitlines()[-5:]},
        "bench": {"status": args.bench_status if bench is not None or args.bench_status != "ran"
                  else "failed: no JSON in its output", "mimi": bench,
                  "tail": [] if bench is not None else bench_text.splitlines()[-5:]},
        "versions": versions(),
        "devices": {} if args.no_device_probe else devices(),
        "seconds": args.seconds,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    c = counts or {}
    print(f"gpu_check: {c.get('passed', '?')} passed, {c.get('failed', '?')} failed, "
          f"{c.get('errors', '?')} errors, {c.get('skipped', '?')} skipped; bench "
          f"{report['bench']['status']}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
