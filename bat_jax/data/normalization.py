"""Input normalisation, applied on the device inside the jitted train / eval / predict steps.

The data workers emit uint8 clips and images (after decode, resize, crop and flip): 1 byte per
value crosses from the workers to the host and from the host to the devices instead of 4. The
steps turn them into the model's input with :func:`normalize`::

    y = (x / 255 - mean) / std      (per RGB channel; computed as x * scale + offset in float32)

with ``mean`` / ``std`` in 0-1 RGB units, the units every recipe's ``config.data.mean`` /
``config.data.std`` use: ImageNet statistics for the ImageNet-style recipes; the BAT Kinetics
rows' caffe-style means ``(103.939, 116.779, 123.68) / 255`` with ``std = 1 / 255``, i.e.
``x - mean_255`` (``configs/base_kinetics.py``); the released SNL CIFAR statistics for CIFAR.
:func:`input_stats` reads them from the data config (defaults per data set, as the workers used).

The result is float32 whatever the model's dtype: a bf16 model (``model.dtype='bfloat16'``)
casts it in its first layer exactly as it cast the float32 batches the workers sent before, so
the programs and numbers are today's; subtracting the mean in float32 first keeps the
caffe-style rows' ``x - 123.68`` exact to float32 rounding before the cast.

Only uint8 inputs are normalised: float inputs (the synthetic data set's features) pass through
unchanged, so the rule is the batch's dtype, static at trace time.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bat_jax.data.cifar import CIFAR_MEAN, CIFAR_STD
from bat_jax.data.core import config_get

__all__ = ['InputStats', 'IMAGENET_MEAN', 'IMAGENET_STD', 'input_stats', 'normalize']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# data.name -> (mean, std) when config.data has none; every other data set: ImageNet's.
_DEFAULTS = {'cifar10': (CIFAR_MEAN, CIFAR_STD), 'cifar100': (CIFAR_MEAN, CIFAR_STD)}


class InputStats(NamedTuple):
  """Per-channel mean and std in 0-1 RGB units (``config.data.mean`` / ``std``)."""
  mean: tuple[float, ...]
  std: tuple[float, ...]


def _channels(value: Any, field: str) -> tuple[float, ...]:
  try:
    out = tuple(float(v) for v in value)
  except (TypeError, ValueError):
    raise ValueError(f'config.data.{field}={value!r}; allowed: 3 numbers (R, G, B, 0-1 units)'
                     ) from None
  if len(out) != 3 or not all(np.isfinite(out)):
    raise ValueError(f'config.data.{field}={value!r}; allowed: 3 finite numbers (R, G, B, '
                     '0-1 units)')
  return out


def input_stats(data_config: Any) -> InputStats:
  """``config.data.mean`` / ``std`` (defaults per ``data.name``: CIFAR's for cifar10/100,
  ImageNet's otherwise); ``ValueError`` naming the field when one is not 3 numbers or a std is
  not positive."""
  default_mean, default_std = _DEFAULTS.get(config_get(data_config, 'name', ''),
                                            (IMAGENET_MEAN, IMAGENET_STD))
  mean = _channels(config_get(data_config, 'mean', default_mean), 'mean')
  std = _channels(config_get(data_config, 'std', default_std), 'std')
  if min(std) <= 0:
    raise ValueError(f'config.data.std={std}; allowed: positive numbers')
  return InputStats(mean, std)


def normalize(x: jax.Array | np.ndarray, stats: InputStats | None) -> jax.Array:
  """uint8 ``x`` (..., 3) -> float32 ``(x / 255 - mean) / std`` as ``x * scale + offset`` with
  ``scale = 1 / (255 std)``, ``offset = -mean / std`` (computed in float64, rounded to float32);
  any other dtype is returned unchanged. ``stats`` may be None only for non-uint8 inputs."""
  if x.dtype != jnp.uint8:
    return x
  if stats is None:
    raise ValueError('a uint8 batch needs the mean / std to normalise it: build the step with '
                     'input_stats(config.data)')
  mean, std = np.asarray(stats.mean, np.float64), np.asarray(stats.std, np.float64)
  scale = jnp.asarray(1.0 / (255.0 * std), jnp.float32)
  offset = jnp.asarray(-mean / std, jnp.float32)
  return jnp.asarray(x).astype(jnp.float32) * scale + offset

