"""jit-compiled eval and predict steps over the data-parallel mesh (``data/mesh.py``), and what
they share with the train step (``training/steps.py``): the input key and the loss.

Inputs are global arrays sharded over ``'data'``; the variables are replicated. uint8 clips and
images are normalised inside each step with the recipe's mean / std (``input_stats``,
:func:`bat_jax.data.normalization.normalize`); float inputs pass through. The eval step
returns sums over the unmasked examples, so padded batches and any device count give the same
totals (``evaluation/metrics.py`` turns them into accuracies).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from bat_jax.data import mesh as mesh_lib
from bat_jax.data.normalization import InputStats, normalize
from bat_jax.nn.xla_cpu import compiler_options

Batch = Mapping[str, jax.Array]


def input_key(batch: Mapping[str, Any]) -> str:
  """Clips come as ``'video'`` (N, T, H, W, 3), images as ``'image'`` (N, H, W, 3)."""
  for key in ('video', 'image'):
    if key in batch:
      return key
  raise KeyError(f"batch has neither 'video' nor 'image': {sorted(batch)}")


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """Per-example softmax cross-entropy with optional label smoothing (``(1-a) y + a / K``)."""
  targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=jnp.float32)
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def sigmoid_binary_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-example multi-label loss: the mean over the K classes of
  ``-[y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))]`` for multi-hot ``targets`` (B, K).

  Its batch mean is the mean over all B x K entries, as the released Charades code's loss
  normalises: Caffe2's ``SigmoidCrossEntropyLoss`` (modules/detectron/
  sigmoid_cross_entropy_loss_op.cu, ``normalize=1``) divides the summed element losses by the
  number of entries with a target (B x K), in facebookresearch/video-long-term-feature-banks
  ``lib/models/resnet_video.py`` (``MULTI_LABEL``), as PySlowFast's ``bce_logit`` (mean)."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32),
                                                     targets.astype(jnp.float32)), axis=-1)


LOSSES = ('softmax_cross_entropy', 'sigmoid_binary_cross_entropy')


def example_loss(loss: str, logits: jax.Array, labels: jax.Array,
                 label_smoothing: float = 0.0) -> jax.Array:
  """Per-example loss ``config.loss`` (one of ``LOSSES``): softmax cross-entropy of int labels
  (B,) (:func:`cross_entropy`) or sigmoid binary cross-entropy of multi-hot labels (B, K)."""
  if loss == 'softmax_cross_entropy':
    return cross_entropy(logits, labels, label_smoothing)
  if loss == 'sigmoid_binary_cross_entropy':
    return sigmoid_binary_cross_entropy(logits, labels)
  raise ValueError(f'config.loss={loss!r}; allowed: {list(LOSSES)}')


def top_hits(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """float32 (B,): 1 where the label is among the ``k`` highest logits; for multi-hot labels
  (B, K), where any positive class is."""
  if labels.ndim == 1:
    if k == 1:
      return (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return jnp.any(jax.lax.top_k(logits, k)[1] == labels[:, None], axis=-1).astype(jnp.float32)
  top = jax.lax.top_k(logits, k)[1]
  return jnp.any(jnp.take_along_axis(labels, top, axis=-1) > 0, axis=-1).astype(jnp.float32)


def model_input(batch: Batch, input_stats: InputStats | None) -> jax.Array:
  """The batch's clips / images as the model takes them: uint8 normalised with
  ``input_stats`` (float32), any other dtype unchanged."""
  return normalize(batch[input_key(batch)], input_stats)


def make_eval_step(model: nn.Module, mesh: Mesh, num_classes: int, top_k: int = 5,
                   loss: str = 'softmax_cross_entropy', *,
                   input_stats: InputStats | None = None
                   ) -> Callable[[Any, Batch], dict[str, jax.Array]]:
  """``(variables, batch) -> sums`` over the unmasked examples: ``count``, ``loss``, ``top1``,
  ``top{k}``, and per-class ``class_count`` / ``class_top1`` (for mean per-class accuracy).
  Padded examples (``mask`` False) count nowhere. With multi-hot labels (B, K) ``top1`` /
  ``top{k}`` count the examples with a positive class among the top 1 / k, ``class_count`` the
  positives of each class and ``class_top1`` those whose top-1 class is that class.
  ``input_stats``: the mean / std of uint8 inputs
  (``bat_jax.data.normalization.input_stats(config.data)``)."""
  k = min(top_k, num_classes)

  def step(variables: Any, batch: Batch) -> dict[str, jax.Array]:
    x, labels = model_input(batch, input_stats), batch['label']
    mask = (batch['mask'].astype(jnp.float32) if 'mask' in batch
            else jnp.ones(labels.shape[:1]))
    logits = model.apply(variables, x, train=False).astype(jnp.float32)
    top1 = top_hits(logits, labels, 1)
    if labels.ndim == 1:
      class_count = jnp.zeros(num_classes).at[labels].add(mask)
      class_top1 = jnp.zeros(num_classes).at[labels].add(mask * top1)
    else:
      positives = mask[:, None] * labels.astype(jnp.float32)
      class_count = jnp.sum(positives, 0)
      class_top1 = jnp.sum(positives * jax.nn.one_hot(jnp.argmax(logits, -1), num_classes), 0)
    return {
        'count': jnp.sum(mask),
        'loss': jnp.sum(mask * example_loss(loss, logits, labels)),
        'top1': jnp.sum(mask * top1),
        f'top{top_k}': jnp.sum(mask * top_hits(logits, labels, k)),
        'class_count': class_count,
        'class_top1': class_top1,
    }

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(rep, data), out_shardings=rep,
                 compiler_options=compiler_options())


def make_predict_step(model: nn.Module, mesh: Mesh, *, input_stats: InputStats | None = None
                      ) -> Callable[[Any, Batch], jax.Array]:
  """``(variables, batch) -> logits`` (sharded like the batch): the building block of multi-view
  protocols, which aggregate logits of several views per video on the host. ``input_stats``: as
  :func:`make_eval_step`."""

  def step(variables: Any, batch: Batch) -> jax.Array:
    return model.apply(variables, model_input(batch, input_stats), train=False).astype(
        jnp.float32)

  rep, data = mesh_lib.replicated(mesh), mesh_lib.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(rep, data), out_shardings=data,
                 compiler_options=compiler_options())
