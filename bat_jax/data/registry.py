"""The data-set table: which module serves each ``config.data.name``.

Every module named here has ``make_train_iterator(config, ...)`` and
``make_eval_iterator(config, ...)`` (docs/data.md lists the data sets and their fields).
"""

from __future__ import annotations

import importlib
import types

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
    'something_something_v2': 'bat_jax.data.something_something',
    'diving48': 'bat_jax.data.diving48',
    'gym99': 'bat_jax.data.finegym',
    'gym288': 'bat_jax.data.finegym',
    'charades': 'bat_jax.data.charades',
    'cub200': 'bat_jax.data.cub200',
    'cub200_folder': 'bat_jax.data.cub200',
    'ucf101': 'bat_jax.data.ucf101',
}


def data_module(data_config: ml_collections.ConfigDict) -> types.ModuleType:
  """The module with ``make_train_iterator`` / ``make_eval_iterator`` for ``data.name``."""
  if data_config.name not in DATA_SOURCES:
    raise ValueError(f'config.data.name={data_config.name!r} is not a known data set; allowed: '
                     f'{sorted(DATA_SOURCES)}')
  return importlib.import_module(DATA_SOURCES[data_config.name])
