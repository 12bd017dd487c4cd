"""Check portnn on a CUDA machine in one command, within a fixed time: tests, MNIST on CuPy, GPU throughput.

    python benchmarks/gpu_check.py --dry-run      # the parts and their time limits (any machine)
    python benchmarks/gpu_check.py --out $OUT     # the check; the log, JSON and JUnit XML go to $OUT

Parts, each a subprocess with its own time limit (see ``--dry-run``; about 5 minutes in all):

1. ``python -m portnn info`` (driver, GPUs, the CuPy advice);
2. the GPU tests: ``pytest -q -k cuda`` with ``PORTNN_TEST_DEVICES=cupy-cuda:0,torch-cuda:0``,
   so the device-parametrized tests run on the GPUs and the CUDA-only tests run, while the
   tests without a device (which CI runs on the CPU) are not repeated;
3. ``examples/mnist_mlp.py`` and ``examples/mnist_cnn.py`` on CuPy, short: test accuracy and
   seconds per epoch (the first, which compiles CuPy's kernels, apart);
4. training throughput of the benchmark MLP (784-256-128-10, batch 128) and CNN
   (conv16-pool-conv32-pool-dense, batch 64): portnn on NumPy (the CPU baseline), portnn on
   CuPy, portnn on torch-CUDA, PyTorch CPU and PyTorch CUDA, and their ratios.

stdout is one or two lines per part and the verdict last; everything else, subprocess output
included, goes to ``OUT/gpu_check.log``; every figure to ``OUT/gpu_check.json`` (rewritten
after each part); the tests' JUnit XML to ``OUT/gpu_check.xml``. A part past its limit is
stopped, recorded as ``timeout``, and the check goes on with the next one.

Exit status: 0 when every part passed, 1 when one failed or timed out, 2 when this machine has
no usable CUDA device (then nothing runs, and the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _parts import Log, junit_counts, run_part, write_json  # noqa: E402
from _throughput import _data, benchmark_columns, ratios, report_lines, runners, throughput  # noqa: E402, F401

import portnn  # noqa: E402  (the checkout's portnn, installed or not)

GPU_IDS = {"cupy": "cupy-cuda:0", "torch": "torch-cuda:0"}
EPOCH = re.compile(r"^epoch (\d+)/(\d+) ")
ACCURACY = re.compile(r"test accuracy=([\d.]+)")
RATES = "gpu_check rates: "  # the benchmark subprocess's last line: this prefix, then JSON

# --------------------------------------------------------------------------- the plan

# Seconds of command time per part. The probe runs in this process before the parts (CuPy's
# self-check compiles one kernel; torch.cuda starts): it has no kill, only this allowance.
LIMITS = {"probe": 10, "info": 10, "tests": 150, "mnist_mlp": 30, "mnist_cnn": 35,
          "bench_mlp": 25, "bench_cnn": 35}
TEST_SELECTION = ["-k", "cuda"]
EXAMPLES = {  # part -> (script, flags); --data and --out are added
    "mnist_mlp": ("mnist_mlp.py", ["--epochs", "2", "--min-accuracy", "0.9"]),
    "mnist_cnn": ("mnist_cnn.py", ["--epochs", "1", "--limit", "10000", "--test-limit", "2000",
                                   "--min-accuracy", "0.85"]),
}
EXAMPLE_DEVICE = ("cupy", "cuda:0")
# part -> (kind, samples, batch, rounds)
BENCH = {"bench_mlp": ("mlp", 4096, 128, 3), "bench_cnn": ("cnn", 2048, 64, 3)}
GROUPS = {"info": ["info"], "tests": ["tests"], "examples": list(EXAMPLES), "benchmarks": list(BENCH)}
PARTS = [part for group in GROUPS.values() for part in group]


def describe(part: str) -> str:
    """What ``part`` runs, in one line (the dry run's plan)."""
    if part == "probe":
        return "in this process: which of cupy-cuda:0, torch-cuda:0 work (no kill; an allowance)"
    if part == "info":
        return "python -m portnn info"
    if part == "tests":
        return (f"pytest -q {' '.join(TEST_SELECTION)} with PORTNN_TEST_DEVICES="
                f"{','.join(GPU_IDS.values())}, --junitxml gpu_check.xml")
    if part in EXAMPLES:
        script, flags = EXAMPLES[part]
        return f"examples/{script} {' '.join(flags)} on {'-'.join(EXAMPLE_DEVICE)}"
    kind, samples, batch, rounds = BENCH[part]
    return (f"{kind.upper()} samples/s, {samples} samples, batch {batch}, best of {rounds} rounds; "
            "columns portnn-numpy, portnn-cupy, portnn-torch, torch-cpu, torch-cuda (those usable)")


def plan_lines() -> list[str]:
    lines = ["gpu_check plan: each part is stopped at its limit (seconds of command time) and recorded "
             "as a timeout"]
    lines += [f"  {part:10s} {LIMITS[part]:4d} s  {describe(part)}" for part in ["probe", *PARTS]]
    lines.append(f"  {'total':10s} {sum(LIMITS.values()):4d} s planned (a lent machine adds its start, "
                 "1-3 min)")
    return lines


# --------------------------------------------------------------------------- commands


def cuda_backends() -> tuple[list[str], dict[str, str]]:
    """The GPU backends usable here (``["cupy", "torch"]``) and why the others are not."""
    usable, reasons = [], {}
    for name in GPU_IDS:
        try:
            portnn.get_backend(name, "cuda:0")
            usable.append(name)
        except portnn.BackendError as exc:
            reasons[name] = str(exc)
    return usable, reasons


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTNN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"  # lines arrive as printed: the epochs are timed from them
    return {**env, **extra}


def info_command() -> list[str]:
    return [sys.executable, "-m", "portnn", "info"]


def pytest_command(junit: Path, extra: list[str]) -> list[str]:
    """Quiet, no ``-rs`` (one summary line counts the skips), no ``-x``: every GPU test runs."""
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TEST_SELECTION,
            f"--junitxml={junit}", *extra]


