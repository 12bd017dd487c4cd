"""What benchmarks/gpu_check.py needs to run a part: a log, a subprocess under a time limit, JUnit counts.

A part is one subprocess with a limit in seconds. Its output goes, line by line, to the log
file (never to stdout, which stays a few summary lines). Past its limit the part's process
group gets SIGINT (pytest then still writes its JUnit XML, Python prints where it was) and,
``grace`` seconds later at the limit itself, SIGKILL; the part is recorded as ``"timeout"``
and the caller goes on with the next one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path


class Log:
    """``say``: stdout and the log file; ``detail``: the log file only (stdout when there is no file)."""

    def __init__(self, path: Path | None = None):
        self.path = path
        self.file = open(path, "w", encoding="utf-8") if path else None

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()

    def detail(self, text: str) -> None:
        if self.file:
            self.file.write(text + "\n")
            self.file.flush()
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.file:
            self.file.close()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def run_part(name: str, cmd: list[str], limit: float, log: Log, env: dict[str, str] | None = None,
             cwd: Path | None = None, on_line: Callable[[str, float], None] | None = None) -> dict:
    """Run ``cmd`` within ``limit`` seconds; its output to ``log``; ``on_line(line, now)`` sees each line.

    Returns ``{"status": "passed"|"failed"|"timeout", "rc", "seconds", "limit_s"}``.
    """
    log.detail(f"\n== {name} (limit {limit:g} s): {' '.join(cmd)}")
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, errors="replace",
                                start_new_session=True)  # its own process group: killed whole
    except OSError as exc:
        log.detail(f"   could not start: {exc}")
        return {"status": "failed", "rc": None, "seconds": 0.0, "limit_s": limit, "error": str(exc)}
    grace = min(5.0, limit / 5)
    fired = threading.Event()

    def interrupt() -> None:
        fired.set()
        log.detail(f"   {name}: {limit - grace:g} s passed, sending SIGINT (SIGKILL at {limit:g} s)")
        _signal_group(proc, signal.SIGINT)

    timers = [threading.Timer(limit - grace, interrupt),
              threading.Timer(limit, _signal_group, (proc, signal.SIGKILL))]
    for timer in timers:
        timer.daemon = True
        timer.start()
    try:
        for line in proc.stdout:
            log.detail("   " + line.rstrip("\n"))
            if on_line is not None:
                on_line(line, time.perf_counter())
        rc = proc.wait()
    finally:
        for timer in timers:
            timer.cancel()
        _signal_group(proc, signal.SIGKILL)  # leftovers of the group (a grandchild holding no pipe)
    seconds = time.perf_counter() - started
    status = "timeout" if fired.is_set() else "passed" if rc == 0 else "failed"
    log.detail(f"== {name}: {status} (exit {rc}, {seconds:.1f} s of {limit:g} s)")
    return {"status": status, "rc": rc, "seconds": round(seconds, 2), "limit_s": limit}


def junit_counts(path: Path) -> dict:
    """Test counts of a pytest ``--junitxml`` file, and the first failing ids; ``{}`` when it is absent."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    counts = {"tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failing = []
    for case in root.iter("testcase"):
        if case.get("name") is None:  # the test running when SIGINT came: an empty <testcase/>
            continue
        counts["tests"] += 1
        kinds = {child.tag for child in case}
        kind = ("failed" if "failure" in kinds else "errors" if "error" in kinds
                else "skipped" if "skipped" in kinds else "passed")
        counts[kind] += 1
        if kind in ("failed", "errors"):
            failing.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    return {**counts, "failing": failing}


def write_json(path: Path, report: dict) -> None:
    """Write ``report`` beside ``path`` and rename it into place: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
