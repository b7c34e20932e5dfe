"""The multi-device computations behind tests/test_sharding.py, run in fresh processes with simulated CPU devices.

``python tests/sharding_checks.py devices OUT.npz`` (with 8 devices: XLA_FLAGS=
--xla_force_host_platform_device_count=8, set by the caller before JAX starts)
computes, for every model, the gradient of one batch on one device, under
``jit`` with the batch sharded over 8 devices, and under ``shard_map`` (per-device
loss, ``pmean``, gradient taken outside; with and without casting the parameters
to varying); each op's gradient under ``shard_map`` with a replicated operand;
per-example gradients by ``vmap`` (the
batch sharded) and by a loop on one device; a few training steps on 1 and on 8
devices; and the messages of the errors the tests expect. It writes arrays and
messages to OUT.npz and asserts nothing: the tests compare.

``python tests/sharding_checks.py many-steps OUT.npz`` trains 400 tiny steps on 8
devices, every step queued behind the previous ones.

``python tests/sharding_checks.py process ID COUNT PORT OUT.npz`` is process ID
of COUNT joined by ``jax.distributed.initialize`` on localhost:PORT; it trains
a few steps over every device of every process and writes the final state.
"""

from __future__ import annotations

import contextlib
import io
import sys
import traceback
from pathlib import Path

import numpy as np

from convgrad import parallel
from convgrad.ops import conv_formulations

MODELS = ("linear", "mlp", "mlp2", "cnn")
SHARDED_PER_EXAMPLE = ("mlp", "cnn")
TRAINED = (("mlp", "sgd"), ("cnn", "sgd"), ("cnn", "adam"))  # (model, optimizer)
BATCH = 32  # 4 examples per device on 8 devices
STEPS = 5


def steps_config(model: str, optimizer: str = "sgd"):
    from convgrad import train

    return train.TrainConfig(model=model, epochs=1, batch_size=BATCH, lr=1e-3, seed=1, optimizer=optimizer)


def steps_dataset():
    from convgrad import train

    return train.synthetic_dataset(STEPS * BATCH, 40)


def params_loss(model):
    """``loss(params, images, labels)``: the mean cross-entropy on convgrad's VJPs, in the initial model state."""
    from convgrad.models import KITS, loss_fn

    loss, model_state = loss_fn(model, KITS["custom"]), model.init_state()
    return lambda params, images, labels: loss(params, model_state, images, labels)[0]


def _leaves(prefix: str, tree, out: dict) -> None:
    import jax

    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        out[f"{prefix}{jax.tree_util.keystr(path)}"] = np.asarray(leaf)


def _message(fn) -> str:
    """The message of the exception ``fn()`` raises (its type first), or "" if it returns."""
    try:
        fn()
    except (Exception, SystemExit) as error:
        return f"{type(error).__name__}: {error}"
    return ""


def _cli_error(argv) -> str:
    """``STATUS: STDERR`` of ``convgrad ARGV`` run in this process."""
    from convgrad import cli

    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):
        status = cli.main(argv)
    return f"{status}: {printed.getvalue()}"


@contextlib.contextmanager
def _replaced(table: dict, key, value):
    """``table[key] = value`` inside the block, restored after."""
    saved = table[key]
    table[key] = value
    try:
        yield
    finally:
        table[key] = saved


@contextlib.contextmanager
def _adam_setting(name: str, optimizer: str):
    """Adam runs with lax convolutions and the bare cnn (test_five_training_steps_on_eight_devices_equal_one_device)."""
    if optimizer != "adam":
        yield
        return
    from convgrad.models import MODELS as ARCHITECTURES
    from convgrad.models import make_cnn

    with contextlib.ExitStack() as stack:
        stack.enter_context(
            _replaced(conv_formulations.FORMULATIONS, "auto", conv_formulations.FORMULATIONS["textbook"])
        )
        if name == "cnn":  # no recipe: no shifts, no weight decay, no label smoothing
            stack.enter_context(_replaced(ARCHITECTURES, "cnn", make_cnn("NHWC")))
        yield


