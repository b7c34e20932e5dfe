"""Run every registry op through the four checks, under jit, vmap and grad-of-grad.

:func:`verify_case` is what the tests call on each (op, case, dtype) and what
``convgrad verify`` calls on the registry's default grid. The four checks:

1. ``autodiff``: the custom VJP vs ``jax.vjp`` of the plain-lax reference (run in float64);
2. ``numerical``: for 4 random directions ``u`` per argument, ``<ct, J u>`` by central
   finite differences (float64) vs ``<vjp(ct), u>``: an estimate of the VJP's 2-norm
   relative error;
3. ``loop``: the forward and the VJP vs the NumPy loop reference;
4. ``adjoint``: ``<A u, ct> == <u, vjp(ct)>`` for each argument in which the op is affine,
   where ``A u = f(.., u, ..) - f(.., 0, ..)``.

and two transformation checks: ``vmap`` (a batch of two problems, the case's arguments
and a second draw, vs each alone) and ``grad_of_grad`` (the gradient of ``<vjp(ct), r>``
vs the reference's). Checks 1, 2 and the transformations are one call of
:func:`convgrad.testing.check_vjp` (``check_batched=True``, ``order=2``), the checker
users run on their own VJPs.
Given a mesh (``convgrad verify --devices N``), a ``sharded`` check too: the
VJP under ``jit`` with each argument's and the cotangent's leading axis split
over the devices where its size allows, vs the same VJP on one device.
All errors are normwise relative errors; see :mod:`convgrad.testing`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from convgrad import testing
from convgrad.parallel import DATA_AXIS, data_axis_size
from convgrad.progress import Progress
from convgrad.registry import OPS, Case, OpSpec


@dataclasses.dataclass
class CaseResult:
    """Errors of one (op, case, dtype); ``failure`` holds the first failed check's message."""

    op: str
    case: str
    dtype: str
    autodiff: float | None = None
    numerical: float | None = None
    loop: float | None = None
    adjoint: float | None = None
    vmap: float | None = None
    grad_of_grad: float | None = None
    sharded: float | None = None
    sharded_over: int | None = None  # how many devices the sharded check split the leading axes over
    failure: str | None = None

    @property
    def passed(self) -> bool:
        return self.failure is None


def verify_case(
    spec: OpSpec,
    case: Case,
    dtype: Any,
    *,
    seed: int = 0,
    transforms: bool = True,
    mesh: Mesh | None = None,
    xla_defaults: bool = False,
) -> CaseResult:
    """All checks of one op on one case in one dtype (and the sharded check over ``mesh``, if given).

    The programs under test compile with :func:`compiler_options` (``xla_defaults``:
    with XLA's defaults). Raises nothing; failures land in ``failure``.
    """
    result = CaseResult(spec.name, str(case), jnp.dtype(dtype).name)
    try:
        with jax.enable_x64(True):  # float64 cases and references need it; other dtypes are explicit
            _run_checks(spec, case, dtype, seed, transforms, mesh, compiler_options(xla_defaults), result)
    except AssertionError as error:
        result.failure = str(error)
    return result


def compiler_options(xla_defaults: bool = False) -> dict[str, Any]:
    """The XLA compile options of verify's programs under test: ``{}`` (XLA's) with ``xla_defaults``.

    Otherwise the instruments' (:func:`convgrad.testing.fast_compile_options`) on CPU:
    XLA:CPU's backend optimizations off and its loop emitters. They change how XLA
    generates code, not the operations (fast-math stays off); a full ``convgrad verify``
    takes about a third of the time (2 min 25 s vs 7 min 8 s on 2 cores), and its errors
    move by rounding only (docs/performance.md, "What convgrad verify and the tests
    cost"). Elsewhere, ``{}``.
    """
    return {} if xla_defaults else testing.fast_compile_options(_platform())


def _platform() -> str:
    """The platform the checks run on: that of JAX's default device (``jax.default_device`` honoured)."""
    return next(iter(jax.device_put(np.float32(0)).devices())).platform


