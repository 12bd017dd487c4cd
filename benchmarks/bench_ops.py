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


def _jax_internals() -> tuple[object, object] | str:
    """JAX's ``pjit`` and ``pxla`` modules, whose internals the eager count patches, or why not."""
    try:
        import jax
        from jax._src import pjit
        from jax._src.interpreters import pxla

        pjit._get_fastpath_data, pxla.ExecuteReplicated.__call__  # noqa: B018  (both must exist)
    except (ImportError, AttributeError) as exc:
        return (f"jax {getattr(jax, '__version__', '?')} moved the internals this count patches "
                f"(jax._src.pjit._get_fastpath_data, pxla.ExecuteReplicated.__call__: {exc}); "
                "update benchmarks/bench_ops.py")
    return pjit, pxla


def jax_programs(name: str, per_batch: bool) -> dict[str, float]:
    """On JAX: compiled programs per training step, XLA programs of any kind per extra step, eager
    JAX ops per step and per fit, and traces over a first 3-epoch fit with a learning-rate schedule.

    Every XLA program run is counted: JAX's C++ fast path is switched off (``_get_fastpath_data``
    returns None), so each ``jit`` call, an eager ``jnp`` op's included, passes through
    ``ExecuteReplicated.__call__``; those outside the runner's ``Compiled._run`` are eager ops.
    Per step: fits of 2 and 4 steps, differenced; per fit: what a fit runs besides its steps (the
    input checks). Traces are calls of ``Compiled._pure`` (an epoch program traces it twice: its
    ``eval_shape`` and the scan body; per batch, the first batch's empty sums trace once more);
    retraces, those after the first epoch. ``per_batch``: one program per batch, as with a
    progress bar or data-parallel ranks; else an epoch is one program.
    """
    internals = _jax_internals()
    if isinstance(internals, str):
        raise RuntimeError(internals)
    pjit, pxla = internals
    from portnn.training import runner

    shape, batch, _ = MODELS[name]
    counts = {"programs": 0, "executions": 0, "eager": 0, "traces": 0}
    inside = [False]
    run, pure, execute = runner.Compiled._run, runner.Compiled._pure, pxla.ExecuteReplicated.__call__
    fastpath, whole = pjit._get_fastpath_data, runner.Compiled.whole_epoch

    def counting_run(self, program, *args):
        counts["programs"] += 1
        inside[0] = True
        try:
            return run(self, program, *args)
        finally:
            inside[0] = False

    def counting_pure(self, *args):
        counts["traces"] += 1
        return pure(self, *args)

    def counting_execute(self, *args):
        counts["executions"] += 1
        counts["eager"] += not inside[0]
        return execute(self, *args)

    runner.Compiled._run, runner.Compiled._pure = counting_run, counting_pure
    pxla.ExecuteReplicated.__call__, pjit._get_fastpath_data = counting_execute, lambda *a, **k: None
    if per_batch:
        runner.Compiled.whole_epoch = lambda self, *args: None
    try:
        be = portnn.get_backend("jax", "cpu")
        portnn.seed(0)
        model = portnn_model(name).to(be)
        model.optimizer.lr = portnn.StepDecay(0.01, step_size=1, gamma=0.5)

        per_epoch = []  # traces so far at the end of each epoch

        class Traces(portnn.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict) -> None:
                per_epoch.append(counts["traces"])

        def fit(steps: int, epochs: int = 1) -> dict[str, int]:
            x, y = _data(shape, steps * batch)
            xd, yd = be.asarray(x), be.asarray(y, dtype=be.index_dtype)
            counts.update(dict.fromkeys(counts, 0))
            model.fit(xd, yd, epochs=epochs, batch_size=batch, verbose=0, callbacks=[Traces()])
            return dict(counts)

        traces = fit(4, epochs=3)["traces"]
        retraces = per_epoch[2] - per_epoch[0]  # in epochs 2 and 3, at a new learning rate each
        fit(2)  # compiles the 2-step epoch
        two, four = fit(2), fit(4)
    finally:
        runner.Compiled._run, runner.Compiled._pure = run, pure
        pxla.ExecuteReplicated.__call__, pjit._get_fastpath_data = execute, fastpath
        runner.Compiled.whole_epoch = whole
    eager = (four["eager"] - two["eager"]) / 2
    return {"programs": four["programs"] / 4, "executions": (four["executions"] - two["executions"]) / 2,
            "eager": eager, "eager per fit": two["eager"] - 2 * eager, "traces": traces,
            "retraces": retraces}


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
    reason = portnn.backends.unavailable_reason("jax")
    reason = reason or (_jax_internals() if isinstance(_jax_internals(), str) else None)
    if reason is None:
        print("XLA programs per training step (jax backend): the runner's compiled programs per step in "
              "a 4-step fit; all programs (compiled + eager ops) per extra step, fits of 2 and 4 steps "
              "differenced (target <= 1, eager 0); eager ops a fit runs once (input checks); traces "
              "over a first fit of 3 epochs with a learning-rate schedule (target: none in epochs 2-3)")
        for name in MODELS:
            for mode, per_batch in (("an epoch per program", False), ("a program per batch", True)):
                c = jax_programs(name, per_batch)
                met = c["programs"] <= 1 and c["executions"] <= 1 and c["eager"] == 0 and not c["retraces"]
                failed += [] if met else [f"{name} jax ({mode})"]
                print(f"  {name:36s} {mode:22s} compiled/step {c['programs']:4.2f}  all/extra step "
                      f"{c['executions']:4.2f}  eager/step {c['eager']:g}  eager/fit {c['eager per fit']:g}  "
                      f"traces {c['traces']} (later epochs {c['retraces']})  {'met' if met else 'MISSED'}")
    else:
        print(f"XLA programs per step on JAX: not counted ({reason})")
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