def devices(out_path: str) -> None:
    import jax
    from jax.sharding import AxisType, PartitionSpec

    from convgrad import cli, train, verify
    from convgrad.models import MODELS as ARCHITECTURES

    assert jax.device_count() == 8, jax.devices()
    mesh = parallel.data_mesh(8)
    replicated, batch_sharded = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    data = steps_dataset()
    images, labels = data.train_x[:BATCH], data.train_y[:BATCH]
    out: dict[str, np.ndarray] = {}

    for name in MODELS:
        model = ARCHITECTURES[name]
        loss = params_loss(model)
        params = model.init(jax.random.key(0))
        grad = jax.grad(loss)
        _leaves(f"grad/{name}/one", jax.jit(grad)(params, images, labels), out)
        sharded = jax.jit(grad, in_shardings=(replicated, batch_sharded, batch_sharded), out_shardings=replicated)
        _leaves(f"grad/{name}/jit", sharded(params, images, labels), out)

        def device_loss(params, images, labels, loss=loss):
            # the custom VJPs' weight gradients vary over the devices: params must be typed varying
            params = jax.lax.pcast(params, parallel.DATA_AXIS, to="varying")
            return jax.lax.pmean(loss(params, images, labels), parallel.DATA_AXIS)

        mapped = jax.shard_map(
            device_loss,
            mesh=mesh,
            in_specs=(PartitionSpec(), PartitionSpec(parallel.DATA_AXIS), PartitionSpec(parallel.DATA_AXIS)),
            out_specs=PartitionSpec(),
        )
        _leaves(f"grad/{name}/shard_map", jax.jit(jax.grad(mapped))(params, images, labels), out)

        as_is = jax.shard_map(  # the same without the cast: the ops' backwards take the psum themselves
            lambda p, x, y, loss=loss: jax.lax.pmean(loss(p, x, y), parallel.DATA_AXIS),
            mesh=mesh,
            in_specs=(PartitionSpec(), PartitionSpec(parallel.DATA_AXIS), PartitionSpec(parallel.DATA_AXIS)),
            out_specs=PartitionSpec(),
        )
        _leaves_or_error(f"grad/{name}/shard_map_as_is", out, jax.jit(jax.grad(as_is)), params, images, labels)

        def example_grad(params, image, label, grad=grad):
            return grad(params, image[None], label[None])

        per_example = jax.vmap(example_grad, in_axes=(None, 0, 0))
        sharded_per_example = jax.jit(
            per_example, in_shardings=(replicated, batch_sharded, batch_sharded), out_shardings=batch_sharded
        )
        examples = (images[:8], labels[:8])
        _leaves(f"per_example/{name}/vmap", jax.jit(per_example)(params, *examples), out)
        if name in SHARDED_PER_EXAMPLE:
            _leaves(f"per_example/{name}/sharded", sharded_per_example(params, *examples), out)
        if name == "cnn":  # again with every convolution a lax one, as on GPU/TPU (XLA's bug, docs/scaling.md)
            textbook = conv_formulations.FORMULATIONS["textbook"]
            with _replaced(conv_formulations.FORMULATIONS, "auto", textbook):
                textbook_grad = jax.grad(params_loss(model))  # a new function: traced anew
                textbook_per_example = jax.vmap(
                    lambda p, x, y, grad=textbook_grad: grad(p, x[None], y[None]), in_axes=(None, 0, 0)
                )
                sharded_textbook = jax.jit(
                    textbook_per_example,
                    in_shardings=(replicated, batch_sharded, batch_sharded),
                    out_shardings=batch_sharded,
                )
                _leaves(f"per_example/{name}/sharded_textbook", sharded_textbook(params, *examples), out)
        one = jax.jit(example_grad)
        loop = [one(params, images[i], labels[i]) for i in range(8)]
        _leaves(f"per_example/{name}/loop", jax.tree.map(lambda *g: np.stack(g), *loop), out)

        for optimizer in [o for m, o in TRAINED if m == name]:
            for n in (1, 8):
                with _adam_setting(name, optimizer):
                    config = steps_config(name, optimizer)  # inside: its weight decay is the model's
                    state, report = train.train(config, data, progress=False, mesh=parallel.data_mesh(n))
                _leaves(f"train/{name}/{optimizer}/{n}", state.params, out)
                out[f"train/{name}/{optimizer}/{n}/loss"] = np.array([r["train_loss"] for r in report["history"]])
                out[f"train/{name}/{optimizer}/{n}/steps"] = np.array(report["steps_per_epoch"])

    # two epochs on one device, and the same run stopped after its first epoch on 8 devices, resumed on 1
    config = train.TrainConfig(**{**vars(steps_config("mlp")), "epochs": 2})
    state, _ = train.train(config, data, progress=False, mesh=parallel.data_mesh(1))
    _leaves("resume/uninterrupted", state.params, out)
    directory = Path(out_path).parent / "resume"

    def stop_after_first_epoch(record):
        raise StopIteration

    with contextlib.suppress(StopIteration):
        train.train(config, data, progress=False, mesh=mesh, checkpoint_dir=directory, on_epoch=stop_after_first_epoch)
    state, _ = train.train(
        config, data, progress=False, mesh=parallel.data_mesh(1), checkpoint_dir=directory, resume=True
    )
    _leaves("resume/resumed", state.params, out)

    replicated_operands(mesh, out)
    name = "cnn"
    loss = params_loss(ARCHITECTURES[name])
    params = ARCHITECTURES[name].init(jax.random.key(0))
    explicit = jax.make_mesh((8,), (parallel.DATA_AXIS,), axis_types=(AxisType.Explicit,))

    def explicit_grad():
        with jax.set_mesh(explicit):
            placed = [jax.device_put(a, PartitionSpec(parallel.DATA_AXIS)) for a in (images, labels)]
            return jax.jit(jax.grad(loss))(params, *placed)

    out["error/explicit_mesh"] = np.array(_message(explicit_grad))
    out["error/indivisible_train"] = np.array(
        _message(lambda: train.train(train.TrainConfig(model="linear", batch_size=12), data, mesh=mesh))
    )
    empty = Path(out_path).parent / "no-mnist"  # a data directory the run must not get to
    empty.mkdir(exist_ok=True)
    out["error/indivisible_cli"] = np.array(
        _cli_error(["train", "--batch-size", "12", "--data-dir", str(empty), "--no-progress"])
    )
    out["error/too_many_devices"] = np.array(_cli_error(["train", "--devices", "16", "--data-dir", str(empty)]))

    for run in ("verify", "verify_replicas"):
        split_mesh = verify.split_mesh
        if run == "verify_replicas":
            # the batch split over one axis of a 2x4 mesh and replicated over the other
            verify.split_mesh = lambda mesh, leading: jax.make_mesh(
                (2, 4), (parallel.DATA_AXIS, "replica"), axis_types=(AxisType.Auto,) * 2
            )
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            status = cli.main(["verify", "--quick", "--ops", "conv", "--devices", "8", "--no-progress"])
        verify.split_mesh = split_mesh
        out[f"{run}/status"], out[f"{run}/output"] = np.array(status), np.array(printed.getvalue())
    np.savez(out_path, **out)


