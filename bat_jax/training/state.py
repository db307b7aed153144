"""The train state: everything a resumed run needs besides the data iterator position.

``TrainState`` is a pytree of arrays only (the model and optimizer are passed to the step
functions separately), so the checkpoint is exactly ``state.as_dict()``:
``step`` (updates applied), ``params``, ``batch_stats``, ``opt_state`` and ``rng`` — the raw
``uint32`` data of the run's base key. Step ``s`` uses ``fold_in(rng, s)`` for dropout, so random
numbers do not depend on where a run was interrupted.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from bat_jax.data import mesh as mesh_lib


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array  # jax.random.key_data(key): uint32, checkpointable

  def as_dict(self) -> dict[str, Any]:
    return {'step': self.step, 'params': self.params, 'batch_stats': self.batch_stats,
            'opt_state': self.opt_state, 'rng': self.rng}

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> 'TrainState':
    return cls(step=d['step'], params=d['params'], batch_stats=d['batch_stats'],
               opt_state=d['opt_state'], rng=d['rng'])

  def variables(self) -> dict[str, Any]:
    return {'params': self.params, 'batch_stats': self.batch_stats}

  def step_rng(self) -> jax.Array:
    return jax.random.fold_in(jax.random.wrap_key_data(self.rng), self.step)


def init_input_shape(model_config: Any) -> tuple[int, ...]:
  """``(1, H, W, 3)`` or ``(1, T, H, W, 3)`` from ``model.input_size``."""
  return (1, *tuple(int(s) for s in model_config.input_size), 3)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, seed: int,
                       input_shape: Sequence[int], mesh: Mesh) -> TrainState:
  """Initialises on device, replicated over the mesh (every process computes the same values)."""

  def init(key: jax.Array) -> TrainState:
    init_key, dropout_key, run_key = jax.random.split(key, 3)
    variables = model.init({'params': init_key, 'dropout': dropout_key},
                           jnp.zeros(input_shape, jnp.float32), train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(params), rng=jax.random.key_data(run_key))

  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh))(jax.random.key(seed))


def abstract_train_state(model: nn.Module, tx: optax.GradientTransformation,
                         input_shape: Sequence[int], mesh: Mesh) -> TrainState:
  """Shapes, dtypes and (replicated) shardings of the state, without computing it."""

  def init(key: jax.Array) -> TrainState:
    variables = model.init({'params': key, 'dropout': key}, jnp.zeros(input_shape, jnp.float32),
                           train=False)
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                      batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(variables['params']),
                      rng=jax.random.key_data(key))

  shapes = jax.eval_shape(init, jax.random.key(0))
  sharding = mesh_lib.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def abstract_variables(model: nn.Module, input_shape: Sequence[int], mesh: Mesh) -> dict[str, Any]:
  """``{'params', 'batch_stats'}`` as replicated ``ShapeDtypeStruct`` s (checkpoint checks)."""
  shapes = jax.eval_shape(
      lambda key: model.init({'params': key, 'dropout': key}, jnp.zeros(input_shape, jnp.float32),
                             train=False), jax.random.key(0))
  sharding = mesh_lib.replicated(mesh)
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                      {'params': shapes['params'], 'batch_stats': shapes.get('batch_stats', {})})
