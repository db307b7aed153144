"""Evaluation protocols (``evaluate.py --protocol``; views in ``bat_jax/data/views.py``):

=========  ===================================================================================
clip       one clip (or image) per example as the eval iterator gives it (centre clip, centre
           crop): top-1, top-5, mean per-class accuracy, loss;
30view     10 clips x 3 crops of ``data.eval_short_side``^2 (fully convolutional), softmax
           averaged per video;
250view    25 clips x 10 crops (4 corners + centre, x flip) of ``data.crop_size``^2;
imagenet   single centre crop (resize ``data.eval_resize``, crop ``data.image_size``): top-1 /
           top-5.
=========  ===================================================================================

Every protocol is ``f(config, model, variables, mesh, *, progress) -> metrics`` (``PROTOCOLS``);
each process evaluates its share of the eval set and the sums are added over processes. The
batches reach the devices ``config.device_prefetch`` (2) batches ahead of the step
(``bat_jax.data.prefetch``), as in training; uint8 clips are normalised inside the steps.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from absl import logging

from bat_jax.data.normalization import input_stats
from bat_jax.data.prefetch import DEFAULT_DEPTH, DevicePrefetch
from bat_jax.data.registry import data_module
from bat_jax.evaluation import metrics as metrics_lib
from bat_jax.evaluation import steps as steps_lib
from bat_jax.data import views
from bat_jax.evaluation.progress import Progress


class ConfigError(ValueError):
  """A config field has a value the run cannot use; the message names the field."""


def eval_batch_size(config: ml_collections.ConfigDict) -> int:
  """``config.eval_batch_size``, or ``global_batch_size`` when it is -1 (or absent)."""
  size = config.get('eval_batch_size', -1)
  return size if size > 0 else config.global_batch_size


def num_batches(iterator: Any) -> int:
  """The iterator's batch count (``len`` or ``num_batches``; 0 when it does not say)."""
  try:
    return len(iterator)
  except TypeError:
    return int(getattr(iterator, 'num_batches', 0) or 0)


def close_iterator(iterator: Any) -> None:
  """Stops an iterator's workers / threads (grain iterators have ``close``)."""
  if hasattr(iterator, 'close'):
    iterator.close()


def _prefetch_depth(config: ml_collections.ConfigDict) -> int:
  return int(config.get('device_prefetch', DEFAULT_DEPTH))


def evaluate_clip(config: ml_collections.ConfigDict, model: Any, variables: Any,
                  mesh: jax.sharding.Mesh, eval_step: Callable[..., Any] | None = None, *,
                  progress: bool = False,
                  after_batch: Callable[[], None] | None = None) -> dict[str, float]:
  """Clip-level top-1 / top-5 / mean per-class accuracy / loss over the eval iterator
  (``after_batch``: called after each batch; the fault tests' hook)."""
  num_classes = int(config.model.num_classes)
  eval_step = eval_step or steps_lib.make_eval_step(model, mesh, num_classes,
                                                    input_stats=input_stats(config.data))
  it = data_module(config.data).make_eval_iterator(
      config.data, eval_batch_size(config), jax.process_index(), jax.process_count())
  totals: dict[str, np.ndarray] | None = None
  bar = Progress(num_batches(it), 'eval clip', progress)
  try:
    for batch, _ in DevicePrefetch(it, mesh, depth=_prefetch_depth(config)):
      sums = eval_step(variables, batch)
      sums = {k: np.asarray(v, np.float64) for k, v in jax.device_get(sums).items()}
      totals = sums if totals is None else {k: totals[k] + sums[k] for k in totals}
      bar.update()
      if after_batch is not None:
        after_batch()
  finally:
    bar.close()
    close_iterator(it)
  return metrics_lib.clip_metrics(totals)


def require_view_source(config: ml_collections.ConfigDict, protocol: str) -> Any:
  """The data module of ``config.data``, which must sample views (``num_clips``, ``num_crops``,
  ``crop_size``); ``ConfigError`` otherwise."""
  module = data_module(config.data)
  params = inspect.signature(module.make_eval_iterator).parameters
  if not {'num_clips', 'num_crops', 'crop_size'} <= set(params):
    raise ConfigError(f'--protocol={protocol} needs a video data set read by '
                      f'bat_jax.data.pipeline (kinetics400, mini_kinetics200, toy_video); '
                      f'config.data.name={config.data.name!r}')
  return module


def predict_views(config: ml_collections.ConfigDict, model: Any, variables: Any,
                  mesh: jax.sharding.Mesh, spec: views.ViewSpec, *, progress: bool = False,
                  label: str = 'eval') -> tuple[metrics_lib.ViewAccumulator, dict[str, Any]]:
  """Runs the model on every view of this process's videos; returns the per-video accumulated
  predictions (this process's videos only) and facts about the run (sizes, videos)."""
  data_cfg = config.data
  module = require_view_source(config, label)
  crop_size = int(data_cfg[spec.crop])
  short_side = int(data_cfg.eval_short_side)
  it = module.make_eval_iterator(data_cfg, eval_batch_size(config), jax.process_index(),
                                 jax.process_count(), num_clips=spec.num_clips,
                                 num_crops=spec.num_crops, crop_size=crop_size)
  predict = steps_lib.make_predict_step(model, mesh, input_stats=input_stats(data_cfg))
  acc = metrics_lib.ViewAccumulator(int(config.model.num_classes))
  logging.info('%s over %d videos', views.describe(label, spec, crop_size, short_side),
               it.num_examples)
  bar = Progress(num_batches(it), f'eval {label}', progress)
  pending = None  # (logits on device, host batch): fetched after the next batch is dispatched
  try:
    for device, batch in DevicePrefetch(it, mesh, depth=_prefetch_depth(config)):
      logits = predict(variables, device)
      if pending is not None:
        acc.add(metrics_lib.local_rows(pending[0]), pending[1]['label'],
                pending[1]['video_index'], pending[1]['mask'])
        bar.update()
      pending = (logits, batch)
    if pending is not None:
      acc.add(metrics_lib.local_rows(pending[0]), pending[1]['label'], pending[1]['video_index'],
              pending[1]['mask'])
      bar.update()
  finally:
    bar.close()
    close_iterator(it)
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
  sums = metrics_lib.video_metric_sums(acc.mean_probs(), labels, num_classes)
  by_logit = metrics_lib.video_metric_sums(acc.mean_logits(), labels, num_classes)
  counts = acc.view_counts()
  sums.update({'logit_top1': by_logit['top1'], 'logit_top5': by_logit['top5'],
               'views': np.float64(counts.sum()),
               'partial': np.float64((counts < spec.num_views).sum())})
  sums = metrics_lib.sum_over_processes(sums)
  if sums['count'] == 0:
    raise ValueError('no video of the eval set could be decoded')
  result: dict[str, Any] = metrics_lib.metrics_from_sums(sums)
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
