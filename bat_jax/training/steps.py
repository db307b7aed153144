"""The jit-compiled train step over the data-parallel mesh (``data/mesh.py``).

Inputs are global arrays sharded over ``'data'``; the state is replicated. Means over the batch
(loss, BatchNorm statistics) are therefore global-batch means, computed by XLA's cross-device
reductions; the same program runs on 1 device, 8 devices or many processes. The eval and predict
steps, the loss and the compiler options are in ``bat_jax/evaluation/steps.py``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from bat_jax.data import mesh as mesh_lib
from bat_jax.data.normalization import InputStats
from bat_jax.evaluation.steps import example_loss, model_input, top_hits
from bat_jax.nn.xla_cpu import compiler_options
from bat_jax.training.state import TrainState

Batch = Mapping[str, jax.Array]


def all_finite(tree: Any) -> jax.Array:
  """A scalar bool: every floating-point entry of ``tree`` is finite (non-float leaves count as
  finite)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, mesh: Mesh,
                    label_smoothing: float = 0.0, loss: str = 'softmax_cross_entropy', *,
                    input_stats: InputStats | None = None
                    ) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
  """``(state, batch) -> (state + 1 update, {'loss', 'top1', 'grad_norm', 'finite'})``; donates
  ``state``. ``loss``: ``config.loss`` (``evaluation.steps.LOSSES``); the batch mean of
  :func:`bat_jax.evaluation.steps.example_loss`. ``top1`` of multi-hot labels: the fraction of
  examples whose top-1 class is a positive.

  ``finite`` is true when the loss, the gradient norm and every updated parameter are finite. A
  non-finite step applies no update: params, batch statistics and optimizer state come back
  unchanged (``step`` still advances: the batch was consumed), as PySlowFast's NaN-loss check
  and ``optax.apply_if_finite`` do. uint8 inputs are normalised on the device with
  ``input_stats`` (``bat_jax.data.normalization.input_stats(config.data)``)."""

  def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
    x, labels = model_input(batch, input_stats), batch['label']

    def loss_fn(params: Any) -> tuple[jax.Array, tuple[jax.Array, Any]]:
      logits, updates = model.apply(
          {'params': params, 'batch_stats': state.batch_stats}, x, train=True,
          rngs={'dropout': state.step_rng()}, mutable=['batch_stats'])
      value = jnp.mean(example_loss(loss, logits, labels, label_smoothing))
      return value, (logits, updates.get('batch_stats', state.batch_stats))

    (value, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(value) & jnp.isfinite(grad_norm) & all_finite(params)
    params, batch_stats, opt_state = jax.lax.cond(
        finite, lambda: (params, batch_stats, opt_state),
        lambda: (state.params, state.batch_stats, state.opt_state))
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    metrics = {'loss': value,
               'top1': jnp.mean(top_hits(logits, labels, 1)),
               'grad_norm': grad_norm, 'finite': finite}
    return new_state, metrics

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(rep, data), out_shardings=(rep, rep), donate_argnums=(0,),
                 compiler_options=compiler_options())
