"""The math of training-mode BatchNorm (Ioffe & Szegedy 2015, Alg. 1), as flax's ``nn.BatchNorm``
computes it: ``y = (x - mean) / sqrt(var + eps) * scale + bias`` over every axis but the last.

Pure ``jax.numpy``; the module (parameters, running averages, groups) is ``bat_jax.nn.layers``.
The statistics are flax's (``use_fast_variance``: ``var = max(0, E[x^2] - E[x]^2)``, reductions in
float32). ``grouped=True``: ``x`` is ``(G, ..., C)`` and each of the ``G`` groups of examples is
normalised with its own statistics, over all axes but the first and the last.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def reduced_axes(x: Array, grouped: bool) -> tuple[int, ...]:
  """The axes a statistic reduces: all but the last (and the group axis 0 when ``grouped``)."""
  return tuple(range(1 if grouped else 0, x.ndim - 1))


def moments(x: Array, grouped: bool) -> tuple[Array, Array, Array]:
  """``mean, max(0, raw_var), raw_var`` in float32 with ``raw_var = E[x^2] - E[x]^2``, reduced
  dimensions kept (they broadcast against ``x``)."""
  axes = reduced_axes(x, grouped)
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axes, keepdims=True)
  raw_var = jnp.mean(jnp.square(x32), axes, keepdims=True) - jnp.square(mean)
  return mean, jnp.maximum(0.0, raw_var), raw_var


def normalize(x: Array, mean: Array, var: Array, scale: Array, bias: Array,
              epsilon: float) -> Array:
  """``(x - mean) * (rsqrt(var + eps) * scale) + bias``: flax's ``_normalize`` expression,
  operation for operation (so outputs are identical)."""
  mul = jax.lax.rsqrt(var + epsilon) * scale
  return (x - mean) * mul + bias


def train_forward(x: Array, scale: Array, bias: Array, epsilon: float, relu: bool, grouped: bool
                  ) -> tuple[tuple[Array, Array, Array], tuple[Array, Array, Array]]:
  """``((act(y), mean, var), (mean, var, raw_var))``: the outputs (statistics ``(C,)``, or
  ``(G, C)`` when ``grouped``; ``act`` is ReLU when ``relu``) and the statistics with their
  reduced dimensions kept, which a hand-written VJP reuses."""
  mean, var, raw_var = moments(x, grouped)
  y = normalize(x, mean, var, scale, bias, epsilon)
  if relu:
    y = jnp.maximum(y, 0.0)
  shape = (x.shape[0], x.shape[-1]) if grouped else (x.shape[-1],)
  return (y, mean.reshape(shape), var.reshape(shape)), (mean, var, raw_var)


def train(x: Array, scale: Array, bias: Array, epsilon: float, relu: bool, grouped: bool
          ) -> tuple[Array, Array, Array]:
  """``(act(y), mean, var)`` of :func:`train_forward`; differentiated by autodiff."""
  return train_forward(x, scale, bias, epsilon, relu, grouped)[0]
