"""Stochastic depth (Huang et al., ECCV 2016) as used by RSA (supplement §1: rate 0.2).

The released RSA code (``ops/ResNet.py``, ``Bottleneck.st_depth_func``) multiplies the output of
a bottleneck's residual branch (after ``bn3``, before ``+ identity`` and the final ReLU) by a
per-sample Bernoulli(keep) mask divided by ``keep``, in training only. The keep probability falls
linearly from 1 at the first residual block to ``1 - rate`` at the last one over all blocks of the
network (ResNet-50: 16 blocks), i.e. block ``i`` (0-based, counted across stages) drops with
``rate * i / (num_blocks - 1)``: :func:`stochastic_depth_rates`.

:func:`drop_path` is a pure function (no Flax state): call it inside a module with an rng from
``self.make_rng('dropout')``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ['drop_path', 'stochastic_depth_rates']


def drop_path(x: jax.Array, rate: float, rng: jax.Array | None,
              deterministic: bool) -> jax.Array:
  """Zeroes whole samples of ``x`` (the residual branch) with probability ``rate``.

  Each sample along axis 0 (a whole clip: all frames, positions and channels) is kept with
  probability ``1 - rate`` and then scaled by ``1 / (1 - rate)``, so the expectation over the mask
  is ``x``. Identity when ``deterministic`` or ``rate == 0`` (``rng`` may then be None);
  ``rate == 1`` returns zeros.
  """
  rate = float(rate)
  if not 0.0 <= rate <= 1.0:
    raise ValueError(f'drop_path rate must lie in [0, 1], got {rate}')
  if deterministic or rate == 0.0:
    return x
  if rate == 1.0:
    return jnp.zeros_like(x)
  if rng is None:
    raise ValueError('drop_path needs an rng when not deterministic and rate > 0')
  keep = 1.0 - rate
  mask = jax.random.bernoulli(rng, keep, (x.shape[0],) + (1,) * (x.ndim - 1))
  return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


def stochastic_depth_rates(total_rate: float, num_blocks: int) -> tuple[float, ...]:
  """Per-block drop rates rising linearly from 0 (first block) to ``total_rate`` (last block).

  As the released RSA code: keep probability ``1 - total_rate * i / (num_blocks - 1)`` for block
  ``i`` of ``num_blocks`` (all residual blocks of the network in order; 16 for ResNet-50). A
  network of a single block gets rate 0 for it.
  """
  total_rate = float(total_rate)
  num_blocks = int(num_blocks)
  if num_blocks < 1:
    raise ValueError(f'num_blocks must be >= 1, got {num_blocks}')
  if not 0.0 <= total_rate < 1.0:
    raise ValueError(f'stochastic depth rate must lie in [0, 1), got {total_rate}')
  if num_blocks == 1:
    return (0.0,)
  return tuple(total_rate * i / (num_blocks - 1) for i in range(num_blocks))
