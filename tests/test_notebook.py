"""examples/colab.ipynb runs in CI on the CPU: NumPy backend, a tiny budget, no Jupyter kernel.

The light executor's rule: code cells run in order as one script; ``!pip``/``%pip`` lines are
skipped (CI imports the checkout), other ``!`` lines run as shell commands (``python`` is this
interpreter), any other ``%`` magic is an error; after the cell tagged ``parameters`` the
tiny-budget values are injected, as papermill does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_examples import MNIST_DIR, THREADS, synthetic_mnist

import portnn

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "colab.ipynb"
TINY = {"BACKEND": "numpy", "EPOCHS": 1, "BATCH_SIZE": 32, "LIMIT": 640, "TEST_LIMIT": 300}


def notebook_script(path: Path, parameters: dict[str, object]) -> str:
    """The notebook's code cells as one Python script, by the rule in the module docstring."""
    nb = json.loads(path.read_text())
    lines = ["import subprocess, sys"]
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in "".join(cell["source"]).splitlines():
            stripped = line.strip()
            if stripped.startswith(("!pip ", "%pip ")):
                continue
            if stripped.startswith("!"):
                command = stripped[1:].strip()
                if command.startswith("python "):
                    command = f"{sys.executable} {command[len('python '):]}"
                line = f"subprocess.run({command!r}, shell=True, check=True)"
            elif stripped.startswith("%"):
                raise AssertionError(f"{path.name}: magic {stripped!r} is not supported by the CI executor")
            lines.append(line)
        if "parameters" in cell["metadata"].get("tags", []):
            lines += [f"{name} = {value!r}" for name, value in parameters.items()]
    return "\n".join(lines) + "\n"


def test_notebook_is_a_valid_colab_notebook():
    nb = json.loads(NOTEBOOK.read_text())
    assert nb["nbformat"] == 4 and nb["metadata"]["accelerator"] == "GPU"
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    pip = [line for c in code for line in c.splitlines() if line.startswith("!pip install")]
    assert len(pip) == 1 and "[cuda" not in pip[0]  # Colab preinstalls cupy-cuda12x
    assert any("!python -m portnn info" in c for c in code)
    params = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and 'BACKEND = "cupy"' in "".join(params[0]["source"])
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")  # stored clean


def test_notebook_runs_on_the_cpu(tmp_path):
    real = all((MNIST_DIR / f"{n}.gz").is_file() or (MNIST_DIR / n).is_file()
               for n in portnn.data.MNIST_FILES)
    data = MNIST_DIR if real else synthetic_mnist(tmp_path / "mnist", n_train=700, n_test=400)
    script = tmp_path / "colab.py"
    script.write_text(notebook_script(NOTEBOOK, TINY))
    env = {**os.environ, **THREADS, "PORTNN_DATA_DIR": str(data), "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("PORTNN_BACKEND", None)
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "backends:\n" in out and "selected: " in out  # `python -m portnn info` ran
    assert "backend: numpy-cpu" in out and "640 training and 300 test images" in out
    accuracy = float(out.split("test accuracy ")[1].split()[0])
    assert accuracy > (0.5 if real else 0.8)
    assert "loaded on numpy-cpu" in out and "predictions agree" in out
    assert (tmp_path / "mnist_cnn.npz").is_file()