def bench_command(kind: str, columns: list[str], samples: int, batch: int, rounds: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--bench", kind, "--columns", ",".join(columns),
            "--samples", str(samples), "--batch", str(batch), "--rounds", str(rounds)]


def run_example(script: str, flags: list[str], backend: str = "cupy", device: str = "cuda:0",
                cwd: Path | None = None, limit: float = 600, log: Log | None = None) -> dict[str, object]:
    """Run ``examples/<script>`` within ``limit`` s and time its epochs from its lines as they stream."""
    stamps: list[float] = []
    found: dict[str, float] = {}
    last = [time.perf_counter()]

    def on_line(line: str, now: float) -> None:
        if line.startswith("backend: "):  # printed once the data is loaded: epoch 1 starts here
            last[0] = now
        elif EPOCH.match(line):
            stamps.append(round(now - last[0], 3))
            last[0] = now
        elif (match := ACCURACY.search(line)) is not None:
            found["accuracy"] = float(match.group(1))

    record = run_part(f"examples/{script} on {backend}-{device}",
                      [sys.executable, str(ROOT / "examples" / script), *flags], limit, log or Log(),
                      env=_env(PORTNN_BACKEND=backend, PORTNN_DEVICE=device), cwd=cwd or ROOT,
                      on_line=on_line)
    return {"script": script, **record, "accuracy": found.get("accuracy"), "epoch_seconds": stamps}


# --------------------------------------------------------------------------- throughput subprocess


def bench_main(args: argparse.Namespace) -> int:
    """The benchmark subprocess: the report, then one line of rates as JSON for the parent."""
    rates = throughput(args.bench, args.columns.split(","), args.samples, args.batch, args.rounds)
    print("\n".join(report_lines(args.bench, rates, args.batch)))
    print(RATES + json.dumps(rates), flush=True)
    return 0


# --------------------------------------------------------------------------- parts


@dataclass
class Check:
    """What the parts share: the log, the results folder, the data, the usable GPU backends."""

    log: Log
    out: Path
    data: Path
    gpus: list[str]
    pytest_args: list[str] = field(default_factory=list)
    scratch: Path = Path(tempfile.gettempdir())  # the examples' checkpoints: not sent back with $OUT