def _run_checks(spec, case, dtype, seed, transforms, mesh, options, result):
    rng = np.random.default_rng(seed)
    args = tuple(None if a is None else testing.on_device(a) for a in spec.inputs(rng, case, dtype))
    argnums = tuple(i for i in spec.argnums if args[i] is not None)
    linear = tuple(i for i in spec.linear_argnums if i in argnums)
    fn, reference = _functions(spec, case)
    # with the transforms, the loop and adjoint checks run the program check_vjp(order=2) compiles
    vjp = testing.jitted_vjp(fn, argnums, second_order=transforms, compiler_options=options)

    y = jax.eval_shape(fn, *args)
    ct = testing.on_device(rng.standard_normal(y.shape).astype(y.dtype))
    # the transforms: vmap over this problem and a second one drawn like it; the VJP's own VJP (order 2)
    second = ()
    if transforms:
        second = tuple(None if a is None else testing.on_device(a) for a in spec.inputs(rng, case, dtype))
    check = testing.check_vjp(
        fn,
        args,
        reference=reference,
        argnums=argnums,
        cotangent=ct,
        linear_argnums=linear,
        seed=seed,
        check_batched=transforms,
        batch_args=[second],
        order=2 if transforms else 1,
        second_order_numerical=False,  # grad-of-grad vs the reference's only, as before: one compile less per case
        compiler_options=options,
    )
    result.autodiff, result.numerical = check.max_reference_error, check.max_numerical_error
    if transforms:
        result.vmap = check.batched_error
        result.grad_of_grad = check.second_order.max_reference_error

    # the loop reference: forward and VJP from the definition
    y, grads = vjp(args, ct)
    in_float64 = [
        None if a is None else np.asarray(a, np.float64) if testing.is_float(a) else np.asarray(a) for a in args
    ]
    loop_y = spec.loop_forward(*in_float64, **spec.reference_options(case))
    loop_grads = spec.loop_vjp(*in_float64, np.asarray(ct, np.float64), **spec.reference_options(case))
    errors = [testing.assert_close(y, _first(loop_y), what="forward value vs loop reference")]
    for position, i in enumerate(argnums):
        errors.append(testing.assert_close(grads[position], loop_grads[i], what=f"argument {i}: VJP vs loop reference"))
    result.loop = max(errors)

    # the adjoint identity, for the arguments in which the op is affine
    adjoint_errors = []
    for i in linear:

        def linear_part(u, i=i):
            # fn's value from the VJP program already compiled for these shapes (no compilation of
            # fn alone); the difference in float64
            at_u, at_zero = (vjp(testing.replace_at(args, (i,), (v,)), ct)[0] for v in (u, np.zeros(u.shape, u.dtype)))
            return np.asarray(at_u, np.float64) - np.asarray(at_zero, np.float64)

        def transpose(c, i=i):
            return vjp(args, c)[1][argnums.index(i)]

        check = testing.check_adjoint(linear_part, transpose, args[i].shape, y.shape, dtype=args[i].dtype, seed=seed)
        adjoint_errors.append(check.error)
    result.adjoint = max(adjoint_errors) if adjoint_errors else None

    if mesh is not None:
        result.sharded, result.sharded_over = _sharded_check(fn, args, argnums, ct, y, grads, mesh, options)


def split_mesh(mesh: Mesh, leading: int) -> Mesh:
    """A ``data`` mesh over the first ``gcd(leading, devices)`` devices of ``mesh``: all of them hold a slice.

    The registry's leading axes are small (1 to 8): over 8 devices a case with
    a leading axis of 2 is split over 2 devices, one of 4 over 4. No device
    holds a replica, as in data-parallel training over
    :func:`convgrad.parallel.data_mesh`. (A batch split over one axis of a
    larger mesh, replicated over the rest, meets an XLA partitioner bug that
    scales grouped-convolution weight gradients by the replica count, in
    ``lax.conv_general_dilated``'s own gradient too: see ``docs/scaling.md``.)
    """
    k = math.gcd(leading, mesh.devices.size)
    return Mesh(mesh.devices.flat[:k], (DATA_AXIS,), axis_types=(AxisType.Auto,))


