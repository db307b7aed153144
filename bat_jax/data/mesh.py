"""Processes, devices and shardings: one code path for 1 CPU, 8 GPUs and a multi-host TPU pod.

Data parallelism only: a 1-D ``Mesh`` named ``('data',)`` over every device of every process;
parameters, batch statistics and optimizer state are replicated (``P()``), batches are split along
their first axis (``P('data')``). Each process feeds its own rows of the global batch and
``jax.make_array_from_process_local_data`` stitches them into one global array.

BatchNorm: under ``jax.jit`` over this mesh, flax's ``BatchNorm`` (no ``axis_name``) takes its
mean and variance over the *global* batch — the batch axis is sharded, so XLA inserts the
cross-device reductions. Training therefore matches one device with the whole batch (tested to
1e-5 in ``tests/test_multidevice.py``), unlike PyTorch's per-GPU BN in the released code.

Note ``jax.make_mesh`` defaults to ``Explicit`` axes in this jax; we build the ``Mesh`` directly
so that axes are ``Auto`` and plain ``jax.jit`` propagates shardings.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = 'data'
_DISTRIBUTED_MODES = ('auto', 'on', 'off')


def initialize_distributed(mode: str = 'auto', heartbeat_timeout_s: int = 100,
                           shutdown_timeout_s: int = 300) -> bool:
  """Starts ``jax.distributed`` when this is one process of many; returns whether it did.

  ``mode``: ``'auto'`` initialises when ``JAX_COORDINATOR_ADDRESS`` is set (with
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``, e.g. a hand-launched CPU/GPU job);
  ``'on'`` always calls ``jax.distributed.initialize()`` and lets jax detect the cluster (TPU pods,
  SLURM, Open MPI, Kubernetes; the env variables above override); ``'off'`` never does.
  Must run before anything touches the devices. CPU processes talk through gloo.
  ``heartbeat_timeout_s``: the coordination service declares a process dead after this long
  without heartbeats; ``shutdown_timeout_s``: how long a stopping process waits for the others
  (``jax.distributed.initialize``'s ``heartbeat_timeout_seconds`` / ``shutdown_timeout_seconds``;
  the defaults are jax's).
  """
  if mode not in _DISTRIBUTED_MODES:
    raise ValueError(f'--distributed={mode!r}; allowed: {list(_DISTRIBUTED_MODES)}')
  if mode == 'off' or (mode == 'auto' and not os.environ.get('JAX_COORDINATOR_ADDRESS')):
    return False
  kwargs: dict[str, Any] = {}
  if os.environ.get('JAX_NUM_PROCESSES'):
    kwargs['num_processes'] = int(os.environ['JAX_NUM_PROCESSES'])
  if os.environ.get('JAX_PROCESS_ID'):
    kwargs['process_id'] = int(os.environ['JAX_PROCESS_ID'])
  # Only affects the CPU backend (GPU/TPU use NCCL/ICI); without it CPU processes cannot all-reduce.
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(heartbeat_timeout_seconds=heartbeat_timeout_s,
                             shutdown_timeout_seconds=shutdown_timeout_s, **kwargs)
  logging.info('jax.distributed: process %d of %d, %d local / %d global devices',
               jax.process_index(), jax.process_count(), jax.local_device_count(),
               jax.device_count())
  return True


def make_mesh() -> Mesh:
  """All devices of all processes on one ``'data'`` axis (process-major order, as jax lists
  them)."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's rows -> global arrays sharded over ``'data'`` (rows of process ``i`` come
  ``i``-th, since the mesh lists devices process by process)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def check_batch_divisible(global_batch_size: int, field: str = 'global_batch_size') -> None:
  """The global batch must split evenly over devices (and so over processes)."""
  n = jax.device_count()
  if global_batch_size <= 0 or global_batch_size % n:
    raise ValueError(
        f'config.{field}={global_batch_size} is not divisible by the device count {n} '
        f'({jax.process_count()} process(es) x {jax.local_device_count()} local device(s)); '
        f'allowed: positive multiples of {n}')