def _head(name: str, record: dict) -> str:
    return f"{name}: {record['status']} in {record['seconds']:.1f} s (limit {record['limit_s']:g} s)"


def part_info(check: Check) -> tuple[dict, list[str]]:
    lines: list[str] = []
    record = run_part("info", info_command(), LIMITS["info"], check.log, env=_env(), cwd=ROOT,
                      on_line=lambda line, now: lines.append(line.rstrip("\n")))
    record["output"] = lines
    gpus = [line for line in lines if line.startswith(("GPU", "NVIDIA driver"))]
    return record, [_head("info", record) + (": " + "; ".join(gpus) if gpus else "")]


def part_tests(check: Check) -> tuple[dict, list[str]]:
    ids = ",".join(GPU_IDS[name] for name in check.gpus)
    junit = check.out / "gpu_check.xml"
    junit.unlink(missing_ok=True)  # counts from this run only
    record = run_part(f"tests on {ids}", pytest_command(junit, check.pytest_args), LIMITS["tests"], check.log,
                      env=_env(PORTNN_TEST_DEVICES=ids), cwd=ROOT)
    counts = junit_counts(junit)
    record.update(devices=ids, junit=junit.name if junit.is_file() else None, counts=counts)
    if not counts:
        return record, [_head("tests", record) + ": no JUnit XML written (see gpu_check.log)"]
    lines = [_head("tests", record) + f" on {ids}: {counts['passed']} passed, {counts['failed']} failed, "
             f"{counts['errors']} errors, {counts['skipped']} skipped of {counts['tests']}"
             + (" run before the limit stopped it" if record["status"] == "timeout" else "")]
    if counts["failing"]:
        more = len(counts["failing"]) - 3
        lines.append("  failing: " + ", ".join(counts["failing"][:3]) +
                     (f" (+{more} more in gpu_check.log)" if more > 0 else ""))
    return record, lines


def part_example(check: Check, part: str) -> tuple[dict, list[str]]:
    script, flags = EXAMPLES[part]
    record = run_example(script, ["--data", str(check.data), *flags, "--out", str(check.scratch)],
                         *EXAMPLE_DEVICE, limit=LIMITS[part], log=check.log)
    return record, [example_line(part, record)]


def example_line(part: str, record: dict) -> str:
    """The summary of a :func:`run_example` record: accuracy, the first epoch (compiling) and the rest."""
    secs = record["epoch_seconds"]
    later = f", then {np.mean(secs[1:]):.2f} s/epoch" if len(secs) > 1 else ""
    epochs = f"epoch 1 {secs[0]:.2f} s{later}" if secs else "no epoch finished"
    return _head(part, record) + f": test accuracy {record['accuracy']}, {epochs}"


