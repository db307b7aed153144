"""A deterministic, seeded, learnable in-memory data set with the pipeline's iterator interface.

``config.data.name = 'synthetic'`` trains without any file: each class has a fixed smooth colour
pattern (for clips it also drifts along the width at a class-dependent speed, so time matters),
and every example is its class pattern plus Gaussian noise. It is used by the trainer tests (no
video decoding) and by benchmarks (no input bottleneck).

The interface is the one of ``bat_jax.data.pipeline``:

* ``make_train_iterator(data_config, global_batch_size, process_index, process_count, seed)``
  yields ``{'video' | 'image': float32 (B_local, ...), 'label': int32 (B_local,)}`` forever;
* ``make_eval_iterator(data_config, global_batch_size, process_index, process_count)`` yields the
  eval set once, padded to whole global batches, with a boolean ``'mask'`` (False on padding);
* both have ``get_state()`` / ``set_state(state)`` (a JSON-serialisable dict) and report the size
  of their split as ``num_examples``.

Sharding: the train stream is one global sequence of examples (a fresh permutation per epoch,
epochs concatenated); global batch ``b`` is positions ``[b*B, (b+1)*B)`` and process ``i`` of
``n`` generates only rows ``[i*B/n, (i+1)*B/n)`` of it. The global batch is therefore the same for
any number of processes (that is what lets 2 processes x 2 devices match 1 process x 4 devices).
The class patterns and the eval set are a function of ``data.seed`` only (the data set's
identity); the train order and noise also depend on the training ``seed`` passed in.

Fields of ``config.data`` (see ``get_config``): ``num_classes``, ``num_frames`` (0: images
``(H, W, 3)``, else clips ``(T, H, W, 3)``), ``crop_size``, ``num_train_examples``,
``num_eval_examples``, ``noise``, and ``trace_dir`` (tests only: when set, each process appends the
example indices it generates to ``trace_dir/reads_process{i}.jsonl``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Mapping

import ml_collections
import numpy as np

_TRAIN, _EVAL = 0, 1


def get_config(**overrides: Any) -> ml_collections.ConfigDict:
  """A ``config.data`` for the synthetic source (overrides replace the defaults)."""
  cfg = ml_collections.ConfigDict(dict(
      name='synthetic',
      num_classes=10,
      num_frames=0,  # 0: images
      crop_size=32,
      num_train_examples=512,
      num_eval_examples=100,
      noise=1.0,
      seed=0,  # the data set's identity: class patterns and eval examples
      trace_dir='',
  ))
  cfg.update(overrides)
  return cfg


class _Spec:
  """What every example of the data set is a function of."""

  def __init__(self, data_config: Mapping[str, Any]):
    self.num_classes = int(data_config['num_classes'])
    self.num_frames = int(data_config.get('num_frames', 0) or 0)
    size = int(data_config['crop_size'])
    self.shape = ((self.num_frames, size, size, 3) if self.num_frames else (size, size, 3))
    self.key = 'video' if self.num_frames else 'image'
    self.noise = float(data_config.get('noise', 1.0))
    self.num_train = int(data_config['num_train_examples'])
    self.num_eval = int(data_config['num_eval_examples'])
    self.data_seed = int(data_config.get('seed', 0) or 0)
    self.patterns = _class_patterns(self.num_classes, self.shape, self.data_seed)

  def example(self, seed: int, split: int, index: int, epoch: int) -> tuple[np.ndarray, int]:
    label = index % self.num_classes  # balanced classes
    rng = np.random.default_rng([self.data_seed, seed, split, index, epoch])
    x = self.patterns[label] + self.noise * rng.standard_normal(self.shape, dtype=np.float32)
    return x.astype(np.float32), label


def _class_patterns(num_classes: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
  """One smooth unit-variance pattern per class: a 4x4 colour grid upsampled to the crop; clips
  roll it along the width by a class-dependent number of pixels per frame."""
  rng = np.random.default_rng([seed, 0xC1A55])
  size = shape[-2]
  cell = -(-size // 4)
  grid = rng.standard_normal((num_classes, 4, 4, 3)).astype(np.float32)
  img = np.repeat(np.repeat(grid, cell, axis=1), cell, axis=2)[:, :size, :size]
  if len(shape) == 3:
    return img
  speeds = rng.integers(-2, 3, size=num_classes)
  return np.stack([np.stack([np.roll(img[c], speeds[c] * t, axis=1) for t in range(shape[0])])
                   for c in range(num_classes)])


class _Iterator:
  """Shared parts: per-process rows of each global batch, JSON state, optional read trace."""

  def __init__(self, spec: _Spec, global_batch_size: int, process_index: int,
               process_count: int, trace_dir: str):
    if global_batch_size % process_count:
      raise ValueError(f'global_batch_size={global_batch_size} is not divisible by the '
                       f'{process_count} processes')
    self._spec = spec
    self._global_batch = global_batch_size
    self._local_batch = global_batch_size // process_count
    self._process_index = process_index
    self._position = 0  # global batches consumed
    self._trace = (os.path.join(trace_dir, f'reads_process{process_index}.jsonl')
                   if trace_dir else None)

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self

  def _rows(self) -> range:
    start = self._position * self._global_batch + self._process_index * self._local_batch
    return range(start, start + self._local_batch)

  def _record(self, split: str, indices: list[int]) -> None:
    if self._trace:
      with open(self._trace, 'a') as f:
        f.write(json.dumps({'split': split, 'batch': self._position, 'indices': indices}) + '\n')

  def get_state(self) -> dict[str, Any]:
    return {'position': self._position}

  def set_state(self, state: Mapping[str, Any]) -> None:
    self._position = int(state['position'])


class SyntheticTrainIterator(_Iterator):
  """The endless train stream; a new permutation of the train set every epoch."""

  def __init__(self, spec: _Spec, seed: int, *args: Any):
    super().__init__(spec, *args)
    self.num_examples = spec.num_train
    self._seed = int(seed)
    self._perms: dict[int, np.ndarray] = {}

  def _perm(self, epoch: int) -> np.ndarray:
    if epoch not in self._perms:
      self._perms = {epoch: np.random.default_rng([self._spec.data_seed, self._seed, _TRAIN, epoch, 0x5EED])
                     .permutation(self._spec.num_train)}
    return self._perms[epoch]

  def __next__(self) -> dict[str, np.ndarray]:
    xs, labels, indices = [], [], []
    for p in self._rows():
      epoch, k = divmod(p, self._spec.num_train)
      index = int(self._perm(epoch)[k])
      x, y = self._spec.example(self._seed, _TRAIN, index, epoch)
      xs.append(x)
      labels.append(y)
      indices.append(index)
    self._record('train', indices)
    self._position += 1
    return {self._spec.key: np.stack(xs), 'label': np.asarray(labels, np.int32)}


class SyntheticEvalIterator(_Iterator):
  """The eval set once, in order, padded to whole global batches (``mask`` False on padding)."""

  def __init__(self, spec: _Spec, *args: Any):
    super().__init__(spec, *args)
    self.num_examples = spec.num_eval
    self.num_batches = -(-spec.num_eval // self._global_batch)

  def __next__(self) -> dict[str, np.ndarray]:
    if self._position >= self.num_batches:
      raise StopIteration
    xs, labels, mask = [], [], []
    for p in self._rows():
      valid = p < self._spec.num_eval
      x, y = self._spec.example(0, _EVAL, p if valid else 0, 0)
      xs.append(x if valid else np.zeros_like(x))
      labels.append(y if valid else 0)
      mask.append(valid)
    self._record('eval', [p for p, m in zip(self._rows(), mask) if m])
    self._position += 1
    return {self._spec.key: np.stack(xs), 'label': np.asarray(labels, np.int32),
            'mask': np.asarray(mask, bool)}


def make_train_iterator(data_config: Mapping[str, Any], global_batch_size: int,
                        process_index: int, process_count: int,
                        seed: int) -> SyntheticTrainIterator:
  return SyntheticTrainIterator(_Spec(data_config), seed, global_batch_size, process_index,
                                process_count, str(data_config.get('trace_dir', '') or ''))


def make_eval_iterator(data_config: Mapping[str, Any], global_batch_size: int,
                       process_index: int, process_count: int) -> SyntheticEvalIterator:
  return SyntheticEvalIterator(_Spec(data_config), global_batch_size, process_index,
                               process_count, str(data_config.get('trace_dir', '') or ''))
