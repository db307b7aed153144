"""grain input pipelines for video classification (Kinetics layout; numpy-only workers).

The trainer calls::

    it = make_train_iterator(config.data, global_batch_size, process_index, process_count, seed)
    batch = next(it)            # {'video': uint8 (B, T, H, W, 3), 'label': i32 (B,)}
    state = it.get_state()      # JSON-serialisable; save with the checkpoint
    it.set_state(state)         # resume exactly (fresh iterator, same arguments)
    it.steps_per_epoch          # global steps per epoch
    broken_files()              # this process's undecodable videos, for the report file

    ev = make_eval_iterator(config.data, global_batch_size, process_index, process_count)
    for batch in ev: ...        # + 'mask' (B,) bool and 'video_index' (B,) i32; finite

Training order, sharding, collation, the broken-file report and the checkpointable iterator
are :mod:`bat_jax.data.core`'s (each clip's augmentation uses
``np.random.default_rng([seed, epoch, position])``, so batches do not depend on the number of
grain workers, threads or processes); this module lists the videos and decodes them.

Broken videos. A :class:`~bat_jax.data.decode.VideoDecodeError` (missing, zero-byte, truncated
beyond its index, not a video, no decodable frame) never stops training: the clip is replaced by
the next record in annotation order (deterministically; up to ``core.MAX_SUBSTITUTES`` tries) and
the failure travels with the batch back to the main process, where :func:`broken_files`
collects it (per path: reason, count, split). In evaluation a broken video yields zero frames
with ``mask = False`` (left out of the metrics) and is reported the same way. Annotated videos
that have no file at all are dropped when the split is listed and enter the same report (count
1). A decode that takes longer than ``data.decode_timeout_s`` (0: no limit) counts as broken too.
Videos shorter than the clip window are not broken: their frames loop. The trainer writes
the report to ``WORKDIR/broken_files_process<i>.json`` and logs the count.

Iterator state. ``get_state()`` returns ``{'next_batch', 'offset', 'num_workers', 'grain',
'fingerprint', ...}`` where ``grain`` is the grain ``DatasetIterator`` state; ``set_state``
restores it with grain's own ``set_state`` when the worker count matches, and otherwise
restarts the pipeline at batch ``next_batch`` (same batches: they depend only on the index),
so a run can also resume with another ``num_workers`` or process count. The iterator is a
``grain.DatasetIterator``, so grain's orbax handlers (``grain.checkpoint``) accept it.

Evaluation views. ``num_clips`` temporal clips x ``num_crops`` spatial crops per video, as
:mod:`bat_jax.data.views` defines them (clip ``k`` of ``K`` starts at
``round_half_up(k (n - window) / (K - 1))``, the centre clip when 1; crops: centre (1), left /
centre / right along the long side (3), 4 corners + centre x flip (10)); single-view (1 x 1) by
default; ``evaluate.py --protocol=30view`` asks for 10 x 3 with ``crop_size = eval_short_side``
(fully-convolutional testing, ``bat_supplementary.md`` §2) and ``250view`` for 25 x 10 at
``crop_size``. Process ``p`` evaluates videos ``p::P``; every process yields
``ceil(ceil(n / P) * views / B)`` batches, padded with ``mask = False`` rows, and all views of a
video come from the same process in consecutive rows (view ``v`` = clip ``v // num_crops``, crop
``v % num_crops``).

``data_config`` fields (``config.data``): root, num_frames, frame_stride, crop_size,
train_short_side (lo, hi inclusive), eval_short_side, num_workers, and optionally mean, std
(0-1 RGB; default ImageNet; read by the steps, which normalise the uint8 clips on the
device: :mod:`bat_jax.data.normalization`), train_augment ('scale_jitter', default, or
'multiscale_crop' with train_short_side (s, s): :func:`bat_jax.data.video.train_transform`),
random_flip (default True), train_split ('train'), eval_split ('val'), num_threads
(per-worker read threads, default 2), sampling ('dense', default: ``num_frames`` x
``frame_stride`` windows; 'segments': TSN segment sampling,
:func:`bat_jax.data.decode.segment_indices`, as RSA on Something-Something) and
no_flip_keywords (default (): training clips whose class name contains one of these words are
never flipped, :func:`no_flip_classes`).

No-flip rule (RSA supplement §1: "we do not flip videos of which action labels include 'left' or
'right' words"). A class is flip-forbidden when one of its name's words (the name lower-cased and
split at every non-alphanumeric character) equals a keyword, lower-cased. Whole words, not
substrings: 'upright' does not match 'right'. With ('left', 'right') on the 174 sorted
Something-Something V1 classes this gives the released code's fixed list (ops/transforms.py,
``GroupRandomHorizontalFlip2``: classes 86, 87, 93, 94, 166, 167 = pulling / pushing something
from left to right / right to left, turning the camera left / right while filming something).
Other clips are flipped with p = 0.5 when ``random_flip`` is on.
"""

