"""CIFAR-10 / CIFAR-100 through ``tfds.data_source`` and grain (the chebysnl §3.1 experiments).

Same interface as the trainer's other sources (``bat_jax.data.synthetic``,
``bat_jax.data.pipeline``)::

    it = make_train_iterator(config.data, global_batch_size, process_index, process_count, seed)
    batch = next(it)            # {'image': uint8 (B, 32, 32, 3), 'label': i32 (B,)}
    state = it.get_state()      # JSON-serialisable; save it with the checkpoint
    it.set_state(state)         # resume exactly (fresh iterator, same arguments)
    it.num_examples, it.steps_per_epoch

    ev = make_eval_iterator(config.data, global_batch_size, process_index, process_count)
    for batch in ev: ...        # + 'mask' (B,) bool (False on padding rows); finite

Data. ``tfds.data_source(name, split, data_dir)`` reads the prepared ArrayRecord files with random
access (``image`` uint8 (32, 32, 3), ``label`` the fine label). Preparing them needs TensorFlow
(tfds encodes the images to PNG with ``tf.image``) and a download; reading needs only tfds and
``array_record``. Prepare once, anywhere with TensorFlow installed::

    pip install tensorflow tensorflow-datasets
    tfds build cifar100 --data_dir=/data/tfds --file_format=array_record   # and/or cifar10

then train with ``--config.data.data_dir=/data/tfds``. Tests use ``tfds.testing.mock_data``.

Augmentation (training; torchvision ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip``, as
in the released SNL CIFAR code): zero-pad 4 pixels on each side, crop a random 32x32 window
(offsets uniform in 0..8), flip left-right with probability 1/2. Images leave the workers as
uint8; the steps then divide by 255, subtract ``mean`` and divide by ``std`` per channel on the
device (defaults: the released SNL code's CIFAR statistics; :mod:`bat_jax.data.normalization`).
Evaluation: no augmentation.

Order and sharding (as ``bat_jax.data.pipeline``). Epoch ``e`` is a permutation of the train split
drawn from ``(seed, e)``; its first ``steps_per_epoch * G`` positions are used (``G`` the global
batch). Global step ``s`` is positions ``[s' G, (s' + 1) G)`` of epoch ``s // steps_per_epoch``
(``s' = s mod steps_per_epoch``), and process ``p`` of ``P`` reads rows ``[p G/P, (p + 1) G/P)``
of it, so the global batch is the same for any process count. Example augmentation draws from
``np.random.default_rng([seed, epoch, position])``: batches depend only on their index, never on
workers, threads or processes. Evaluation: global batch ``b`` is test examples ``[b G, (b + 1) G)``
(in order), rows past the end are zeros with ``mask = False``; every process yields the same
number of batches.

Order, sharding and the checkpointable iterator are :mod:`bat_jax.data.core`'s. State:
:meth:`bat_jax.data.core.GrainIterator.get_state`; ``set_state`` checks the fingerprint (same
data set, split size, seed and global batch; the process layout may change).

``config.data`` fields: ``name`` (``'cifar10'`` | ``'cifar100'``), ``data_dir`` (tfds data dir),
optional ``crop_size`` (32), ``padding`` (4), ``random_flip`` (True), ``mean``, ``std`` (0-1 RGB;
read by the steps),
``num_workers`` (grain worker processes, 0 = in-process), ``num_threads`` (2),
``train_split`` (``'train'``), ``eval_split`` (``'test'``).
"""

from __future__ import annotations

from typing import Any

import ml_collections
import numpy as np

from bat_jax.data import core
from bat_jax.data.core import config_get

__all__ = ['get_config', 'make_train_iterator', 'make_eval_iterator', 'augment', 'CIFAR_MEAN',
           'CIFAR_STD', 'NUM_CLASSES']

# Released SNL CIFAR code (torchvision Normalize), 0-1 RGB; applied by the steps.
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2023, 0.1994, 0.2010)
NUM_CLASSES = {'cifar10': 10, 'cifar100': 100}


def get_config(**overrides: Any) -> ml_collections.ConfigDict:
  """A ``config.data`` for CIFAR (overrides replace the defaults)."""
  cfg = ml_collections.ConfigDict(dict(
      name='cifar100',
      data_dir='',  # tfds data dir holding the prepared ArrayRecord files; required
      crop_size=32,
      padding=4,
      random_flip=True,
      mean=CIFAR_MEAN,
      std=CIFAR_STD,
      num_workers=0,
      num_threads=2,
      train_split='train',
      eval_split='test',
  ))
  cfg.update(overrides)
  return cfg


def _source(data_config: Any, split: str) -> Any:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  name = config_get(data_config, 'name')
  if name not in NUM_CLASSES:
    raise ValueError(f'config.data.name={name!r}; allowed: {sorted(NUM_CLASSES)}')
  data_dir = config_get(data_config, 'data_dir', '') or None
  return tfds.data_source(name, split=split, data_dir=data_dir)


# ------------------------------------------------------------------------------------------------
# Per-example work (numpy only; runs in grain workers).


