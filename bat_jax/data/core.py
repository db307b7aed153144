"""The grain core every file-backed data set plugs into: order, sharding, collation, broken-file
report and one checkpointable iterator (numpy only in the per-element work).

A data set gives a record count and a per-element load function; this module does the rest:

* Training order (:class:`TrainSource`). Epoch ``e`` is a permutation of all records drawn from
  ``(seed, e)`` (identical on every host); its first ``steps_per_epoch * G`` positions are used
  (``G`` the global batch; the left-over differs per epoch, so every record is seen). Global
  step ``s`` is positions ``[s' G, (s' + 1) G)`` of epoch ``s // steps_per_epoch``
  (``s' = s mod steps_per_epoch``), and process ``p`` of ``P`` reads rows
  ``[p G / P, (p + 1) G / P)`` of it, so shards are disjoint and the global batch is the same row
  for row whatever the process count. The load function gets ``(epoch, position, record)`` and
  seeds its augmentation with ``np.random.default_rng([seed, epoch, position])``, so batches
  depend only on their index, never on workers, threads or processes.
* Evaluation (:func:`eval_assignment`): every process yields the same number of batches;
  padding rows carry index ``-1`` and the load function returns them with ``mask = False``.
* Broken files: a load function may add ``'_broken': ((path, reason), ...)`` to its element;
  :func:`collate` concatenates them and :class:`GrainIterator` moves them into this process's
  report (:func:`broken_files`).
* :class:`GrainIterator`: batches of a grain ``MapDataset``, checkpointable with ``get_state`` /
  ``set_state`` (grain's own state when the worker and process layout match, otherwise a restart
  at the saved batch index: the same batches, since they depend only on their index).
  Batching happens on the ``MapDataset`` (before ``mp_prefetch``), so worker ``w`` produces whole
  batches ``w, w + N, ...`` and the batch sequence is the same for any ``num_workers``.
"""

from __future__ import annotations

import collections
import sys
import threading
from typing import Any, Callable, Mapping, Sequence

import grain
import numpy as np
from absl import flags
from absl import logging

__all__ = ['config_get', 'config_require', 'worker_counts', 'process_batch_size',
           'record_broken', 'record_missing', 'broken_files', 'reset_broken_files',
           'epoch_permutation', 'TrainSource', 'train_source', 'train_position_order',
           'eval_assignment', 'first_readable', 'collate', 'train_batches', 'eval_batches',
           'GrainIterator', 'MAX_SUBSTITUTES']

MAX_SUBSTITUTES = 16  # training: tries of the next records before a broken run is an error
_STATE_VERSION = 1

# ----------------------------------------------------------------------------------------
# Config helpers (``config.data`` is a ConfigDict, a dict or an object with attributes).
# ----------------------------------------------------------------------------------------


def config_get(cfg: Any, name: str, default: Any = None) -> Any:
  """``cfg.name``, or ``default`` when the field is missing or None."""
  value = cfg.get(name, default) if hasattr(cfg, 'get') else getattr(cfg, name, default)
  return default if value is None else value


def config_require(cfg: Any, name: str) -> Any:
  """``cfg.name``; a ValueError naming ``config.data.<name>`` when it is missing (or an empty
  ``root``)."""
  value = config_get(cfg, name)
  if value is None or (name == 'root' and not value):
    raise ValueError(f'config.data.{name} is required')
  return value


def _ensure_absl_flags_parsed() -> None:
  """grain reads absl flags; outside ``absl.app.run`` they are unparsed (grain#1355)."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


def worker_counts(cfg: Any) -> tuple[int, int]:
  """(``num_workers`` grain worker processes, 0 = in-process; ``num_threads`` read threads per
  worker, at least 1) of ``config.data`` (defaults 0 and 2)."""
  return int(config_get(cfg, 'num_workers', 0) or 0), int(config_get(cfg, 'num_threads', 2) or 1)


def process_batch_size(global_batch_size: int, process_count: int) -> int:
  """This process's share of the global batch; a ValueError when it does not divide."""
  if global_batch_size % process_count:
    raise ValueError(f'global batch {global_batch_size} not divisible by the '
                     f'{process_count} processes')
  return global_batch_size // process_count


# ----------------------------------------------------------------------------------------
# Broken-file registry (main process; filled from the '_broken' entries of the batches).
# ----------------------------------------------------------------------------------------

_BROKEN_LOCK = threading.Lock()
_BROKEN: dict[str, dict] = {}


def record_broken(entries: Sequence[tuple[str, str]], split: str) -> None:
  """Adds ``(path, reason)`` entries to the report (a repeated path counts up)."""
  if not entries:
    return
  with _BROKEN_LOCK:
    for path, reason in entries:
      e = _BROKEN.get(path)
      if e is None:
        _BROKEN[path] = {'path': path, 'reason': reason, 'count': 1, 'split': split}
        logging.warning('undecodable video (%s): %s: %s', split, path, reason)
      else:
        e['count'] += 1


