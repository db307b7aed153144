"""The data sets ``config.data.name`` names: each one's module, with ``make_train_iterator`` and
``make_eval_iterator``."""

from __future__ import annotations

import importlib
from typing import Any

import ml_collections

# data.name -> the module with make_train_iterator / make_eval_iterator.
DATA_SOURCES = {
    'synthetic': 'bat_jax.data.synthetic',
    'kinetics400': 'bat_jax.data.pipeline',
    'mini_kinetics200': 'bat_jax.data.pipeline',
    'toy_video': 'bat_jax.data.pipeline',
    'imagenet2012': 'bat_jax.data.imagenet',
    'imagenet_folder': 'bat_jax.data.imagenet',
    'cifar10': 'bat_jax.data.cifar',
    'cifar100': 'bat_jax.data.cifar',
    'something_something_v1': 'bat_jax.data.something_something',
}


def data_module(data_config: ml_collections.ConfigDict) -> Any:
  """The module with ``make_train_iterator`` / ``make_eval_iterator`` for ``data.name``."""
  return importlib.import_module(DATA_SOURCES[data_config.name])
