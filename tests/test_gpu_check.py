"""scripts/gpu_check.sh's CPU-side logic: the dry run writes its JSON, and gpu_report.py counts a
junit XML (or, without one, pytest's -q summary) and merges the bench's JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUNIT = """<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="5">
<testcase classname="tests.test_a" name="test_ok"/><testcase classname="tests.test_a" name="test_ok2"/>
<testcase classname="tests.test_a" name="test_bad"><failure message="x"/></testcase>
<testcase classname="tests.test_b" name="test_err"><error message="y"/></testcase>
<testcase classname="tests.test_b" name="test_cpu"><skipped message="cpu_only"/></testcase>
</testsuite></testsuites>"""


def _report(tmp_path, *, junit=None, log="", bench="", status="ran"):
    paths = {n: tmp_path / n for n in ("junit.xml", "pytest.log", "bench.log", "out.json")}
    if junit is not None:
        paths["junit.xml"].write_text(junit)
    paths["pytest.log"].write_text(log)
    paths["bench.log"].write_text(bench)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_report.py"),
                          "--junit", str(paths["junit.xml"]), "--pytest-log", str(paths["pytest.log"]),
                          "--bench-log", str(paths["bench.log"]), "--bench-status", status,
                          "--pytest-rc", "1", "--no-device-probe", "--out", str(paths["out.json"])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(paths["out.json"].read_text()), out.stdout


def test_junit_counts_and_bench_json_are_merged(tmp_path):
    bench = 'warming up\n{\n  "stream": {"rtf": 0.1},\n  "batch8": {"rtf": 0.01}\n}\n'
    got, line = _report(tmp_path, junit=JUNIT, bench=bench)
    c = got["suite"]["counts"]
    assert (c["passed"], c["failed"], c["errors"], c["skipped"]) == (2, 1, 1, 1)
    assert c["failed_ids"] == ["tests.test_a::test_bad", "tests.test_b::test_err"]
    assert got["suite"]["counts_from"] == "junit" and got["suite"]["rc"] == 1
    assert got["bench"] == {"status": "ran", "mimi": {"stream": {"rtf": 0.1},
                                                        "batch8": {"rtf": 0.01}}, "tail": []}
    assert got["versions"]["python"] and "2 passed, 1 failed" in line


def test_without_junit_the_q_summary_counts(tmp_path):
    log = "....F.s\nFAILED tests/test_x.py::t\n3 failed, 10 passed, 2 skipped, 1 error in 4.10s\n"
    got, _ = _report(tmp_path, log=log, status="absent: bench/mimi.py has no --device flag yet")
    c = got["suite"]["counts"]
    assert (c["passed"], c["failed"], c["errors"], c["skipped"]) == (10, 3, 1, 2)
    assert got["suite"]["counts_from"] == "log"
    assert got["bench"]["status"].startswith("absent: ") and got["bench"]["mimi"] is None


def test_a_bench_without_json_is_reported_failed(tmp_path):
    got, _ = _report(tmp_path, junit=JUNIT, bench="Traceback ...\nRuntimeError: boom\n")
    assert got["bench"]["status"].startswith("failed") and "boom" in got["bench"]["tail"][-1]


def test_dry_run_writes_the_json(tmp_path):
    out = tmp_path / "g.json"
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out",
                          str(out)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHON": sys.executable})
    assert res.returncode == 0, res.stderr
    assert "MLX_SPEECH_TEST_DEVICE" not in res.stdout and "bench/mimi.py --device gpu" in res.stdout
    got = json.loads(out.read_text())
    assert got["bench"]["status"] == "absent: dry run" and got["suite"]["device"] == "gpu"