def record_missing(names_and_labels: Sequence[tuple[str, str]], split: str, where: str) -> None:
  """Listed records without a file: one report entry each (count 1, however many iterators
  list the split)."""
  with _BROKEN_LOCK:
    for name, label in names_and_labels:
      _BROKEN.setdefault(name, {'path': name,
                                'reason': f'annotated but no video file under {where}',
                                'count': 1, 'split': split, 'label': label})


def broken_files() -> list[dict]:
  """This process's undecodable files seen by any iterator so far, sorted by path:
  ``[{'path', 'reason', 'count', 'split'}]`` (count = times it had to be replaced/masked)."""
  with _BROKEN_LOCK:
    return [dict(_BROKEN[p]) for p in sorted(_BROKEN)]


def reset_broken_files() -> None:
  """Empties this process's report."""
  with _BROKEN_LOCK:
    _BROKEN.clear()


# ----------------------------------------------------------------------------------------
# Order and sharding.
# ----------------------------------------------------------------------------------------


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The record order of epoch ``epoch``: ``default_rng([seed, epoch]).permutation(n)``."""
  return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


class TrainSource:
  """Random-access sequence: element ``i`` of process ``p`` -> (epoch, position, record).

  Row ``r`` of this process's batch ``s`` is row ``p * B + r`` of global batch ``s``, i.e.
  position ``(s mod steps) * G + p * B + r`` of the permutation of epoch ``s // steps``.
  """

  def __init__(self, num_records: int, steps_per_epoch: int, batch: int, process_index: int,
               process_count: int, seed: int, num_epochs: int | None):
    self.num_records, self.steps, self.b = num_records, steps_per_epoch, batch
    self.p, self.G, self.seed = process_index, batch * process_count, seed
    self._len = sys.maxsize if num_epochs is None else num_epochs * steps_per_epoch * batch
    self._perms: collections.OrderedDict = collections.OrderedDict()

  def __getstate__(self):
    d = dict(self.__dict__)
    d['_perms'] = collections.OrderedDict()
    return d

  def __len__(self) -> int:
    return self._len

  def _perm(self, epoch: int) -> np.ndarray:
    perm = self._perms.get(epoch)
    if perm is None:
      perm = epoch_permutation(self.seed, epoch, self.num_records)
      self._perms[epoch] = perm
      while len(self._perms) > 2:
        self._perms.popitem(last=False)
    return perm

  def __getitem__(self, i: int) -> tuple[int, int, int]:
    if not 0 <= i < self._len:
      raise IndexError(i)
    step, row = divmod(int(i), self.b)
    epoch, step_in_epoch = divmod(step, self.steps)
    pos = step_in_epoch * self.G + self.p * self.b + row
    return epoch, pos, int(self._perm(epoch)[pos])


def train_source(num_records: int, global_batch_size: int, process_index: int,
                 process_count: int, seed: int, num_epochs: int | None,
                 what: str = 'examples') -> TrainSource:
  """This process's :class:`TrainSource` with ``num_records // global_batch_size`` steps per
  epoch; a ValueError when the split holds less than one global batch of ``what``."""
  b = process_batch_size(global_batch_size, process_count)
  steps = num_records // global_batch_size
  if steps < 1:
    raise ValueError(f'{num_records} training {what} < global batch {global_batch_size}')
  return TrainSource(num_records, steps, b, process_index, process_count, int(seed), num_epochs)


def train_position_order(num_records: int, global_batch_size: int, process_index: int,
                         process_count: int, seed: int, num_batches: int) -> np.ndarray:
  """Record indices of this process's first ``num_batches`` batches, (num_batches, B)."""
  b = process_batch_size(global_batch_size, process_count)
  steps = num_records // global_batch_size
  src = TrainSource(num_records, steps, b, process_index, process_count, seed, None)
  return np.asarray([src[i][2] for i in range(num_batches * b)]).reshape(num_batches, b)