def _sharded_check(fn, args, argnums, ct, y, grads, mesh, options) -> tuple[float, int]:
    """The jit-compiled VJP with the leading axis of each argument and of the cotangent split over a :func:`split_mesh`.

    The mesh is sized by the first argument (the activation: ``x``, ``logits``,
    ``values``); any other input whose leading axis the mesh does not divide is
    replicated. Compared with the VJP of the same inputs on one device (``y``,
    ``grads``): only the order of the sums that cross devices differs, so the
    dtype's tolerance applies. Returns the error and the number of devices.
    """
    first = args[0]
    mesh = split_mesh(mesh, first.shape[0] if first.ndim else 1)
    k = data_axis_size(mesh)

    def place(a):
        split = a.ndim and a.shape[0] % k == 0
        return jax.device_put(a, NamedSharding(mesh, PartitionSpec(DATA_AXIS) if split else PartitionSpec()))

    placed = [None if a is None else place(a) for a in (*args, ct)]
    sharded_y, sharded_grads = testing.jitted_vjp(fn, argnums, compiler_options=options)(tuple(placed[:-1]), placed[-1])
    errors = [testing.assert_close(sharded_y, np.asarray(y), what=f"sharded over {k} devices: forward value")]
    for position, i in enumerate(argnums):
        errors.append(
            testing.assert_close(
                sharded_grads[position],
                np.asarray(grads[position]),
                what=f"sharded over {k} devices: argument {i}: VJP vs one device",
            )
        )
    return max(errors), k


@functools.lru_cache(maxsize=1024)
def _functions(spec: OpSpec, case: Case):
    """``(fn, reference)`` of one case, returning only the differentiable output; cached so compilations are shared."""
    options, reference_options = case.options, spec.reference_options(case)

    @functools.wraps(spec.fn)  # keeps the op's argument names for failure messages
    def fn(*args):
        return _float_output(spec.fn(*args, **options))

    @functools.wraps(spec.fn)
    def reference(*args):
        return _float_output(spec.autodiff(*args, **reference_options))

    return fn, reference


def clear_caches() -> None:
    """Drop every compiled program convgrad and JAX hold (after monkeypatching an op, say)."""
    jax.clear_caches()
    _functions.cache_clear()
    testing.clear_caches()


def _float_output(out):
    """The differentiable output: the first float leaf (``max_pool`` returns ``(y, switches)``)."""
    return next(leaf for leaf in jax.tree.leaves(out) if testing.is_float(leaf))


def _first(out):
    return out[0] if isinstance(out, tuple) else out


# ---------------------------------------------------------------------------- the command


def plan(ops: Sequence[str] | None = None, *, quick: bool = False, dtypes: Sequence[str] | None = None):
    """The (spec, case, dtype) triples to check: each op's grid in each dtype, or two cases in float32 when quick."""
    names = list(OPS) if ops is None else list(ops)
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise ValueError(f"verify: unknown op(s) {', '.join(unknown)}; known: {', '.join(OPS)}")
    triples = []
    for name in names:
        spec = OPS[name]
        chosen = dtypes if dtypes is not None else (("float32",) if quick else spec.dtypes)
        for case in spec.cases[: 2 if quick else None]:
            triples.extend((spec, case, dtype) for dtype in chosen if dtype in spec.dtypes)
    return triples