from __future__ import annotations

import collections
import functools
import re
import threading
from typing import Any, Callable, Sequence

import numpy as np

from bat_jax.data import core, kinetics, multiview
from bat_jax.data.core import (GrainIterator, broken_files, config_get, config_require,
                               eval_assignment, reset_broken_files, train_position_order)
from bat_jax.data.decode import VideoDecodeError
from bat_jax.data.video import SAMPLINGS, check_train_augment, train_transform

__all__ = ['make_train_iterator', 'make_eval_iterator', 'broken_files', 'reset_broken_files',
           'train_position_order', 'eval_assignment', 'no_flip_classes', 'decode_within']

# ----------------------------------------------------------------------------------------
# Config helpers.
# ----------------------------------------------------------------------------------------


def _decode_timeout(data_config) -> float:
  value = config_get(data_config, 'decode_timeout_s', 0.0)
  if not isinstance(value, (int, float)) or value < 0:
    raise ValueError(f'config.data.decode_timeout_s={value!r}; allowed: seconds >= 0 '
                     '(0: no limit)')
  return float(value)


# ----------------------------------------------------------------------------------------
# Per-element work (runs in grain workers: numpy / PyAV only).
# ----------------------------------------------------------------------------------------


def no_flip_classes(class_names: Sequence[str], keywords: Sequence[str]) -> frozenset[int]:
  """Labels (indices into ``class_names``) whose name has a word equal to one of ``keywords``
  (case-insensitive whole words; the name is split at non-alphanumeric characters)."""
  words = {str(k).lower() for k in keywords}
  if not words:
    return frozenset()
  return frozenset(i for i, name in enumerate(class_names)
                   if words & set(re.split(r'[^0-9a-z]+', str(name).lower())))


def decode_within(timeout_s: float, path: str, decode: Callable[[], np.ndarray]) -> np.ndarray:
  """``decode()`` (of ``path``), or ``VideoDecodeError`` when it takes longer than ``timeout_s``
  (``data.decode_timeout_s``; <= 0: no limit): the video is then skipped and reported like a
  broken file. The slow decode runs on in its daemon thread and its result is dropped."""
  if timeout_s <= 0:
    return decode()
  result: dict[str, Any] = {}

  def run() -> None:
    try:
      result['value'] = decode()
    except BaseException as e:  # pylint: disable=broad-except
      result['error'] = e

  thread = threading.Thread(target=run, daemon=True)
  thread.start()
  thread.join(timeout_s)
  if thread.is_alive():
    raise VideoDecodeError(path, f'decode took longer than data.decode_timeout_s={timeout_s:g} s')
  if 'error' in result:
    raise result['error']
  return result['value']


def _label_array(records) -> np.ndarray:
  """The records' labels: int32 (N,) class indices, or float32 (N, K) multi-hot vectors."""
  labels = np.asarray([l for _, l in records])
  return labels.astype(np.int32) if labels.ndim == 1 else labels.astype(np.float32)