def eval_assignment(num_videos: int, views: int, per_process_batch: int, process_index: int,
                    process_count: int) -> tuple[np.ndarray, int]:
  """Per-row (record or -1, view) of this process's eval stream and its number of batches:
  process ``p`` takes records ``p, p + P, ...``, each as ``views`` consecutive rows."""
  slots = -(-num_videos // process_count)
  videos = np.arange(process_index, slots * process_count, process_count)
  videos = np.where(videos < num_videos, videos, -1)
  rows = slots * views
  num_batches = -(-rows // per_process_batch)
  vid = np.full(num_batches * per_process_batch, -1, np.int64)
  view = np.zeros(num_batches * per_process_batch, np.int64)
  vid[:rows] = np.repeat(videos, views)
  view[:rows] = np.tile(np.arange(views), slots)
  return np.stack([vid, view], 1), num_batches


# ----------------------------------------------------------------------------------------
# Batches.
# ----------------------------------------------------------------------------------------


def first_readable(read: Callable[[int], Any], record: int, num_records: int,
                   errors: type[Exception] | tuple[type[Exception], ...],
                   what: str = 'unreadable records') -> tuple[Any, tuple[tuple[str, str], ...]]:
  """Training substitution of broken files: ``(read(r), broken)`` for the first of
  ``r = record, record + 1, ...`` (mod ``num_records``) whose ``read`` raises none of ``errors``
  (each has ``.path`` and ``.reason``); ``broken`` lists the ``(path, reason)`` skipped. After
  :data:`MAX_SUBSTITUTES` failures in a row a RuntimeError names them."""
  broken = []
  for k in range(MAX_SUBSTITUTES):
    try:
      return read((record + k) % num_records), tuple(broken)
    except errors as e:
      broken.append((e.path, e.reason))
  raise RuntimeError(f'{MAX_SUBSTITUTES} consecutive {what} from record {record} on: {broken}')


def collate(elements: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Stacks the elements' arrays; ``'_broken'`` entries are concatenated into one tuple."""
  out = {}
  for k in elements[0]:
    if k == '_broken':
      out[k] = tuple(x for e in elements for x in e[k])
    else:
      out[k] = np.stack([e[k] for e in elements])
  return out


def train_batches(load: Callable[[tuple[int, int, int]], dict], source: TrainSource
                  ) -> grain.MapDataset:
  """This process's training batches: ``load((epoch, position, record))`` per row."""
  _ensure_absl_flags_parsed()
  return (grain.MapDataset.source(source).map(load)
          .batch(source.b, drop_remainder=True, batch_fn=collate))


def eval_batches(load: Callable[[Any], dict], assignment: np.ndarray,
                 per_process_batch: int) -> grain.MapDataset:
  """This process's evaluation batches: ``load(assignment[i])`` per row."""
  _ensure_absl_flags_parsed()
  return (grain.MapDataset.source(assignment).map(load)
          .batch(per_process_batch, drop_remainder=False, batch_fn=collate))


# ----------------------------------------------------------------------------------------
# Checkpointable iterator.
# ----------------------------------------------------------------------------------------


class GrainIterator(grain.DatasetIterator):
  """Batches of a grain ``MapDataset``; checkpointable with ``get_state`` / ``set_state``.

  ``fingerprint`` must hold ``kind`` ('train' | 'eval'), ``process_index`` and
  ``process_count``; a saved state is accepted when every other field matches (and, for
  training, whatever the process layout). ``info`` becomes attributes (``steps_per_epoch``,
  ``num_examples``, ...).
  """

  def __init__(self, batches: grain.MapDataset, *, num_batches: int | None, num_workers: int,
               num_threads: int, split: str, fingerprint: dict, info: dict):
    super().__init__()
    self._batches = batches
    self._num_workers = num_workers
    self._num_threads = num_threads
    self._split = split
    self._fingerprint = fingerprint
    self.num_batches = num_batches  # None = infinite
    for k, v in info.items():
      setattr(self, k, v)
    self._offset = 0
    self._next = 0
    self._inner = self._build(0)

  def _build(self, offset: int):
    ds = self._batches[offset:] if offset else self._batches
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=self._num_threads,
                                              prefetch_buffer_size=max(1, self._num_threads)))
    if self._num_workers > 0:
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=self._num_workers,
                                                       per_worker_buffer_size=1))
    return iter(ds)

  def __next__(self):
    if self._closed:
      raise ValueError('iterator is closed')
    batch = next(self._inner)
    record_broken(batch.pop('_broken', ()), self._split)
    self._next += 1
    return batch

  def __len__(self):
    if self.num_batches is None:
      raise TypeError('infinite iterator')
    return self.num_batches

  def get_state(self) -> dict:
    return {
        'version': _STATE_VERSION,
        'next_batch': self._next,
        'offset': self._offset,
        'num_workers': self._num_workers,
        'fingerprint': dict(self._fingerprint),
        'grain': self._inner.get_state(),
    }

  def set_state(self, state: dict) -> None:
    """Restores ``state``; one without grain's state (the CIFAR iterator's former
    ``{'version', 'next_batch', 'fingerprint'}``) restarts at its batch."""
    if state.get('version') != _STATE_VERSION:
      raise ValueError(f'unknown data iterator state version {state.get("version")}')
    fp = state.get('fingerprint', {})
    elastic = ('process_index', 'process_count') if self._fingerprint['kind'] == 'train' else ()
    diff = {k: (fp.get(k), v) for k, v in self._fingerprint.items()
            if k not in elastic and fp.get(k) != v}
    if diff:
      raise ValueError(f'data iterator state from another pipeline: (saved, now) {diff}')
    same_layout = ('grain' in state and state.get('num_workers') == self._num_workers and
                   fp.get('process_index') == self._fingerprint['process_index'] and
                   fp.get('process_count') == self._fingerprint['process_count'])
    if same_layout:  # grain's own state
      if state['offset'] != self._offset:
        self._restart(state['offset'])
      self._inner.set_state(state['grain'])
    else:  # another worker / process count: batches depend only on their index
      self._restart(state['next_batch'])
    self._next = int(state['next_batch'])

  def _restart(self, offset: int) -> None:
    self._inner.close()
    self._offset = int(offset)
    self._inner = self._build(self._offset)

  def start_prefetch(self) -> None:
    self._inner.start_prefetch()

  def close(self) -> None:
    if not self._closed:
      self._closed = True
      self._inner.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass
