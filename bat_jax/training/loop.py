"""The training loop and checkpoint evaluation behind ``train.py`` and ``evaluate.py``.

``train_and_evaluate(config, workdir)``:

1. validates the config (``validate_config``: cheap, before any device, data or compile work);
2. builds the mesh, the data iterators, the schedule (epochs -> steps from the train-set size the
   iterator reports, or ``config.steps_per_epoch`` / ``config.num_train_steps``);
3. resumes from the latest checkpoint in ``WORKDIR/checkpoints`` (state, RNG, data-iterator
   state, the metrics of the unlogged window) or initialises: from ``config.init_from`` as the
   released ``--soft_resume`` (what fits loads, the rest keeps its fresh initialisation;
   ``WORKDIR/init_report.json`` lists which), or at random (``''``; a video model needs
   ``'scratch'`` said explicitly, ``validate_config``);
4. trains; every ``log_every_steps`` writes a metrics line, every ``eval_every_*`` evaluates clip
   top-1 on the eval iterator, every ``checkpoint_every_steps`` saves asynchronously; the last
   step always evaluates and saves;
5. on SIGTERM (or, multi-process, jax's preemption sync point) saves the current step and stops.

A resumed run reproduces an uninterrupted one bit for bit (params and ``metrics.jsonl``):
dropout keys are ``fold_in(rng, step)``, the data iterator restarts from its saved state, and the
steps since the last metrics line are carried in the checkpoint.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import json
import math
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from bat_jax import build_model
from bat_jax.models.registry import is_video
from bat_jax.data import views
from bat_jax.data.registry import DATA_SOURCES, data_module
from bat_jax.training import mesh as mesh_lib
from bat_jax.training import faults
from bat_jax.training import optim
from bat_jax.training import state as state_lib
from bat_jax.training import steps as steps_lib
from bat_jax.training.checkpoint import (CheckpointMismatchError, Checkpointer,
                                         load_init_variables, resolve_state_dir)
from bat_jax.training.metrics import MetricsWriter

INIT_FROM_SCRATCH = 'scratch'  # config.init_from: random weights, said explicitly
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: "stopped early, resume me"
_PAUSE_ENV = 'BAT_JAX_TEST_PAUSE_AT_STEP'  # tests only, see _maybe_pause


class ConfigError(ValueError):
  """A config field has a value the run cannot use; the message names the field."""


# ---------------------------------------------------------------------------------------------
# Config validation (no devices, no data reading beyond a directory check, no compilation).

_REQUIRED = ('seed', 'model', 'data', 'global_batch_size', 'num_epochs', 'optimizer', 'momentum',
             'base_learning_rate', 'lr_base_batch_size', 'schedule', 'warmup_epochs',
             'lr_decay_epochs', 'lr_decay_factor', 'weight_decay', 'weight_decay_on',
             'grad_clip_norm', 'label_smoothing')
_DATA_DIR_FIELDS = {'root': 'the data set folder (annotations + train/ val/); for the toy set run '
                            '`python -m bat_jax.data.toy_video --out data/toy_video` and pass '
                            '--config.data.root=data/toy_video',
                    'data_dir': 'the tfds data dir holding the data set'}
# Data sets that read only one of the folder fields (the others may stay empty in the config).
_DATA_DIR_FIELDS_BY_NAME = {'imagenet2012': ('data_dir',), 'imagenet_folder': ('root',)}


# Numeric fields: (dotted name, test, allowed values); a field the config lacks is not checked.
_RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ('base_learning_rate', lambda v: v >= 0, '>= 0'),
    ('momentum', lambda v: 0 <= v < 1, '[0, 1)'),
    ('weight_decay', lambda v: v >= 0, '>= 0'),
    ('grad_clip_norm', lambda v: v >= 0, '>= 0 (0: off)'),
    ('lr_decay_factor', lambda v: v > 0, '> 0'),
    ('log_every_steps', lambda v: v > 0, '> 0'),
    ('keep_checkpoints', lambda v: v >= 0, '>= 0 (0: keep all)'),
    ('checkpoint_every_steps', lambda v: v >= -1, '> 0, or 0 / -1 (only at the end)'),
    ('eval_batch_size', lambda v: v == -1 or v > 0, '-1 (global_batch_size) or > 0'),
    ('eval_every_steps', lambda v: v >= -1, '> 0, or 0 / -1 (eval_every_epochs)'),
    ('model.width', lambda v: v > 0, '> 0'),
    ('model.num_classes', lambda v: v > 0, '> 0'),
    ('model.dropout_rate', lambda v: 0 <= v < 1, '[0, 1)'),
    ('model.input_size', lambda v: all(int(d) > 0 for d in v), 'positive sizes'),
)


def _check_ranges(config: ml_collections.ConfigDict, training: bool) -> None:
  for name, ok, allowed in _RANGES:
    if not training and not name.startswith('model.'):
      continue
    node: Any = config
    for part in name.split('.'):
      node = node.get(part) if hasattr(node, 'get') else None
    if node is not None and not ok(node):
      raise ConfigError(f'config.{name}={node!r}; allowed: {allowed}')


def _get(config: ml_collections.ConfigDict, name: str, default: Any) -> Any:
  value = config.get(name, default)
  return default if value is None else value


def validate_config(config: ml_collections.ConfigDict, *, training: bool = True) -> None:
  """Raises ``ConfigError`` naming the field and its allowed values."""
  if training:
    missing = [f for f in _REQUIRED if f not in config]
    if missing:
      raise ConfigError(f'config lacks field(s) {missing}; start from configs/base_imagenet.py or '
                        'configs/base_kinetics.py')
  _check_ranges(config, training)
  try:
    build_model(config.model)
  except ValueError as e:  # build_model's messages name the model.* field
    raise ConfigError(str(e)) from None
  _validate_data(config.data)
  if not training:
    return
  if config.optimizer not in optim.OPTIMIZERS:
    raise ConfigError(f'config.optimizer={config.optimizer!r}; allowed: {list(optim.OPTIMIZERS)}')
  if config.schedule not in optim.SCHEDULES:
    raise ConfigError(f'config.schedule={config.schedule!r}; allowed: {list(optim.SCHEDULES)}')
  if _get(config, 'cosine_span', 'after_warmup') not in optim.COSINE_SPANS:
    raise ConfigError(f'config.cosine_span={config.cosine_span!r}; allowed: '
                      f'{list(optim.COSINE_SPANS)}')
  if config.weight_decay_on not in optim.WEIGHT_DECAY_ON:
    raise ConfigError(f'config.weight_decay_on={config.weight_decay_on!r}; allowed: '
                      f'{list(optim.WEIGHT_DECAY_ON)}')
  fault_limits = tuple(f for f in ('max_nonfinite_steps', 'max_failed_saves') if f in config)
  for field in ('global_batch_size', 'lr_base_batch_size') + fault_limits:
    if not isinstance(config[field], int) or config[field] <= 0:
      raise ConfigError(f'config.{field}={config[field]!r}; allowed: positive integers')
  if _get(config, 'num_train_steps', -1) <= 0 and not config.num_epochs > 0:
    raise ConfigError(f'config.num_epochs={config.num_epochs!r} must be > 0 (or set '
                      'config.num_train_steps > 0)')
  decay = list(config.lr_decay_epochs)
  if any(e < 0 for e in decay) or decay != sorted(decay):
    raise ConfigError(f'config.lr_decay_epochs={tuple(decay)}; allowed: increasing epochs >= 0')
  group = _get(config.model, 'bn_group_size', 0)
  if group and config.global_batch_size % group:
    raise ConfigError(f'config.model.bn_group_size={group} must divide '
                      f'config.global_batch_size={config.global_batch_size} (0: BatchNorm '
                      'statistics over the whole batch)')
  bias_lr_mult = _get(config, 'bias_lr_mult', 1.0)
  if isinstance(bias_lr_mult, bool) or not isinstance(bias_lr_mult, (int, float)) or \
      bias_lr_mult <= 0:
    raise ConfigError(f'config.bias_lr_mult={bias_lr_mult!r}; allowed: a number > 0 (1: biases '
                      'share the learning rate; 2: the released video code)')
  if not 0.0 <= config.label_smoothing < 1.0:
    raise ConfigError(f'config.label_smoothing={config.label_smoothing}; allowed: [0, 1)')
  if config.warmup_epochs < 0:
    raise ConfigError(f'config.warmup_epochs={config.warmup_epochs}; allowed: >= 0')
  granularity = _get(config, 'warmup_granularity', 'step')
  if granularity not in optim.WARMUP_GRANULARITY:
    raise ConfigError(f'config.warmup_granularity={granularity!r}; allowed: '
                      f'{list(optim.WARMUP_GRANULARITY)}')
  if granularity == 'epoch' and config.warmup_epochs != int(config.warmup_epochs):
    raise ConfigError(f"config.warmup_epochs={config.warmup_epochs}: warmup_granularity='epoch' "
                      'needs a whole number of epochs')
  start_factor = _get(config, 'warmup_start_factor', 0.0)
  if not isinstance(start_factor, (int, float)) or not 0.0 <= start_factor <= 1.0:
    raise ConfigError(f'config.warmup_start_factor={start_factor!r}; allowed: [0, 1] (the '
                      'warm-up starts at this fraction of the peak lr)')
  _validate_init_from(config)


def _validate_init_from(config: ml_collections.ConfigDict) -> None:
  """Video recipes start from ImageNet weights (every paper does; the released BAT video script
  passes ``--resume <ImageNet checkpoint> --soft_resume``): an empty ``init_from`` stops them;
  ``'scratch'`` says random weights are meant."""
  init_from = _get(config, 'init_from', '')
  if init_from == INIT_FROM_SCRATCH:
    return
  if not init_from:
    if is_video(config.model):
      raise ConfigError(
          f'config.init_from is empty, but {config.model.name} is a video model: the papers '
          'initialise video models from ImageNet weights. Get them by training an ImageNet '
          'config here (configs/imagenet_r50*.py; docs/recipes.md says which one fits which '
          'video config) or by importing torchvision / the authors\' released ImageNet '
          'checkpoints with `python -m bat_jax.tools.import_torch`, then pass '
          '--config.init_from=<that workdir>; or pass --config.init_from=scratch to train from '
          'random weights.')
    return
  try:
    resolve_state_dir(init_from)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _validate_data(data: ml_collections.ConfigDict) -> None:
  name = data.get('name')
  scale = data.get('random_resized_crop_scale')
  if scale is not None and not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
    raise ConfigError(f'config.data.random_resized_crop_scale={tuple(scale)}; allowed: (lo, hi) '
                      'area fractions with 0 < lo <= hi (hi may exceed 1, as the released SNL '
                      'code: such tries do not fit and are redrawn)')
  if name not in DATA_SOURCES:
    raise ConfigError(f'config.data.name={name!r} is not a known data set; allowed: '
                      f'{sorted(DATA_SOURCES)}')
  if importlib.util.find_spec(DATA_SOURCES[name]) is None:
    raise ConfigError(f'config.data.name={name!r}: its input pipeline {DATA_SOURCES[name]} is '
                      'not implemented yet; allowed now: ' + str(sorted(
                          n for n, m in DATA_SOURCES.items() if importlib.util.find_spec(m))))
  if name == 'synthetic':
    for field in ('num_classes', 'crop_size', 'num_train_examples', 'num_eval_examples'):
      if not isinstance(data.get(field), int) or data.get(field) <= 0:
        raise ConfigError(f'config.data.{field}={data.get(field)!r}; allowed: positive integers')
    return
  for field in _DATA_DIR_FIELDS_BY_NAME.get(name, tuple(_DATA_DIR_FIELDS)):
    what = _DATA_DIR_FIELDS[field]
    if field in data or name in _DATA_DIR_FIELDS_BY_NAME:
      value = data.get(field)
      if not value:
        raise ConfigError(f'config.data.{field} is empty: set it to {what}')
      if not os.path.isdir(value):
        raise ConfigError(f'config.data.{field}={value!r} is not a directory: set it to {what}')


def _check_devices(config: ml_collections.ConfigDict) -> None:
  try:
    mesh_lib.check_batch_divisible(config.global_batch_size)
    group = _get(config.model, 'bn_group_size', 0)
    per_process = config.global_batch_size // jax.process_count()
    if group and per_process % group:
      raise ConfigError(f'config.model.bn_group_size={group} must divide the per-process batch '
                        f'{per_process} (global_batch_size {config.global_batch_size} over '
                        f'{jax.process_count()} processes), so no BatchNorm group spans two hosts')
    if _get(config, 'eval_batch_size', -1) > 0:
      mesh_lib.check_batch_divisible(config.eval_batch_size, 'eval_batch_size')
  except ValueError as e:
    raise ConfigError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# Data sources.


def _eval_batch_size(config: ml_collections.ConfigDict) -> int:
  size = _get(config, 'eval_batch_size', -1)
  return size if size > 0 else config.global_batch_size


# ---------------------------------------------------------------------------------------------
# Evaluation protocols (``evaluate.py --protocol``; bat_jax/data/views.py):
#   clip     one clip (or image) per example as the eval iterator gives it (centre clip, centre
#            crop): top-1, top-5, mean per-class accuracy, loss;
#   30view   10 clips x 3 crops of data.eval_short_side^2 (fully convolutional), softmax averaged
#            per video;
#   250view  25 clips x 10 crops (4 corners + centre, x flip) of data.crop_size^2;
#   imagenet single centre crop (resize data.eval_resize, crop data.image_size): top-1 / top-5.


class _Progress:
  """A progress bar with rate and ETA on stderr (process 0 only): redrawn in place on a terminal,
  one line per ~10% otherwise (logs)."""

  def __init__(self, total: int, label: str, enabled: bool = True):
    self.total, self.label, self.done = max(int(total), 1), label, 0
    self.enabled = enabled and jax.process_index() == 0
    self.tty = self.enabled and sys.stderr.isatty()
    self.t0 = time.perf_counter()
    self._last_draw = 0.0
    self._last_decile = -1

  @staticmethod
  def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'

  def update(self, n: int = 1) -> None:
    self.done += n
    if not self.enabled:
      return
    now = time.perf_counter()
    decile = 10 * self.done // self.total
    last = self.done >= self.total
    if self.tty and not last and now - self._last_draw < 0.2:
      return
    if not self.tty and not last and decile == self._last_decile:
      return
    self._last_draw, self._last_decile = now, decile
    elapsed = now - self.t0
    rate = self.done / elapsed if elapsed > 0 else 0.0
    eta = (self.total - self.done) / rate if rate > 0 else 0.0
    filled = int(30 * min(self.done, self.total) / self.total)
    line = (f'{self.label} [{"#" * filled}{"." * (30 - filled)}] {self.done}/{self.total} '
            f'batches, {rate:.2f} batches/s, elapsed {self._fmt(elapsed)}, ETA {self._fmt(eta)}')
    sys.stderr.write(('\r' + line) if self.tty else line + '\n')
    sys.stderr.flush()

  def close(self) -> None:
    if self.tty:
      sys.stderr.write('\n')
      sys.stderr.flush()


def evaluate_clip(config: ml_collections.ConfigDict, model: Any, variables: Any,
                  mesh: jax.sharding.Mesh, eval_step: Callable[..., Any] | None = None, *,
                  progress: bool = False,
                  after_batch: Callable[[], None] | None = None) -> dict[str, float]:
  """Clip-level top-1 / top-5 / mean per-class accuracy / loss over the eval iterator
  (``after_batch``: called after each batch; the fault tests' hook)."""
  num_classes = int(config.model.num_classes)
  eval_step = eval_step or steps_lib.make_eval_step(model, mesh, num_classes)
  it = data_module(config.data).make_eval_iterator(
      config.data, _eval_batch_size(config), jax.process_index(), jax.process_count())
  totals: dict[str, np.ndarray] | None = None
  bar = _Progress(_num_batches(it), 'eval clip', progress)
  try:
    for batch in it:
      sums = eval_step(variables, mesh_lib.global_batch(batch, mesh))
      sums = {k: np.asarray(v, np.float64) for k, v in jax.device_get(sums).items()}
      totals = sums if totals is None else {k: totals[k] + sums[k] for k in totals}
      bar.update()
      if after_batch is not None:
        after_batch()
  finally:
    bar.close()
    _close(it)
  if totals is None or totals['count'] == 0:
    raise ValueError('the eval iterator gave no examples')
  count = totals['count']
  seen = totals['class_count'] > 0
  return {
      'top1': float(totals['top1'] / count),
      'top5': float(totals['top5'] / count),
      'mean_class_accuracy': float(np.mean(totals['class_top1'][seen] /
                                           totals['class_count'][seen])),
      'loss': float(totals['loss'] / count),
      'num_examples': int(count),
  }


def _num_batches(iterator: Any) -> int:
  try:
    return len(iterator)
  except TypeError:
    return int(getattr(iterator, 'num_batches', 0) or 0)


def _close(iterator: Any) -> None:
  """Stops an iterator's workers / threads (grain iterators have ``close``)."""
  if hasattr(iterator, 'close'):
    iterator.close()


def _local_rows(x: jax.Array) -> np.ndarray:
  """This process's rows of a global array sharded over ``'data'``, in order."""
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  rows, seen = [], set()
  for s in shards:
    start = s.index[0].start or 0
    if start not in seen:  # (a replicated axis would repeat rows)
      seen.add(start)
      rows.append(np.asarray(s.data))
  return np.concatenate(rows)


def _sum_over_processes(sums: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  if jax.process_count() == 1:
    return sums
  keys = sorted(sums)
  flat = np.concatenate([np.atleast_1d(np.asarray(sums[k], np.float64)) for k in keys])
  # Every sum is a count: gather int32 (exact; jax without x64 would make float64 float32).
  gathered = multihost_utils.process_allgather(np.rint(flat).astype(np.int32))
  total = np.asarray(gathered, np.int64).sum(axis=0).astype(np.float64)
  out, i = {}, 0
  for k in keys:
    n = np.atleast_1d(sums[k]).size
    out[k] = total[i:i + n] if np.ndim(sums[k]) else total[i]
    i += n
  return out


def _require_view_source(config: ml_collections.ConfigDict, protocol: str) -> Any:
  module = data_module(config.data)
  params = inspect.signature(module.make_eval_iterator).parameters
  if not {'num_clips', 'num_crops', 'crop_size'} <= set(params):
    raise ConfigError(f'--protocol={protocol} needs a video data set read by '
                      f'bat_jax.data.pipeline (kinetics400, mini_kinetics200, toy_video); '
                      f'config.data.name={config.data.name!r}')
  return module


def predict_views(config: ml_collections.ConfigDict, model: Any, variables: Any,
                  mesh: jax.sharding.Mesh, spec: views.ViewSpec, *, progress: bool = False,
                  label: str = 'eval') -> tuple[views.ViewAccumulator, dict[str, Any]]:
  """Runs the model on every view of this process's videos; returns the per-video accumulated
  predictions (this process's videos only) and facts about the run (sizes, videos)."""
  data_cfg = config.data
  module = _require_view_source(config, label)
  crop_size = int(data_cfg[spec.crop])
  short_side = int(data_cfg.eval_short_side)
  it = module.make_eval_iterator(data_cfg, _eval_batch_size(config), jax.process_index(),
                                 jax.process_count(), num_clips=spec.num_clips,
                                 num_crops=spec.num_crops, crop_size=crop_size)
  predict = steps_lib.make_predict_step(model, mesh)
  acc = views.ViewAccumulator(int(config.model.num_classes))
  logging.info('%s over %d videos', views.describe(label, spec, crop_size, short_side),
               it.num_examples)
  bar = _Progress(_num_batches(it), f'eval {label}', progress)
  pending = None  # (logits on device, host batch): fetched after the next batch is dispatched
  try:
    for batch in it:
      key = steps_lib.input_key(batch)
      logits = predict(variables, mesh_lib.global_batch({key: batch[key]}, mesh))
      if pending is not None:
        acc.add(_local_rows(pending[0]), pending[1]['label'], pending[1]['video_index'],
                pending[1]['mask'])
        bar.update()
      pending = (logits, batch)
    if pending is not None:
      acc.add(_local_rows(pending[0]), pending[1]['label'], pending[1]['video_index'],
              pending[1]['mask'])
      bar.update()
  finally:
    bar.close()
    _close(it)
  info = {'num_videos': int(it.num_examples), 'crop_size': crop_size, 'short_side': short_side,
          'num_clips': spec.num_clips, 'num_crops': spec.num_crops}
  return acc, info


def evaluate_views(config: ml_collections.ConfigDict, model: Any, variables: Any,
                   mesh: jax.sharding.Mesh, *, protocol: str = '30view',
                   progress: bool = False) -> dict[str, Any]:
  """Video-level top-1 / top-5 / mean per-class accuracy of ``protocol`` (a key of
  ``views.PROTOCOL_VIEWS``): the softmax of every view, averaged per video. Also reports the
  logit-averaged top-1 (the released code's aggregation) and how many videos had no decodable
  view (left out, listed in the broken-file report)."""
  spec = views.PROTOCOL_VIEWS[protocol]
  acc, info = predict_views(config, model, variables, mesh, spec, progress=progress,
                            label=protocol)
  num_classes = int(config.model.num_classes)
  labels = acc.labels()
  sums = views.video_metric_sums(acc.mean_probs(), labels, num_classes)
  by_logit = views.video_metric_sums(acc.mean_logits(), labels, num_classes)
  counts = acc.view_counts()
  sums.update({'logit_top1': by_logit['top1'], 'logit_top5': by_logit['top5'],
               'views': np.float64(counts.sum()),
               'partial': np.float64((counts < spec.num_views).sum())})
  sums = _sum_over_processes(sums)
  if sums['count'] == 0:
    raise ValueError('no video of the eval set could be decoded')
  result: dict[str, Any] = views.metrics_from_sums(sums)
  count = float(sums['count'])
  result.update({
      'top1_logit_average': float(sums['logit_top1'] / count),
      'top5_logit_average': float(sums['logit_top5'] / count),
      'num_examples': int(count),
      'num_videos_skipped': info['num_videos'] - int(count),
      'num_videos_partial_views': int(sums['partial']),
      'num_views': int(sums['views']),
      'views_per_video': spec.num_views,
      **info,
  })
  return result


def evaluate_imagenet(config: ml_collections.ConfigDict, model: Any, variables: Any,
                      mesh: jax.sharding.Mesh, *, progress: bool = False) -> dict[str, float]:
  """Single centre crop (resize ``data.eval_resize``, crop ``data.image_size``): top-1 / top-5."""
  if config.data.name not in ('imagenet2012', 'imagenet_folder'):
    raise ConfigError(f'--protocol=imagenet needs config.data.name imagenet2012 or '
                      f'imagenet_folder, not {config.data.name!r}; use --protocol=clip')
  return evaluate_clip(config, model, variables, mesh, progress=progress)


PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {
    'clip': evaluate_clip,
    '30view': functools.partial(evaluate_views, protocol='30view'),
    '250view': functools.partial(evaluate_views, protocol='250view'),
    'imagenet': evaluate_imagenet,
}


# ---------------------------------------------------------------------------------------------
# Preemption.


class PreemptionWatcher:
  """Single process: a SIGTERM handler sets a flag. Multi-process: jax's preemption sync manager
  (which catches SIGTERM itself) says at which step every process stops together."""

  def __init__(self) -> None:
    self.signalled = False
    self._multi = jax.process_count() > 1
    self._previous = None
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum: int, frame: Any) -> None:
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint at the end of the current step')
    self.signalled = True

  def reached(self, step: int) -> bool:
    if self._multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signalled

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _maybe_pause(step: int, workdir: str, ckpt: Checkpointer, watcher: PreemptionWatcher) -> None:
  """Tests only: with ``BAT_JAX_TEST_PAUSE_AT_STEP=k``, after step k is logged and earlier
  checkpoints are on disk, write ``WORKDIR/paused_at_k`` and wait (until SIGTERM or a kill). A
  second run over the same workdir (the marker exists) does not pause, so a test can restart
  with the identical command."""
  if os.environ.get(_PAUSE_ENV) != str(step) or jax.process_count() > 1:
    return
  marker = os.path.join(workdir, f'paused_at_{step}')
  if os.path.exists(marker):
    return
  ckpt.wait_until_finished()
  with open(marker, 'w') as f:
    f.write(str(os.getpid()))
  while not watcher.signalled:
    time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# Training.


def _write_broken_files(data: Any, workdir: str) -> None:
  """The pipeline's undecodable or missing inputs (replaced in training, masked in eval), one file
  per process: ``WORKDIR/broken_files_process<i>.json``, a list of ``{path, reason, count,
  split}``. A resumed run (or ``evaluate.py``) adds to the entries already there (counts summed);
  the registry is then emptied so that nothing is counted twice."""
  broken = data.broken_files() if hasattr(data, 'broken_files') else []
  if not broken:
    return
  path = os.path.join(workdir, f'broken_files_process{jax.process_index()}.json')
  merged: dict[tuple[str, str], dict[str, Any]] = {}
  if os.path.exists(path):
    try:
      with open(path) as f:
        for e in json.load(f):
          merged[(e['path'], e.get('split', ''))] = e
    except (OSError, ValueError, KeyError, TypeError):
      logging.warning('could not read %s: rewriting it', path)
  for e in broken:
    key = (e['path'], e.get('split', ''))
    if key in merged:
      merged[key] = {**merged[key], 'count': int(merged[key].get('count', 0)) + int(e['count'])}
    else:
      merged[key] = dict(e)
  entries = [merged[k] for k in sorted(merged)]
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(entries, f, indent=2)
  os.replace(tmp, path)
  if hasattr(data, 'reset_broken_files'):
    data.reset_broken_files()
  logging.warning('%d undecodable or missing inputs this run (%d in all), listed in %s',
                  len(broken), len(entries), path)


def _mean(values: list[float]) -> float:
  return float(np.mean(np.asarray(values, np.float64)))


def _settle(ckpt: Checkpointer, failures: faults.SaveFailures, final: bool = False) -> None:
  """Waits for the save in flight and counts its outcome; a failed final save stops the run."""
  outcome = ckpt.settle()
  if outcome is None:
    return
  step, error = outcome
  if error is None:
    failures.succeeded()
    return
  failures.failed(step, error, ckpt.describe_latest(), final=final)


def _save(ckpt: Checkpointer, failures: faults.SaveFailures, step: int, state: Any,
          data_state: Any, meta: dict[str, Any]) -> None:
  """Saves ``step`` after the previous save is settled; a failed write (a full disk) is logged and
  counted (``faults.SaveFailures``), and training goes on."""
  _settle(ckpt, failures)
  try:
    ckpt.save(step, state, data_state, meta)
  except Exception as e:  # pylint: disable=broad-except
    failures.failed(step, e, ckpt.describe_latest())


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming if ``workdir`` has checkpoints); returns the last metrics line, with
  ``'preempted': True`` when stopped by SIGTERM before the last step."""
  validate_config(config)
  _check_devices(config)
  workdir = os.path.abspath(workdir)  # orbax refuses relative checkpoint paths (make demo)
  mesh = mesh_lib.make_mesh()
  process_index, process_count = jax.process_index(), jax.process_count()
  is_chief = process_index == 0

  model = build_model(config.model)
  input_shape = state_lib.init_input_shape(config.model)
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'),
                      keep=_get(config, 'keep_checkpoints', 3))
  latest = ckpt.latest_step()
  if latest is not None:  # a different model fails here, before any data or compile work
    try:
      ckpt.check_compatible(latest, state_lib.abstract_variables(model, input_shape, mesh))
    except CheckpointMismatchError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('cannot read the tree of checkpoint step %d (%s): restore checks it', latest,
                      e)

  data = data_module(config.data)
  train_it = data.make_train_iterator(config.data, config.global_batch_size, process_index,
                                      process_count, config.seed)
  steps_per_epoch = _get(config, 'steps_per_epoch', -1)
  if steps_per_epoch <= 0 and getattr(train_it, 'steps_per_epoch', None):
    steps_per_epoch = int(train_it.steps_per_epoch)
  if steps_per_epoch <= 0:
    num_examples = getattr(train_it, 'num_examples', None)
    if not num_examples:
      raise ConfigError('the train iterator does not report num_examples: set '
                        'config.steps_per_epoch > 0')
    steps_per_epoch = num_examples // config.global_batch_size
    if steps_per_epoch <= 0:
      raise ConfigError(f'config.global_batch_size={config.global_batch_size} exceeds the '
                        f'{num_examples} training examples')
  num_train_steps = _get(config, 'num_train_steps', -1)
  if num_train_steps <= 0:
    num_train_steps = int(math.ceil(config.num_epochs * steps_per_epoch))
  eval_every = _get(config, 'eval_every_steps', -1)
  if eval_every <= 0 and _get(config, 'eval_every_epochs', 0) > 0:
    eval_every = max(1, int(round(config.eval_every_epochs * steps_per_epoch)))
  log_every = max(1, _get(config, 'log_every_steps', 100))
  ckpt_every = _get(config, 'checkpoint_every_steps', 1000)

  schedule = optim.learning_rate_schedule(config, steps_per_epoch, num_train_steps)
  tx = optim.make_optimizer(config, schedule)
  abstract = state_lib.abstract_train_state(model, tx, input_shape, mesh)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params))
  logging.info('%s: %d parameters; %d devices (%d processes); %d steps/epoch, %d steps; '
               'peak lr %g', config.model.name, num_params, jax.device_count(), process_count,
               steps_per_epoch, num_train_steps, optim.peak_learning_rate(config))

  pending: dict[str, list[Any]] = {'loss': [], 'top1': []}
  restored = ckpt.restore_newest_intact(abstract) if latest is not None else None
  nonfinite = faults.NonFiniteGuard(_get(config, 'max_nonfinite_steps', 5),
                                    restored[3].get('nonfinite') if restored else None)
  save_failures = faults.SaveFailures(_get(config, 'max_failed_saves', 3))
  if restored is not None:
    latest, state, data_state, meta = restored
    train_it.set_state(data_state)
    pending = {k: [float(v) for v in vs] for k, vs in meta['pending'].items()}
    logging.info('resumed from %s at step %d', ckpt.directory / str(latest), latest)
  else:
    state = state_lib.create_train_state(model, tx, config.seed, input_shape, mesh)
    if _get(config, 'init_from', '') not in ('', INIT_FROM_SCRATCH):
      params, batch_stats, report = load_init_variables(
          config.init_from, abstract, state, tuple(_get(config, 'init_from_ignore', ())),
          model_config=config.model)
      state = state.replace(params=params, batch_stats=batch_stats)
      if is_chief:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, 'init_report.json'), 'w') as f:
          json.dump(report, f, indent=2)
  start_step = int(state.step)
  if start_step >= num_train_steps:
    logging.warning('the run is already at step %d of %d: nothing to train', start_step,
                    num_train_steps)
  if is_chief:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))

  writer = MetricsWriter(workdir, enabled=is_chief, resume_step=start_step,
                         num_train_steps=num_train_steps,
                         global_batch_size=config.global_batch_size)
  train_step: Any = steps_lib.make_train_step(model, tx, mesh, config.label_smoothing)
  eval_step = steps_lib.make_eval_step(model, mesh, int(config.model.num_classes))
  watcher = PreemptionWatcher()
  last: dict[str, Any] = {}
  preempted = False
  try:
    for step in range(start_step, num_train_steps):
      batch = faults.inject(step, next(train_it), ckpt.wait_until_finished)
      batch = mesh_lib.global_batch(batch, mesh)
      if step == start_step:  # compile once; stop here if the step cannot fit
        train_step = train_step.lower(state, batch).compile()
        faults.check_memory(train_step, _get(config, 'device_memory_bytes', -1))
      state, metrics = train_step(state, batch)
      done = step + 1
      if nonfinite.update(done, metrics, ckpt.describe_latest()):
        pending['loss'].append(metrics['loss'])
        pending['top1'].append(metrics['top1'])
      if step == start_step:  # compiled and run once: rates start now
        jax.block_until_ready(metrics)
        writer.start_timer(done)
      last_step = done == num_train_steps
      do_eval = last_step or (eval_every > 0 and done % eval_every == 0)
      if do_eval or last_step or done % log_every == 0:
        host = {k: [float(v) for v in jax.device_get(vs)] for k, vs in pending.items()}
        line = ({'train_loss': _mean(host['loss']), 'train_top1': _mean(host['top1'])}
                if host['loss'] else {})
        line['learning_rate'] = float(schedule(done - 1))
        skipped = nonfinite.take_window()
        if skipped:
          line['nonfinite_steps'] = skipped
        eval_seconds = 0.0
        if do_eval:
          t0 = time.perf_counter()
          result = evaluate_clip(
              config, model, state.variables(), mesh, eval_step,
              after_batch=functools.partial(faults.signal_point, 'eval', done, workdir))
          line.update({f'eval_{k}': v for k, v in result.items() if k != 'num_examples'})
          eval_seconds = time.perf_counter() - t0
        writer.write(done, line, eval_seconds)
        last = {'step': done, **line}
        pending = {k: [] for k in pending}
      faults.signal_point('step', done, workdir)
      _maybe_pause(done, workdir, ckpt, watcher)
      preempted = watcher.reached(done) and not last_step
      if last_step or preempted or (ckpt_every > 0 and done % ckpt_every == 0):
        meta = {'pending': {k: [float(v) for v in jax.device_get(vs)]
                            for k, vs in pending.items()},
                'process_count': process_count, 'num_train_steps': num_train_steps,
                'nonfinite': nonfinite.state()}
        # No batch is drawn ahead, so the iterator's state is "after batch `done`".
        _save(ckpt, save_failures, done, state, train_it.get_state(), meta)
        faults.signal_point('save', done, workdir)
        if last_step or preempted:  # no later interval to retry at
          _settle(ckpt, save_failures, final=True)
      if preempted:
        logging.warning('preempted: checkpoint saved at step %d of %d', done, num_train_steps)
        break
  except RuntimeError as e:
    died = faults.data_worker_died(e, ckpt.describe_latest())
    if died is None:
      raise
    raise died from e
  finally:
    _close(train_it)
    _write_broken_files(data, workdir)
    unsettled = ckpt.settle()  # a save in flight when an error stopped the loop
    if unsettled and unsettled[1] is not None:
      logging.error('checkpoint save of step %d failed: %s', *unsettled)
    ckpt.close()
    writer.close()
    watcher.close()
  return {**last, 'preempted': preempted}


# ---------------------------------------------------------------------------------------------
# Evaluating a checkpoint (evaluate.py).


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, protocol: str = 'clip',
                        step: int | None = None, *, progress: bool = True) -> dict[str, Any]:
  """Restores ``step`` (default: latest) of ``WORKDIR/checkpoints`` onto this run's devices (any
  count), runs ``protocol`` (a key of ``PROTOCOLS``) and writes ``WORKDIR/eval_<protocol>.json``
  (and the broken-file report, if any input could not be read)."""
  if protocol not in PROTOCOLS:
    raise ConfigError(f'--protocol={protocol!r}; allowed: {sorted(PROTOCOLS)}')
  validate_config(config, training=False)
  if protocol in views.PROTOCOL_VIEWS and protocol != 'clip':
    _require_view_source(config, protocol)
  try:
    mesh_lib.check_batch_divisible(_eval_batch_size(config), 'eval_batch_size' if _get(
        config, 'eval_batch_size', -1) > 0 else 'global_batch_size')
  except ValueError as e:
    raise ConfigError(str(e)) from None
  workdir = os.path.abspath(workdir)  # orbax wants absolute paths
  mesh = mesh_lib.make_mesh()
  model = build_model(config.model)
  abstract = state_lib.abstract_train_state(model, optax.identity(),
                                            state_lib.init_input_shape(config.model), mesh)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(ckpt_dir):
    raise ValueError(f'no checkpoint in {ckpt_dir}')
  ckpt = Checkpointer(ckpt_dir, create=False)
  if step is not None and step >= 0:
    variables = ckpt.restore_variables(step, abstract)
  elif ckpt.latest_step() is None:
    raise ValueError(f'no checkpoint in {ckpt_dir}')
  else:  # the newest intact step; damaged newer ones are logged
    step, variables = ckpt.newest_intact_variables(abstract)
  ckpt.close()
  t0 = time.perf_counter()
  data = data_module(config.data)
  try:
    metrics = PROTOCOLS[protocol](config, model, variables, mesh, progress=progress)
  finally:
    _write_broken_files(data, workdir)
  result = {'step': int(step), 'protocol': protocol, **metrics,
            'eval_seconds': round(time.perf_counter() - t0, 3),
            'num_devices': jax.device_count()}
  logging.info('eval %s at step %d: %s', protocol, step, result)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, f'eval_{protocol}.json'), 'w') as f:
      json.dump(result, f, indent=2, sort_keys=True)
  return result


def mark_flags_parsed() -> None:
  """grain's multiprocessing reads absl flags: call this when using the loop outside
  ``absl.app.run`` (tests, notebooks)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()