class _TrainLoad:
  """``window_labels`` (optional; Charades): ``(path, record, rng) -> (start, label)`` draws
  the dense window's first frame and gives the label of that window (replacing the record's)."""

  def __init__(self, paths: Sequence[str], labels: np.ndarray, seed: int, opts: dict,
               no_flip_labels: frozenset = frozenset(), decode_timeout_s: float = 0.0,
               window_labels: Callable | None = None):
    self.paths, self.labels, self.seed, self.opts = tuple(paths), labels, seed, opts
    self.no_flip_labels = frozenset(int(l) for l in no_flip_labels)
    self.decode_timeout_s = decode_timeout_s
    self.window_labels = window_labels

  def _clip(self, r: int, rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
    opts, label = self.opts, self.labels[r]
    if self.no_flip_labels and int(label) in self.no_flip_labels:
      opts = dict(opts, flip=False)
    if self.window_labels is not None:
      start, label = self.window_labels(self.paths[r], r, rng)
      opts = dict(opts, start=start)
    return r, label, decode_within(self.decode_timeout_s, self.paths[r],
                                   functools.partial(train_transform, self.paths[r], rng, **opts))

  def __call__(self, item):
    epoch, pos, rec = item
    rng = np.random.default_rng([self.seed, epoch, pos])
    (_, label, video), broken = core.first_readable(functools.partial(self._clip, rng=rng), rec,
                                                    len(self.paths), VideoDecodeError,
                                                    'undecodable videos')
    return {'video': video, 'label': label, '_broken': broken}


class _EvalLoad:
  """One view per element, cut from the video's clips decoded once
  (:func:`bat_jax.data.multiview.decode_eval_clips`): a video's views are consecutive rows, so
  a small per-process cache of the last videos (or their decode error) serves all of them."""

  _CACHE_VIDEOS = 2  # a video's views may straddle two batches read by two threads

  def __init__(self, paths, labels, opts: dict, num_clips: int, num_crops: int, shape,
               decode_timeout_s: float = 0.0):
    self.paths, self.labels, self.opts = tuple(paths), labels, opts
    self.num_clips, self.num_crops, self.shape = num_clips, num_crops, shape
    self.decode_timeout_s = decode_timeout_s
    self._init_cache()

  def _init_cache(self):
    self._cache: collections.OrderedDict = collections.OrderedDict()
    self._lock = threading.Lock()

  def __getstate__(self):
    state = dict(self.__dict__)
    del state['_cache'], state['_lock']
    return state

  def __setstate__(self, state):
    self.__dict__.update(state)
    self._init_cache()

  def _clips(self, vid: int):
    """uint8 (K, T, H, W, 3) clips of video ``vid``, or the VideoDecodeError it raised."""
    with self._lock:
      if vid in self._cache:
        self._cache.move_to_end(vid)
        return self._cache[vid]
    o = self.opts
    try:
      value = decode_within(self.decode_timeout_s, self.paths[vid], functools.partial(
          multiview.decode_eval_clips, self.paths[vid], num_frames=o['num_frames'],
          stride=o['stride'], num_clips=self.num_clips, short_side=o['short_side'],
          sampling=o['sampling']))
    except VideoDecodeError as e:
      value = e
    with self._lock:
      self._cache[vid] = value
      while len(self._cache) > self._CACHE_VIDEOS:
        self._cache.popitem(last=False)
    return value

  def __call__(self, item):
    vid, view = int(item[0]), int(item[1])
    broken = ()
    if vid >= 0:
      clips = self._clips(vid)
      if isinstance(clips, VideoDecodeError):
        broken = ((clips.path, clips.reason),)
      else:
        video = multiview.cut_view(clips, view // self.num_crops, view % self.num_crops,
                                   num_crops=self.num_crops, crop_size=self.opts['crop_size'])
        return {'video': video, 'label': self.labels[vid], 'mask': np.bool_(True),
                'video_index': np.int32(vid), '_broken': ()}
    return {'video': np.zeros(self.shape, np.uint8),
            'label': self.labels[vid] if vid >= 0 else np.zeros_like(self.labels[0]),
            'mask': np.bool_(False),
            'video_index': np.int32(vid), '_broken': broken}


# ----------------------------------------------------------------------------------------
# Public entry points.
# ----------------------------------------------------------------------------------------


def _load_records(data_config, split: str) -> kinetics.Split:
  root = config_require(data_config, 'root')
  sp = kinetics.load_split(root, split)
  if not sp.records:
    raise ValueError(f'no videos found for split {split!r} under {root!r}')
  core.record_missing([(f"{m['youtube_id']}_{m['time_start']:06d}_{m['time_end']:06d}",
                       m.get('label', '')) for m in sp.missing],
                      split, kinetics.find_split_dir(root, split) or root)
  return sp


def _records(data_config, split: str, records, class_names):
  """(records, class names, missing videos) of ``split`` under ``data_config.root``, or the
  given ``records`` (with ``class_names``, possibly None, and nothing missing)."""
  if records is None:
    sp = _load_records(data_config, split)
    return sp.records, sp.class_names, sp.missing
  return records, None if class_names is None else list(class_names), []


def _sampling(data_config) -> str:
  sampling = str(config_get(data_config, 'sampling', 'dense') or 'dense')
  if sampling not in SAMPLINGS:
    raise ValueError(f'config.data.sampling={sampling!r}; allowed: {list(SAMPLINGS)}')
  return sampling


def _common(data_config):
  return dict(num_frames=int(config_require(data_config, 'num_frames')),
              sampling=_sampling(data_config),
              stride=int(config_require(data_config, 'frame_stride')),
              crop_size=int(config_require(data_config, 'crop_size')))


def make_train_iterator(data_config, global_batch_size: int, process_index: int = 0,
                        process_count: int = 1, seed: int = 0, *,
                        num_epochs: int | None = None, records=None,
                        class_names: Sequence[str] | None = None,
                        window_labels: Callable | None = None) -> GrainIterator:
  """Infinite (or ``num_epochs``-long) iterator of training batches for this process.

  Batches: {'video': uint8 (B, T, crop, crop, 3), 'label': int32 (B,)} with
  ``B = global_batch_size // process_count``. Attributes: ``steps_per_epoch`` (global steps),
  ``num_examples``, ``class_names``, ``num_classes``, ``per_process_batch_size``, ``missing``
  (annotated videos without a file, see :class:`bat_jax.data.kinetics.Split`).
  ``records`` (list of (path, label)) overrides the records from ``data_config.root``;
  ``class_names`` then names their labels (needed for ``data_config.no_flip_keywords``).
  A record's label may be a multi-hot vector (batches then hold float32 (B, K) labels);
  ``window_labels`` (dense sampling only) labels each clip by its sampled window
  (:class:`bat_jax.data.charades.WindowLabels`).
  """
  split_name = config_get(data_config, 'train_split', 'train')
  records, class_names, missing = _records(data_config, split_name, records, class_names)
  no_flip_keywords = tuple(config_get(data_config, 'no_flip_keywords', ()) or ())
  if no_flip_keywords and class_names is None:
    raise ValueError('config.data.no_flip_keywords needs class names (pass class_names= with '
                     'records=)')
  no_flip = no_flip_classes(class_names, no_flip_keywords) if no_flip_keywords else frozenset()
  n = len(records)
  source = core.train_source(n, global_batch_size, process_index, process_count, seed,
                             num_epochs, 'videos')
  b, steps = source.b, source.steps
  opts = _common(data_config)
  lo, hi = (int(x) for x in config_require(data_config, 'train_short_side'))
  if not opts['crop_size'] <= lo <= hi:
    raise ValueError(f'need crop_size <= train_short_side[0] <= train_short_side[1], got '
                     f'{opts["crop_size"]}, ({lo}, {hi})')
  augment = str(config_get(data_config, 'train_augment', 'scale_jitter'))
  check_train_augment(augment, (lo, hi))
  opts.update(short_side_range=(lo, hi), flip=bool(config_get(data_config, 'random_flip', True)),
              augment=augment)
  if window_labels is not None and opts['sampling'] != 'dense':
    raise ValueError(f"config.data.sampling={opts['sampling']!r}: window labels need 'dense'")
  paths = [p for p, _ in records]
  labels = _label_array(records)
  ds = core.train_batches(
      _TrainLoad(paths, labels, int(seed), opts, no_flip, _decode_timeout(data_config),
                 window_labels), source)
  num_workers, num_threads = core.worker_counts(data_config)
  fingerprint = {'kind': 'train', 'seed': int(seed), 'global_batch_size': global_batch_size,
                 'num_records': n, 'process_index': process_index,
                 'process_count': process_count}
  info = {'steps_per_epoch': steps, 'num_examples': n, 'class_names': class_names,
          'missing': missing,
          'num_classes': len(class_names) if class_names else None,
          'per_process_batch_size': b, 'no_flip_labels': tuple(sorted(no_flip))}
  return GrainIterator(ds, num_batches=None if num_epochs is None else num_epochs * steps,
                       num_workers=num_workers, num_threads=num_threads, split=split_name,
                       fingerprint=fingerprint, info=info)


def make_eval_iterator(data_config, global_batch_size: int, process_index: int = 0,
                       process_count: int = 1, *, num_clips: int = 1, num_crops: int = 1,
                       crop_size: int | None = None, frame_size: Sequence[int] | None = None,
                       records=None) -> GrainIterator:
  """Finite, deterministic evaluation iterator for this process (one pass).

  Batches: {'video', 'label', 'mask' bool (B,), 'video_index' int32 (B,) (-1 = padding)}.
  Every process yields ``len(iterator)`` batches. ``crop_size`` defaults to
  ``data_config.crop_size`` (use ``eval_short_side`` for fully-convolutional 3-crop testing);
  ``num_crops`` is 1, 3 or 10 (:func:`bat_jax.data.views.crop_box`). ``frame_size`` ``(H, W)``:
  frames are resized to exactly that size instead of to the short side ``eval_short_side``
  (``--protocol=rsa``: 240 x 320, ``rsa_neurips2021_supplementary.md`` §1 "Testing").
  Attributes: ``num_batches``, ``num_examples`` (videos), ``num_views``, ``class_names``,
  ``num_classes``, ``per_process_batch_size``, ``missing``.
  """
  split_name = config_get(data_config, 'eval_split', 'val')
  records, class_names, missing = _records(data_config, split_name, records, None)
  n = len(records)
  b = core.process_batch_size(global_batch_size, process_count)
  views = int(num_clips) * int(num_crops)
  opts = _common(data_config)
  if crop_size is not None:
    opts['crop_size'] = int(crop_size)
  if frame_size is None:
    opts['short_side'] = int(config_require(data_config, 'eval_short_side'))
    if opts['short_side'] < opts['crop_size']:
      raise ValueError(f'eval_short_side {opts["short_side"]} < crop {opts["crop_size"]}')
  else:
    opts['short_side'] = tuple(int(x) for x in frame_size)
    if len(opts['short_side']) != 2 or min(opts['short_side']) < opts['crop_size']:
      raise ValueError(f'frame_size {tuple(frame_size)}: need (H, W) with both >= the crop '
                       f'{opts["crop_size"]}')
  assignment, num_batches = eval_assignment(n, views, b, process_index, process_count)
  paths = [p for p, _ in records]
  labels = _label_array(records)
  shape = (opts['num_frames'], opts['crop_size'], opts['crop_size'], 3)
  ds = core.eval_batches(_EvalLoad(paths, labels, opts, int(num_clips), int(num_crops), shape,
                                  _decode_timeout(data_config)), assignment, b)
  num_workers, num_threads = core.worker_counts(data_config)
  fingerprint = {'kind': 'eval', 'global_batch_size': global_batch_size, 'num_records': n,
                 'views': views, 'process_index': process_index,
                 'process_count': process_count}
  info = {'num_examples': n, 'num_views': views, 'class_names': class_names,
          'missing': missing, 'num_classes': len(class_names) if class_names else None,
          'per_process_batch_size': b}
  return GrainIterator(ds, num_batches=num_batches, num_workers=num_workers,
                       num_threads=num_threads, split=split_name, fingerprint=fingerprint,
                       info=info)
