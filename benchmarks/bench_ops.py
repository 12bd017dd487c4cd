"""Operations per training step: portnn on the torch backend next to PyTorch's own step.

On a GPU each array operation is about one kernel launch (5-10 us in CuPy or PyTorch
eager), more than the arithmetic of a small network's step, so ops per step set the
GPU speed. Counted on the CPU with a ``TorchDispatchMode`` (views and bare allocations
excluded) over whole ``fit`` calls of two sizes, differenced; also host syncs (reads of
device data) and host-to-device copies per step, which must be 0. The models are
those of ``bench_mlp.py`` and ``bench_cnn.py``. Deterministic: exits 1 if a target is missed.

    python benchmarks/bench_ops.py            # a few seconds
    python benchmarks/bench_ops.py --names    # which ops, per step
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np

import portnn
from portnn.backends._torch_count import OpCounts, per_step

# model: (input shape, batch, target ops per step)
MODELS = {"MLP 784-256-128-10": ((784,), 128, 45),
          "CNN conv16-pool-conv32-pool-dense": ((1, 28, 28), 64, 90)}


def portnn_model(name: str) -> portnn.Sequential:
    """The benchmarks' models on the torch backend (as in bench_mlp.py / bench_cnn.py)."""
    with portnn.use_backend("torch", "cpu"):
        if name.startswith("MLP"):
            return portnn.Sequential([
                portnn.Dense(784, 256), portnn.ReLU(), portnn.Dense(256, 128), portnn.ReLU(),
                portnn.Dense(128, 10)], loss=portnn.CrossEntropy(), optimizer=portnn.SGD(0.01, 0.9))
        return portnn.Sequential([
            portnn.Conv2D(1, 16, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),
            portnn.Conv2D(16, 32, 3, padding=1), portnn.ReLU(), portnn.MaxPool2D(2),
            portnn.Flatten(), portnn.Dense(32 * 7 * 7, 10)],
            loss=portnn.CrossEntropy(), optimizer=portnn.SGD(0.01))


def torch_model(name: str):
    import torch

    nn = torch.nn
    if name.startswith("MLP"):
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                              nn.Linear(128, 10))
        return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
    return model, torch.optim.SGD(model.parameters(), lr=0.01, foreach=True)


def _data(shape: tuple[int, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, 10, n)


def portnn_runner(name: str) -> Callable[[int], None]:
    shape, batch, _ = MODELS[name]
    portnn.seed(0)
    model = portnn_model(name)

    def run(steps: int) -> None:
        x, y = _data(shape, steps * batch)
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0)

    return run


def torch_runner(name: str) -> Callable[[int], None]:
    """PyTorch's own shuffled epoch, with the same on-device loss and accuracy sums as fit."""
    import torch

    shape, batch, _ = MODELS[name]
    torch.manual_seed(0)
    model, opt = torch_model(name)

    def run(steps: int) -> None:
        x, y = (torch.from_numpy(a) for a in _data(shape, steps * batch))
        order = torch.randperm(len(x))
        total = correct = torch.zeros(())
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            xb, yb = x[idx], y[idx]
            opt.zero_grad(set_to_none=True)
            out = model(xb)
            loss = torch.nn.functional.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            total = total + loss.detach() * len(idx)
            correct = correct + (out.argmax(1) == yb).sum()
        float(total), float(correct)

    return run