def run(
    triples,
    *,
    seed: int = 0,
    progress: bool = True,
    mesh: Mesh | None = None,
    jobs: int | None = 1,
    platform: str | None = None,
    compilation_cache: str | os.PathLike | None = None,
    xla_defaults: bool = False,
) -> list[CaseResult]:
    """Check every triple (jit-compiled, with the vmap and grad-of-grad checks, sharded over ``mesh`` if given).

    ``jobs`` worker processes check the triples side by side (``None``:
    :func:`default_jobs`); the results come back in the order of ``triples``,
    the same as one process's (each case draws its inputs from its own
    ``seed``). Compilation dominates a case (about 90% of ``verify --quick``'s
    time on CPU, one core each), so ``N`` workers on ``N`` cores take about
    ``1/N`` of the time. A worker is a fresh Python (``spawn``): it sees the
    registry as imported, not ops patched in this process, and runs on the
    first device of ``platform`` (default: JAX's default), over a mesh like
    ``mesh`` of its own. ``compilation_cache``: a directory for JAX's
    persistent compilation cache (:func:`use_compilation_cache`), in this
    process and the workers. ``xla_defaults``: compile the programs under test
    with XLA's defaults, not :func:`compiler_options`' (2x to 3x the time).
    Raises ``ValueError`` for ``jobs`` < 1 or a triple whose spec is not the
    registry's (a worker could not find it).
    """
    triples = list(triples)
    jobs = default_jobs(len(triples), platform) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"verify: jobs={jobs!r}; expected a positive int")
    jobs = min(jobs, len(triples)) or 1
    if compilation_cache is not None:
        use_compilation_cache(compilation_cache)
    results: list[CaseResult | None] = [None] * len(triples)
    with Progress(len(triples), "verify", enabled=progress, unit="cases") as bar:
        if jobs == 1:
            for indices in _case_groups(triples):
                spec, case, _ = triples[indices[0]]
                dtypes = [triples[i][2] for i in indices]
                for index, result in zip(indices, _check_and_release(spec, case, dtypes, seed, mesh, xla_defaults)):
                    results[index] = result
                    bar.update(1, note=f"{result.op} {result.dtype}")
        else:
            foreign = sorted({spec.name for spec, _, _ in triples if OPS.get(spec.name) is not spec})
            if foreign:
                raise ValueError(f"verify: jobs={jobs} needs registry ops; not in convgrad.registry.OPS: {foreign}")
            devices = None if mesh is None else (mesh.devices.size, mesh.devices.flat[0].platform)
            work = [
                (indices, triples[indices[0]][0].name, triples[indices[0]][1], [triples[i][2] for i in indices])
                for indices in _case_groups(triples)
            ]
            context = multiprocessing.get_context("spawn")  # JAX's threads do not survive fork
            cache = None if compilation_cache is None else os.fspath(compilation_cache)
            initargs = (seed, platform, devices, cache, xla_defaults)
            with context.Pool(jobs, initializer=_start_worker, initargs=initargs) as pool:
                for indices, group in pool.imap_unordered(_worker_case, work):
                    for index, result in zip(indices, group):
                        results[index] = result
                        bar.update(1, note=f"{result.op} {result.dtype}")
    return results


def default_jobs(cases: int, platform: str | None = None) -> int:
    """Worker processes for ``cases`` cases: one per CPU this process may use, on CPU, and one per 8 cases at most.

    A worker starts in about 2 s (Python, JAX, the registry: 2.3 s on the
    2-core machine of ``docs/performance.md``), as long as one or two cases
    take, so short runs stay in one process. On an accelerator, one:
    the workers would share it (and each would claim most of its memory).
    """
    platform = platform or jax.default_backend()
    if platform != "cpu":
        return 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cpus, cases // 8))


def use_compilation_cache(directory: str | os.PathLike) -> None:
    """Keep every program this process compiles in JAX's persistent compilation cache in ``directory``.

    Every program, however fast it compiled (JAX's default keeps only those
    of 1 s or more; a check's take 0.01 to 1 s). A rerun loads each program
    from disk instead of compiling it: ``convgrad verify --quick`` took 43 s
    filling the cache (3.2 MB, 306 programs) and 10 s rerun from it, with the
    same table (2-core machine of ``docs/performance.md``). The cache's key
    is the program, the compile options and the backend's version, so a
    changed op compiles afresh. Process-wide, from the next compilation on
    (earlier compilations in the process notwithstanding), for the rest of
    the process. As JAX warns, a cache is trusted code: keep it in a
    directory only you can write to.
    """
    from jax.experimental.compilation_cache import compilation_cache

    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    compilation_cache.set_cache_dir(os.fspath(directory))


