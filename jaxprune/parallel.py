"""Data parallelism, and optional parameter sharding, over a ``jax.sharding`` mesh.

One mesh axis, ``"data"``, spans every device of the run (all local devices, or every
device of every process after ``jax.distributed.initialize``). The global batch is split
along it; params, block scores and optimizer states are replicated, or with
``shard_params`` (FSDP-style) split along it too, each leaf on its largest axis that the
device count divides (leaves no axis of which divides stay replicated). The train step is
the same function: ``jax.jit`` partitions it from the shardings of its inputs and outputs,
so loss and metrics are the same global weighted means as on one device (up to float32
reduction order), and masking, top-k ranking and the straight-through scores work on
sharded leaves because XLA gathers what each operation needs.

A batch whose row count the device count does not divide is filled with weight-0 rows
(:func:`jaxprune.data.batching.make_batch` already fills short batches that way), which
changes no loss or gradient. Every process builds the same global batch from the same
plan (a batch of token ids is small) and places only the rows of its own devices.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxprune.errors import JaxpruneError

DATA = "data"


@dataclasses.dataclass(frozen=True)
class Parallel:
    """The mesh a run uses and whether params are sharded; hashable (a static argument)."""

    mesh: Mesh
    shard_params: bool = False

    @classmethod
    def create(cls, devices: Sequence[jax.Device] | None = None, shard_params: bool = False) -> Parallel:
        """A one-axis ``"data"`` mesh over ``devices`` (default: every device of every process)."""
        devices = list(devices) if devices is not None else jax.devices()
        return cls(Mesh(np.array(devices), (DATA,)), shard_params)

    @property
    def size(self) -> int:
        """Devices along the data axis."""
        return int(self.mesh.shape[DATA])

    def padded_batch_size(self, batch_size: int) -> int:
        """``batch_size`` rounded up to a multiple of the device count (the extra rows weigh 0)."""
        return -(-batch_size // self.size) * self.size

    @property
    def batch_sharding(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec(DATA))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def leaf_sharding(self, shape: tuple[int, ...], floating: bool = True) -> NamedSharding:
        """Replicated, or with ``shard_params`` a floating leaf split on the largest axis the device
        count divides (integer leaves, the step and the PRNG key, stay replicated)."""
        if not self.shard_params or self.size == 1 or not floating:
            return self.replicated
        axes = [axis for axis in np.argsort(shape, kind="stable")[::-1] if shape[axis] % self.size == 0]
        if not axes:
            return self.replicated
        spec = [None] * len(shape)
        spec[int(axes[0])] = DATA
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def shardings(self, tree: Any) -> Any:
        """A ``NamedSharding`` for every leaf of ``tree`` (by shape: params and their Adam moments
        get the same one)."""
        return jax.tree_util.tree_map(
            lambda leaf: self.leaf_sharding(tuple(np.shape(leaf)), np.issubdtype(leaf.dtype, np.floating)), tree)

    def put(self, tree: Any, shardings: Any | None = None) -> Any:
        """``tree``'s leaves as global arrays with ``shardings`` (default :meth:`shardings`).

        Every process passes the same values; each places only its own devices' part.
        """
        shardings = self.shardings(tree) if shardings is None else shardings
        return jax.tree_util.tree_map(_global_array, tree, shardings)

    def put_replicated(self, tree: Any) -> Any:
        return jax.tree_util.tree_map(lambda leaf: _global_array(leaf, self.replicated), tree)

    def put_batch(self, batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """A host batch (every array's first axis: rows, a multiple of :attr:`size`) split by rows."""
        return {name: _global_array(value, self.batch_sharding) for name, value in batch.items()}


def _global_array(value: Any, sharding: NamedSharding) -> jax.Array:
    if isinstance(value, jax.Array) and value.sharding == sharding:
        return value
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_host(value: Any) -> Any:
    """A global array (or tree of them) as numpy, gathered from every process when needed."""
    def fetch(leaf):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable and not leaf.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
        return np.asarray(jax.device_get(leaf))

    return jax.tree_util.tree_map(fetch, value)


# Cluster managers whose environment jax.distributed.initialize() reads by itself.
_CLUSTER_SIZES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")


def initialize_distributed(environ: Mapping[str, str] | None = None, timeout_s: int = 300) -> bool:
    """Join a multi-process run when the environment describes one; return whether it did.

    ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and
    ``JAX_PROCESS_ID`` start one by hand (every process gets the same address and count, its
    own id); under SLURM or Open MPI with more than one task, JAX reads the cluster's own
    variables. Call it before anything else uses JAX. ``timeout_s`` bounds the wait for the
    other processes (JAX's default is 300 s).
    """
    environ = os.environ if environ is None else environ
    address = environ.get("JAX_COORDINATOR_ADDRESS")
    if address:
        try:
            count, process_id = int(environ["JAX_NUM_PROCESSES"]), int(environ["JAX_PROCESS_ID"])
        except KeyError as missing:
            raise JaxpruneError(f"JAX_COORDINATOR_ADDRESS is set but {missing.args[0]} is not; set "
                                "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID together") from None
        except ValueError:
            raise JaxpruneError("JAX_NUM_PROCESSES and JAX_PROCESS_ID must be whole numbers") from None
        if not 0 <= process_id < count:
            raise JaxpruneError(f"JAX_PROCESS_ID {process_id} is not in 0..{count - 1} (JAX_NUM_PROCESSES {count})")
        jax.distributed.initialize(address, count, process_id, initialization_timeout=timeout_s)
        return True
    if any(int(environ.get(name, "1") or 1) > 1 for name in _CLUSTER_SIZES):
        jax.distributed.initialize(initialization_timeout=timeout_s)
        return True
    return False


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0; the only one outside multi-process runs)."""
    return jax.process_index() == 0