def jax_programs(name: str, per_batch: bool) -> tuple[float, float, int]:
    """On JAX: compiled programs and eager JAX ops per training step (fits of 2 and 4 steps,
    differenced, plus the programs of one fit), and traces over a 3-epoch fit with a schedule.

    Eager ops are primitives bound outside any trace (JAX's ``EvalTrace``); a jnp function that is
    itself jitted and already cached runs from C++ without passing there, so this is a lower bound.

    ``per_batch``: as with a progress bar or data-parallel ranks (one program per batch); else an
    epoch is one program. Returns ``(programs per step, eager ops per step, traces)``.
    """
    import jax._src.core as core  # internal: where an eager (untraced) primitive is bound

    from portnn.training import runner

    shape, batch, _ = MODELS[name]
    counts = {"programs": 0, "eager": 0, "traces": 0}
    run, pure, apply = runner.Compiled._run, runner.Compiled._pure, core.EvalTrace.process_primitive

    def counting_run(self, program, *args):
        counts["programs"] += 1
        return run(self, program, *args)

    def counting_pure(self, *args):
        counts["traces"] += 1
        return pure(self, *args)

    def counting_apply(self, *args, **kwargs):
        counts["eager"] += 1
        return apply(self, *args, **kwargs)

    runner.Compiled._run, runner.Compiled._pure, core.EvalTrace.process_primitive = (
        counting_run, counting_pure, counting_apply)
    whole = runner.Compiled.whole_epoch
    if per_batch:
        runner.Compiled.whole_epoch = lambda self, *args: None
    try:
        be = portnn.get_backend("jax", "cpu")
        portnn.seed(0)
        model = portnn_model(name).to(be)
        model.optimizer.lr = portnn.StepDecay(0.01, step_size=1, gamma=0.5)

        def fit(steps: int, epochs: int = 1) -> dict[str, int]:
            x, y = _data(shape, steps * batch)
            xd, yd = be.asarray(x), be.asarray(y, dtype=be.index_dtype)
            counts.update(programs=0, eager=0, traces=0)
            model.fit(xd, yd, epochs=epochs, batch_size=batch, verbose=0)
            return dict(counts)

        traces = fit(4, epochs=3)["traces"]
        fit(2)  # compiles the 2-step epoch
        two, four = fit(2), fit(4)
    finally:
        runner.Compiled._run, runner.Compiled._pure, core.EvalTrace.process_primitive = run, pure, apply
        runner.Compiled.whole_epoch = whole
    return four["programs"] / 4, (four["eager"] - two["eager"]) / 2, traces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", action="store_true", help="list the ops of each step")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    failed = []
    print("ops per training step (torch backend, counted by TorchDispatchMode over fit, differenced)")
    print(f"  {'model':36s} {'portnn':>7s} {'target':>7s} {'PyTorch':>8s} {'syncs':>6s} {'H2D':>4s}")
    for name, (_, _, target) in MODELS.items():
        ours, ref = per_step(portnn_runner(name)), per_step(torch_runner(name))
        met = ours.ops <= target and ours.syncs == 0 and ours.h2d == 0
        failed += [] if met else [name]
        print(f"  {name:36s} {ours.ops:7g} {'<= ' + str(target):>7s} {ref.ops:8g} {ours.syncs:6g} "
              f"{ours.h2d:4g}  {'met' if met else 'MISSED'}  ({ours.ops / ref.ops:.2f}x PyTorch's ops)")
        if args.names:
            _names("portnn", ours)
            _names("PyTorch", ref)
    if portnn.backends.unavailable_reason("jax") is None:
        print("compiled programs per training step (jax backend, fit of 4 steps; eager JAX ops per step "
              "differenced over fits of 2 and 4 steps; traces over a first fit of 3 epochs with a schedule)")
        for name in MODELS:
            for mode, per_batch in (("an epoch per program", False), ("a program per batch", True)):
                programs, eager, traces = jax_programs(name, per_batch)
                met = programs <= 1 and eager == 0
                failed += [] if met else [f"{name} jax"]
                print(f"  {name:36s} {mode:22s} programs/step {programs:5.2f} (target <= 1)  eager ops/step "
                      f"{eager:g}  traces {traces}  {'met' if met else 'MISSED'}")
    if failed:
        print(f"targets missed: {', '.join(failed)} (ops <= target, 0 syncs, 0 H2D copies per step)")
    return 1 if failed else 0


def _names(who: str, counts: OpCounts) -> None:
    listed = ", ".join(f"{k} {v:g}" for k, v in counts.names.most_common())
    print(f"    {who}: {listed}")
    if counts.sync_names:
        print(f"    {who} syncs/H2D: {dict(counts.sync_names)}")


if __name__ == "__main__":
    sys.exit(main())