def _case_groups(triples) -> list[list[int]]:
    """The indices of ``triples`` by case: each run of consecutive triples of one (op, case), in any dtypes.

    A case's float64 instruments (its reference VJP and grad-of-grad, the
    forward the finite differences evaluate) are the same programs in each of
    its dtypes, so one process checks all of a case's dtypes and compiles them once.
    """
    groups: list[list[int]] = []
    for index, (spec, case, _) in enumerate(triples):
        first = triples[groups[-1][0]] if groups else None
        if first is not None and first[0] is spec and first[1] == case:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def _check_and_release(spec, case, dtypes, seed, mesh, xla_defaults) -> list[CaseResult]:
    results = [verify_case(spec, case, dtype, seed=seed, mesh=mesh, xla_defaults=xla_defaults) for dtype in dtypes]
    # The next case's programs (its shapes) are not these. Each compiled program keeps its
    # machine code mapped: about 660 mappings per (case, dtype), so a full run that kept
    # them ran into the process's limit (vm.max_map_count, 65530 here: "LLVM compilation
    # error: Cannot allocate memory", then a segfault, after 23 minutes).
    clear_caches()
    return results


_worker: dict[str, Any] = {}


def _start_worker(
    seed: int, platform: str | None, devices: tuple[int, str] | None, cache: str | None, xla_defaults: bool
) -> None:
    """A worker's set-up: its default device, its own mesh like the parent's, the compilation cache."""
    from convgrad import parallel

    if cache is not None:
        use_compilation_cache(cache)
    if platform is not None:
        jax.config.update("jax_default_device", jax.devices(platform)[0])
    mesh = None if devices is None else parallel.data_mesh(devices[0], platform=devices[1])
    _worker.update(seed=seed, mesh=mesh, xla_defaults=xla_defaults)


def _worker_case(work) -> tuple[list[int], list[CaseResult]]:
    indices, name, case, dtypes = work
    return indices, _check_and_release(
        OPS[name], case, dtypes, _worker["seed"], _worker["mesh"], _worker["xla_defaults"]
    )


COLUMNS = ("autodiff", "numerical", "loop", "adjoint", "vmap", "grad_of_grad", "sharded")
HEADERS = ("vs autodiff", "vs finite diff", "vs loop", "adjoint", "vmap", "grad-of-grad", "sharded")


def summarize(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    """One row per op: cases checked, the dtypes, the largest error per check, and whether all passed."""
    rows = []
    for name in dict.fromkeys(r.op for r in results):
        mine = [r for r in results if r.op == name]
        row: dict[str, Any] = {"op": name, "cases": len(mine), "dtypes": sorted({r.dtype for r in mine})}
        for column in COLUMNS:
            values = [getattr(r, column) for r in mine if getattr(r, column) is not None]
            row[column] = max(values) if values else None
        row["passed"] = all(r.passed for r in mine)
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as an aligned text table (max relative error per check; "-" where it does not apply).

    The ``sharded`` column appears only when some row has it (``--devices``).
    """
    shown = [(c, h) for c, h in zip(COLUMNS, HEADERS) if c != "sharded" or any(r["sharded"] is not None for r in rows)]
    header = ("op", "cases", *(h for _, h in shown), "result")
    lines = [header]
    for row in rows:
        cells = [row["op"], str(row["cases"])]
        cells += ["-" if row[c] is None else f"{row[c]:.1e}" for c, _ in shown]
        cells.append("pass" if row["passed"] else "FAIL")
        lines.append(tuple(cells))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def describe_sharded(results: Sequence[CaseResult], mesh: Mesh) -> str:
    """One line on the sharded check: the devices, and over how many each case's inputs were split."""
    ways = sorted({r.sharded_over for r in results if r.sharded_over is not None and r.sharded_over > 1})
    split = sum(r.sharded_over is not None and r.sharded_over > 1 for r in results)
    return (
        f"sharded: each VJP under jit with the leading axis of its arguments and cotangent split over up to "
        f"{mesh.devices.size} {mesh.devices.flat[0].platform} devices (as many as divide the first argument's), "
        f"vs one device: {split}/{len(results)} cases split over {'/'.join(map(str, ways)) or 'no'} devices"
    )
