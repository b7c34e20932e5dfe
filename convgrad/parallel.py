"""Data parallelism with JAX's own SPMD machinery: the mesh, its two shardings, global arrays, multi-host start-up.

Training (:func:`convgrad.train.train`) runs on a one-axis :class:`jax.sharding.Mesh`
named ``data``. The batch is split over that axis (:func:`batch_sharded`), the
parameters, the optimizer state and the dataset are copied to every device
(:func:`replicated`), and the step is ``jax.jit`` compiled with those shardings
given explicitly; XLA's partitioner inserts the all-reduce of the gradients.
The custom VJPs need nothing for this: under ``jit`` they are ordinary
functions of arrays, partitioned like any other.

The mesh axis is of type ``AxisType.Auto`` (the partitioner propagates
shardings). ``jax.make_mesh`` defaults to ``AxisType.Explicit``, in which every
op that cannot infer its output sharding must be told it; the ops here, and
``lax.conv_general_dilated`` itself in jax 0.10, do not say, so an Explicit mesh
fails at trace time with a ``ShardingTypeError`` (see ``tests/test_sharding.py``).

Multi-host: one process per host, each calling :func:`initialize_distributed`
before anything touches a device, then running the same program. Every process
holds the same values (the dataset, the parameters at initialization, the
epoch's permutation) and :func:`global_array` builds a global array from them
in which each process fills only the shards that live on its own devices.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(devices: int | None = None, *, platform: str | None = None) -> Mesh:
    """A one-axis mesh named ``data`` over the first ``devices`` devices JAX sees (default: all of them).

    Raises:
      ValueError: ``devices`` is not a positive int, or exceeds the devices
        JAX sees (the message lists them).
    """
    available = jax.devices(platform) if platform is not None else jax.devices()
    if devices is None:
        devices = len(available)
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise ValueError(f"devices must be a positive int, got devices={devices!r}")
    if devices > len(available):
        shown = ", ".join(str(d) for d in available)
        hint = (
            "; on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N (set before JAX starts) simulates N devices"
            if available[0].platform == "cpu"
            else ""
        )
        raise ValueError(f"devices={devices} but JAX sees {len(available)} device(s): {shown}{hint}")
    return jax.make_mesh((devices,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=available[:devices])


def data_axis_size(mesh: Mesh) -> int:
    """How many devices the ``data`` axis of ``mesh`` spans."""
    return mesh.shape[DATA_AXIS]


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of ``mesh`` (parameters, optimizer state, the dataset)."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis split evenly over the ``data`` axis, the other axes whole."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def split_problem(size: int, mesh: Mesh) -> str | None:
    """Why ``size`` examples do not split evenly over the ``data`` axis of ``mesh``, or None if they do."""
    n = data_axis_size(mesh)
    if size % n:
        return (
            f"does not divide evenly over the {n} devices of the data axis "
            f"({size} = {size // n} * {n} + {size % n}); use a multiple of {n}"
        )
    return None


def check_divides(size: int, mesh: Mesh, what: str) -> None:
    """Raise ``ValueError`` naming ``what`` unless ``size`` splits evenly over the ``data`` axis of ``mesh``."""
    problem = split_problem(size, mesh)
    if problem is not None:
        raise ValueError(f"{what}={size} {problem}")


def global_array(value: jax.typing.ArrayLike, sharding: NamedSharding) -> jax.Array:
    """A global ``jax.Array`` laid out as ``sharding`` from a ``value`` that every process holds in full.

    Each process copies only the shards that live on its own devices (the
    index of each is given by ``sharding``), so with several processes no
    process needs the others' data on its devices; with one process this is
    ``jax.device_put(value, sharding)``.
    """
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def initialize_distributed(
    coordinator_address: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """``jax.distributed.initialize``: join the other processes of a multi-host run; call before touching a device.

    Arguments left ``None`` are detected by JAX: ``JAX_COORDINATOR_ADDRESS``
    from the environment, everything on Cloud TPU, Slurm, Open MPI and
    Kubernetes (JobSet). Elsewhere pass all three.
    """
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
