"""A deterministic, seeded, learnable in-memory data set with the pipeline's iterator interface.

``config.data.name = 'synthetic'`` trains without any file: each class has a fixed smooth colour
pattern (for clips it also drifts along the width at a class-dependent speed, so time matters),
and every example is its class pattern plus Gaussian noise. It is used by the trainer tests (no
video decoding) and by benchmarks (no input bottleneck).

It plugs into :mod:`bat_jax.data.core` like every data set (a record list and a per-example
load): ``make_train_iterator(data_config, global_batch_size, process_index, process_count, seed)``
yields ``{'video' | 'image': float32 (B_local, ...), 'label': int32 (B_local,)}`` forever,
``make_eval_iterator(data_config, global_batch_size, process_index, process_count)`` the eval set
once, padded to whole global batches with a boolean ``'mask'`` (False on padding); both are
:class:`bat_jax.data.core.GrainIterator` (``get_state`` / ``set_state``, ``num_examples``).

Order and sharding are the core's: epoch ``e`` is a permutation of the train examples drawn from
``(seed, e)``, ``num_train_examples // G`` global batches of ``G`` per epoch, and process ``i`` of
``n`` generates only rows ``[i G / n, (i + 1) G / n)`` of each global batch, so the global batch is
the same for any number of processes (that is what lets 2 processes x 2 devices match 1 process x
4 devices). Evaluation: :func:`bat_jax.data.core.eval_assignment` with one view. An example is a
function of ``(data.seed, seed, split, index, epoch)``: the class patterns and the eval set depend
on ``data.seed`` only (the data set's identity), the train noise also on the training ``seed``.

Fields of ``config.data`` (see ``get_config``): ``num_classes``, ``num_frames`` (0: images
``(H, W, 3)``, else clips ``(T, H, W, 3)``), ``crop_size``, ``num_train_examples``,
``num_eval_examples``, ``noise``, ``seed``, ``num_workers`` (grain worker processes; 0, the
default, generates in the main process), ``num_threads`` and ``trace_dir`` (tests only: when set,
each process appends the example indices of every batch it yields to
``trace_dir/reads_process{i}.jsonl``).
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import ml_collections
import numpy as np

from bat_jax.data import core

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
      num_workers=0,  # grain worker processes (0: in the main process)
      num_threads=2,  # grain read threads per worker
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


class _TrainLoad:
  """Training element ``(epoch, position, record)`` -> the record's example with that epoch's
  noise (``trace``: also its ``'_index'``)."""

  def __init__(self, spec: _Spec, seed: int, trace: bool):
    self.spec, self.seed, self.trace = spec, seed, trace

  def __call__(self, item: tuple[int, int, int]) -> dict[str, Any]:
    epoch, _, record = item
    x, y = self.spec.example(self.seed, _TRAIN, record, epoch)
    out = {self.spec.key: x, 'label': np.int32(y)}
    if self.trace:
      out['_index'] = np.int64(record)
    return out


class _EvalLoad:
  """Evaluation element ``(record or -1, view)`` -> the example (zeros, ``mask`` False, on
  padding)."""

  def __init__(self, spec: _Spec, trace: bool):
    self.spec, self.trace = spec, trace

  def __call__(self, item: np.ndarray) -> dict[str, Any]:
    record = int(item[0])
    x, y = self.spec.example(0, _EVAL, max(record, 0), 0)
    out = {self.spec.key: x if record >= 0 else np.zeros_like(x),
           'label': np.int32(y if record >= 0 else 0), 'mask': np.bool_(record >= 0)}
    if self.trace:
      out['_index'] = np.int64(record)
    return out


class _TracedIterator(core.GrainIterator):
  """Tests only: appends each batch's example indices (padding excluded) to
  ``trace_dir/reads_process{i}.jsonl`` as ``{'split', 'batch', 'indices'}``."""

  def __init__(self, batches: Any, *, trace: str, **kwargs: Any):
    super().__init__(batches, **kwargs)
    self._trace = trace

  def __next__(self) -> dict[str, np.ndarray]:
    batch = super().__next__()
    indices = [int(i) for i in batch.pop('_index') if i >= 0]
    with open(self._trace, 'a') as f:
      f.write(json.dumps({'split': self._split, 'batch': self._next - 1,
                          'indices': indices}) + '\n')
    return batch


def _iterator(data_config: Mapping[str, Any], batches: Any, process_index: int,
              **kwargs: Any) -> core.GrainIterator:
  """A ``GrainIterator`` over ``batches`` (traced when ``data.trace_dir`` is set)."""
  num_workers, num_threads = core.worker_counts(data_config)
  trace_dir = str(core.config_get(data_config, 'trace_dir', ''))
  if not trace_dir:
    return core.GrainIterator(batches, num_workers=num_workers, num_threads=num_threads, **kwargs)
  trace = os.path.join(trace_dir, f'reads_process{process_index}.jsonl')
  return _TracedIterator(batches, trace=trace, num_workers=num_workers, num_threads=num_threads,
                         **kwargs)


def _fingerprint(spec: _Spec, kind: str, global_batch_size: int, process_index: int,
                 process_count: int, **extra: Any) -> dict[str, Any]:
  return {'kind': kind, 'name': 'synthetic', 'data_seed': spec.data_seed,
          'num_records': spec.num_train if kind == 'train' else spec.num_eval,
          'global_batch_size': global_batch_size, 'process_index': process_index,
          'process_count': process_count, **extra}


def make_train_iterator(data_config: Mapping[str, Any], global_batch_size: int,
                        process_index: int, process_count: int,
                        seed: int) -> core.GrainIterator:
  """The endless train stream of this process (order and sharding: :mod:`bat_jax.data.core`)."""
  spec = _Spec(data_config)
  index = core.train_source(spec.num_train, global_batch_size, process_index, process_count,
                            seed, None)
  trace = bool(core.config_get(data_config, 'trace_dir', ''))
  batches = core.train_batches(_TrainLoad(spec, int(seed), trace), index)
  return _iterator(data_config, batches, process_index, num_batches=None, split='train',
                   fingerprint=_fingerprint(spec, 'train', global_batch_size, process_index,
                                            process_count, seed=int(seed)),
                   info={'num_examples': spec.num_train, 'steps_per_epoch': index.steps,
                         'per_process_batch_size': index.b})


def make_eval_iterator(data_config: Mapping[str, Any], global_batch_size: int,
                       process_index: int, process_count: int) -> core.GrainIterator:
  """The eval set once, padded to whole global batches (``mask`` False on padding)."""
  spec = _Spec(data_config)
  b = core.process_batch_size(global_batch_size, process_count)
  rows, num_batches = core.eval_assignment(spec.num_eval, 1, b, process_index, process_count)
  trace = bool(core.config_get(data_config, 'trace_dir', ''))
  batches = core.eval_batches(_EvalLoad(spec, trace), rows, b)
  return _iterator(data_config, batches, process_index, num_batches=num_batches, split='eval',
                   fingerprint=_fingerprint(spec, 'eval', global_batch_size, process_index,
                                            process_count),
                   info={'num_examples': spec.num_eval, 'per_process_batch_size': b})