def part_bench(check: Check, part: str) -> tuple[dict, list[str]]:
    kind, samples, batch, rounds = BENCH[part]
    columns = benchmark_columns(check.gpus)
    rates: dict[str, float] = {}

    def on_line(line: str, now: float) -> None:
        if line.startswith(RATES):
            rates.update(json.loads(line[len(RATES):]))

    record = run_part(part, bench_command(kind, columns, samples, batch, rounds), LIMITS[part], check.log,
                      env=_env(), cwd=ROOT, on_line=on_line)
    if record["status"] == "passed" and not rates:
        record.update(status="failed", error="no rates line")
    record.update(samples=samples, batch=batch, rounds=rounds,
                  samples_per_s={k: round(v, 1) for k, v in rates.items()}, ratios=ratios(rates))
    figures = ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
    lines = [_head(part, record) + (f": samples/s {figures}" if rates else "")]
    if record["ratios"]:
        lines.append("  ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in record["ratios"].items()))
    return record, lines


def run_parts(check: Check, skip: set[str], report: dict, json_path: Path) -> list[str]:
    """Every part in order, each within its limit; the report is rewritten after each. Returns the failed."""
    failed = []
    for part in PARTS:
        if part in skip:
            record, lines = {"status": "skipped", "reason": "--skip"}, [f"{part}: skipped (--skip)"]
        elif part in EXAMPLES and EXAMPLE_DEVICE[0] not in check.gpus:
            reason = f"{'-'.join(EXAMPLE_DEVICE)} is not usable here"
            record, lines = {"status": "skipped", "reason": reason}, [f"{part}: skipped ({reason})"]
        elif part in EXAMPLES:
            record, lines = part_example(check, part)
        elif part in BENCH:
            record, lines = part_bench(check, part)
        else:
            record, lines = {"info": part_info, "tests": part_tests}[part](check)
        report["parts"][part] = record
        write_json(json_path, report)
        for line in lines:
            check.log.say(line)
        if record["status"] in ("failed", "timeout"):
            failed.append(f"{part} ({record['status']})")
    return failed


# --------------------------------------------------------------------------- main


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--out", default=None,
                   help="folder for gpu_check.log, .json and .xml (default: runs/gpu_check)")
    p.add_argument("--data", default=str(portnn.data.SHIPPED_MNIST),
                   help="MNIST folder (default: the repository's data/mnist, %(default)s)")
    p.add_argument("--dry-run", action="store_true", help="print the parts and their limits; run nothing")
    p.add_argument("--skip", nargs="*", default=[], choices=list(dict.fromkeys([*GROUPS, *PARTS])),
                   help="parts or groups to skip")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    for name, kind in (("--bench", str), ("--columns", str), ("--samples", int), ("--batch", int),
                       ("--rounds", int)):  # the benchmark subprocess's own flags
        p.add_argument(name, type=kind, default=None, help=argparse.SUPPRESS)
    return p


def _no_cuda(reasons: dict[str, str], out: str | None) -> int:
    lines = ["gpu_check: no usable CUDA device here, so nothing was run.",
             *(f"  {name}: {reason}" for name, reason in reasons.items()),
             "Run it on a CUDA machine (e.g. a Colab GPU runtime); `python -m portnn info` says what to "
             "install."]
    print("\n".join(lines), file=sys.stderr)
    if out:  # a lent machine whose CUDA is broken still sends back why
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_check.log").write_text("\n".join(lines) + "\n", encoding="utf-8")
        write_json(Path(out) / "gpu_check.json", {"result": "no usable CUDA device", "exit_status": 2,
                                                   "unusable": reasons, "parts": {}})
    return 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.bench:
        return bench_main(args)
    if args.dry_run:  # before the CUDA probe: the plan prints on any machine
        out = args.out or ROOT / "runs" / "gpu_check"
        print("\n".join([*plan_lines(), f"data: {args.data}; out: {out}"]))
        return 0
    started = time.perf_counter()
    gpus, reasons = cuda_backends()
    probe = {"status": "passed" if gpus else "failed", "seconds": round(time.perf_counter() - started, 2),
             "limit_s": LIMITS["probe"], "usable": [GPU_IDS[g] for g in gpus], "unusable": reasons}
    if not gpus:
        return _no_cuda(reasons, args.out)
    out = Path(args.out or ROOT / "runs" / "gpu_check")
    out.mkdir(parents=True, exist_ok=True)
    log, json_path = Log(out / "gpu_check.log"), out / "gpu_check.json"
    report = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv[1:] if argv is None else argv,
              "python": sys.executable, "data": args.data, "planned_s": sum(LIMITS.values()),
              "limits_s": LIMITS, "parts": {"probe": probe}}
    log.say(_head("probe", probe) + f": {', '.join(probe['usable'])} usable")
    for name, reason in reasons.items():
        log.say(f"  note: {GPU_IDS[name]} is skipped: {reason[:200]}")
    skip = {part for name in args.skip for part in GROUPS.get(name, [name])}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as scratch:
        check = Check(log, out, Path(args.data), gpus, args.pytest_args, Path(scratch))
        failed = run_parts(check, skip, report, json_path)
    verdict = f"FAILED: {', '.join(failed)}" if failed else "all steps passed"
    report.update(seconds=round(time.perf_counter() - started, 1), failed=failed, result=verdict,
                  exit_status=1 if failed else 0)
    write_json(json_path, report)
    log.say(f"results: {log.path}, {json_path.name}, gpu_check.xml")
    log.say(f"gpu_check: {verdict}")
    log.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