def augment(image: np.ndarray, rng: np.random.Generator, crop_size: int = 32, padding: int = 4,
            flip: bool = True) -> np.ndarray:
  """Zero-pad ``padding`` pixels, crop a random ``crop_size`` window, flip with probability 1/2.

  Draws, in order: the row offset, the column offset (each uniform in ``0..2 padding``), then the
  flip (``rng.random() < 0.5``).
  """
  padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
  top = int(rng.integers(0, padded.shape[0] - crop_size + 1))
  left = int(rng.integers(0, padded.shape[1] - crop_size + 1))
  out = padded[top:top + crop_size, left:left + crop_size]
  if flip and rng.random() < 0.5:
    out = out[:, ::-1]
  return np.ascontiguousarray(out)


class _TrainLoad:

  def __init__(self, source: Any, seed: int, opts: dict[str, Any]):
    self.source, self.seed, self.opts = source, seed, opts

  def __call__(self, item: tuple[int, int, int]) -> dict[str, np.ndarray]:
    epoch, pos, record = item
    example = self.source[record]
    rng = np.random.default_rng([self.seed, epoch, pos])
    image = augment(np.asarray(example['image']), rng, self.opts['crop_size'],
                    self.opts['padding'], self.opts['flip'])
    return {'image': image, 'label': np.int32(example['label'])}


class _EvalLoad:

  def __init__(self, source: Any, opts: dict[str, Any]):
    self.source, self.opts = source, opts

  def __call__(self, index: int) -> dict[str, np.ndarray]:
    index = int(index)
    if index < 0:
      size = self.opts['crop_size']
      return {'image': np.zeros((size, size, 3), np.uint8), 'label': np.int32(0),
              'mask': np.bool_(False)}
    example = self.source[index]
    image = np.asarray(example['image'])
    if image.shape[0] != self.opts['crop_size'] or image.shape[1] != self.opts['crop_size']:
      raise ValueError(f'eval images are {image.shape[:2]}, config.data.crop_size is '
                       f"{self.opts['crop_size']}")
    return {'image': np.asarray(image, np.uint8), 'label': np.int32(example['label']),
            'mask': np.bool_(True)}


def _opts(data_config: Any) -> dict[str, Any]:
  return dict(crop_size=int(config_get(data_config, 'crop_size', 32)),
              padding=int(config_get(data_config, 'padding', 4)),
              flip=bool(config_get(data_config, 'random_flip', True)))


def make_train_iterator(data_config: Any, global_batch_size: int, process_index: int = 0,
                        process_count: int = 1, seed: int = 0, *,
                        num_epochs: int | None = None,
                        source: Any = None) -> core.GrainIterator:
  """Endless (or ``num_epochs``-long) augmented training batches for this process.

  ``source`` (a random-access sequence of ``{'image', 'label'}``) replaces the tfds data source.
  """
  split = config_get(data_config, 'train_split', 'train')
  source = _source(data_config, split) if source is None else source
  n = len(source)
  index = core.train_source(n, global_batch_size, process_index, process_count, seed, num_epochs)
  b, steps = index.b, index.steps
  batches = core.train_batches(_TrainLoad(source, int(seed), _opts(data_config)), index)
  fingerprint = {'kind': 'train', 'name': config_get(data_config, 'name'), 'split': split,
                 'num_records': n, 'seed': int(seed), 'global_batch_size': global_batch_size,
                 'process_index': process_index, 'process_count': process_count}
  info = {'num_examples': n, 'steps_per_epoch': steps, 'per_process_batch_size': b,
          'num_classes': NUM_CLASSES.get(config_get(data_config, 'name'))}
  num_workers, num_threads = core.worker_counts(data_config)
  return core.GrainIterator(batches,
                            num_batches=None if num_epochs is None else num_epochs * steps,
                            num_workers=num_workers, num_threads=num_threads, split=split,
                            fingerprint=fingerprint, info=info)


def make_eval_iterator(data_config: Any, global_batch_size: int, process_index: int = 0,
                       process_count: int = 1, *, source: Any = None) -> core.GrainIterator:
  """The eval split once, in order, padded to whole global batches (``mask`` False on padding)."""
  split = config_get(data_config, 'eval_split', 'test')
  source = _source(data_config, split) if source is None else source
  n = len(source)
  b = core.process_batch_size(global_batch_size, process_count)
  num_batches = -(-n // global_batch_size)
  rows = np.arange(num_batches * global_batch_size).reshape(num_batches, global_batch_size)
  rows = rows[:, process_index * b:(process_index + 1) * b].reshape(-1)
  rows = np.where(rows < n, rows, -1)
  batches = core.eval_batches(_EvalLoad(source, _opts(data_config)), rows, b)
  fingerprint = {'kind': 'eval', 'name': config_get(data_config, 'name'), 'split': split,
                 'num_records': n, 'global_batch_size': global_batch_size,
                 'process_index': process_index, 'process_count': process_count}
  info = {'num_examples': n, 'per_process_batch_size': b,
          'num_classes': NUM_CLASSES.get(config_get(data_config, 'name'))}
  num_workers, num_threads = core.worker_counts(data_config)
  return core.GrainIterator(batches, num_batches=num_batches, num_workers=num_workers,
                            num_threads=num_threads, split=split, fingerprint=fingerprint,
                            info=info)