def replicated_operands(mesh, out: dict) -> None:
    """Each op with a replicated operand, under ``shard_map`` with ``check_vma``: its gradient, and one device's.

    The first argument is split over ``data``, the others are the same on every device; the loss is
    the ``psum`` of the devices' ``sum(sin(op(...)))``. On one device the same sum runs over the whole
    batch (for ``mse``, whose ``target`` has one device's shape, over the 8 slices by ``vmap``). For
    ``dropout``, ``x`` is the same on every device and the key is each device's own (``fold_in`` of
    its index); on one device, the sum of the 8 devices' terms.
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec

    import convgrad

    rng = np.random.default_rng(7)

    def normal(*shape):
        return jnp.asarray(rng.standard_normal(shape), jnp.float32)

    cases = {
        "conv": (lambda x, w, b: convgrad.conv(x, w, b, padding=1), normal(16, 3, 6, 6), normal(4, 3, 3, 3), normal(4)),
        "conv_transpose": (
            lambda x, w, b: convgrad.conv_transpose(x, w, b, stride=2, groups=2),
            normal(16, 4, 5, 5),
            normal(4, 3, 3, 3),
            normal(6),
        ),
        "dense": (convgrad.dense, normal(16, 5), normal(5, 3), normal(3)),
        "mse": (convgrad.mse, normal(16, 3), normal(2, 3)),  # target: one device's slice of y
    }
    for name, (op, first, *rest) in cases.items():

        def device_loss(first, *rest, op=op):
            return jax.lax.psum(jnp.sum(jnp.sin(op(first, *rest))), parallel.DATA_AXIS)

        mapped = jax.shard_map(
            device_loss,
            mesh=mesh,
            in_specs=(PartitionSpec(parallel.DATA_AXIS), *(PartitionSpec(),) * len(rest)),
            out_specs=PartitionSpec(),
        )
        argnums = tuple(range(1 + len(rest)))
        _leaves_or_error(f"operands/{name}/shard_map", out, jax.jit(jax.grad(mapped, argnums)), first, *rest)
        if name == "mse":

            def one_device(y, target, op=op):
                slices = y.reshape(8, -1, *y.shape[1:])
                return jnp.sum(jnp.sin(jax.vmap(op, in_axes=(0, None))(slices, target)))
        else:

            def one_device(first, *rest, op=op):
                return jnp.sum(jnp.sin(op(first, *rest)))

        _leaves(f"operands/{name}/one", jax.jit(jax.grad(one_device, argnums))(first, *rest), out)

    # dropout of a replicated x with each device's own key, so each its own mask; on one device, the
    # sum of the 8 devices' terms
    x, key, rate = normal(4, 5), jax.random.key(3), 0.25

    def dropout_term(x, device):
        return jnp.sum(jnp.sin(convgrad.dropout(x, rate, jax.random.fold_in(key, device))))

    mapped = jax.shard_map(
        lambda x: jax.lax.psum(dropout_term(x, jax.lax.axis_index(parallel.DATA_AXIS)), parallel.DATA_AXIS),
        mesh=mesh,
        in_specs=PartitionSpec(),
        out_specs=PartitionSpec(),
    )
    _leaves_or_error("operands/dropout/shard_map", out, jax.jit(jax.grad(mapped, (0,))), x)
    one_device = jax.grad(lambda x: sum(dropout_term(x, device) for device in range(8)), (0,))
    _leaves("operands/dropout/one", jax.jit(one_device)(x), out)


def _leaves_or_error(prefix: str, out: dict, fn, *args) -> None:
    """``_leaves(prefix, fn(*args), out)``, or the message of what ``fn(*args)`` raised under ``error/prefix``."""
    try:
        tree = fn(*args)
    except Exception as error:
        out[f"error/{prefix}"] = np.array(f"{type(error).__name__}: {error}")
        return
    _leaves(prefix, tree, out)


def many_steps(out_path: str) -> None:
    """400 steps of linear on 8 devices: without a bound on the steps in flight, XLA's CPU client deadlocks."""
    from convgrad import train

    config = train.TrainConfig(model="linear", batch_size=8, epochs=1)
    _, report = train.train(config, train.synthetic_dataset(8 * 400, 8), progress=False)
    np.savez(out_path, devices=report["devices"], steps=report["steps_per_epoch"])


def process(process_id: int, count: int, port: int, out_path: str) -> None:
    parallel.initialize_distributed(f"localhost:{port}", count, process_id)  # before anything touches a device
    import jax

    from convgrad import train

    state, report = train.train(
        steps_config("cnn"), steps_dataset(), progress=False, checkpoint_dir=Path(out_path).parent / "checkpoint"
    )
    out: dict[str, np.ndarray] = {"processes": np.array(jax.process_count()), "devices": np.array(report["devices"])}
    _leaves("state", state, out)
    out["loss"] = np.array([r["train_loss"] for r in report["history"]])
    np.savez(out_path, **out)


if __name__ == "__main__":
    try:
        if sys.argv[1] == "devices":
            devices(sys.argv[2])
        elif sys.argv[1] == "many-steps":
            many_steps(sys.argv[2])
        else:
            process(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
