"""Evaluation protocols (``evaluate.py --protocol``; views in ``bat_jax/data/views.py``):

=========  ===================================================================================
clip       one clip (or image) per example as the eval iterator gives it (centre clip, centre
           crop): top-1, top-5, mean per-class accuracy, loss;
30view     10 clips x 3 crops of ``data.eval_short_side``^2 (fully convolutional), softmax
           averaged per video;
250view    25 clips x 10 crops (4 corners + centre, x flip) of ``data.crop_size``^2;
imagenet   single centre crop (resize ``data.eval_resize``, crop ``data.image_size``): top-1 /
           top-5;
rsa        RSA's test (``rsa_neurips2021_supplementary.md`` §1): ``config.eval_num_clips`` (1 or
           2) clips, frames resized to ``data.eval_frame_size`` (240 x 320), centre crop
           ``data.crop_size``, softmax averaged per video.
charades   multi-label: the 30 views of ``30view``, the element-wise maximum of their sigmoid
           scores per video, mean average precision over the classes as Charades'
           ``Charades_v1_classify.m`` computes it (:func:`evaluate_charades`).
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
  eval_step = eval_step or steps_lib.make_eval_step(
      model, mesh, num_classes, loss=config.get('loss', steps_lib.LOSSES[0]),
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


def require_view_source(config: ml_collections.ConfigDict, protocol: str,
                        frame_size: bool = False) -> Any:
  """The data module of ``config.data``, which must sample views (``num_clips``, ``num_crops``,
  ``crop_size``, and ``frame_size`` when asked); ``ConfigError`` otherwise."""
  module = data_module(config.data)
  params = inspect.signature(module.make_eval_iterator).parameters
  needed = {'num_clips', 'num_crops', 'crop_size'} | ({'frame_size'} if frame_size else set())
  if not needed <= set(params):
    raise ConfigError(f'--protocol={protocol} needs a video data set read by '
                      f'bat_jax.data.pipeline (kinetics400, mini_kinetics200, toy_video, '
                      f'something_something_v1/_v2, diving48, gym99, gym288); '
                      f'config.data.name={config.data.name!r}')
  return module


def predict_views(config: ml_collections.ConfigDict, model: Any, variables: Any,
                  mesh: jax.sharding.Mesh, spec: views.ViewSpec, *, progress: bool = False,
                  label: str = 'eval', accumulator: Any = None) -> tuple[Any, dict[str, Any]]:
  """Runs the model on every view of this process's videos; returns the per-video accumulated
  predictions (this process's videos only; ``accumulator``, default a
  :class:`~bat_jax.evaluation.metrics.ViewAccumulator`) and facts about the run (sizes,
  videos)."""
  data_cfg = config.data
  module = require_view_source(config, label, frame_size=spec.frame_size is not None)
  crop_size = int(data_cfg[spec.crop])
  short_side = int(data_cfg.eval_short_side)
  resize = {} if spec.frame_size is None else {'frame_size': spec.frame_size}
  it = module.make_eval_iterator(data_cfg, eval_batch_size(config), jax.process_index(),
                                 jax.process_count(), num_clips=spec.num_clips,
                                 num_crops=spec.num_crops, crop_size=crop_size, **resize)
  predict = steps_lib.make_predict_step(model, mesh, input_stats=input_stats(data_cfg))
  acc = accumulator or metrics_lib.ViewAccumulator(int(config.model.num_classes))
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
          'num_clips': spec.num_clips, 'num_crops': spec.num_crops, **resize}
  return acc, info


def evaluate_views(config: ml_collections.ConfigDict, model: Any, variables: Any,
                   mesh: jax.sharding.Mesh, *, protocol: str = '30view',
                   spec: views.ViewSpec | None = None,
                   progress: bool = False) -> dict[str, Any]:
  """Video-level top-1 / top-5 / mean per-class accuracy of ``protocol`` (its views: ``spec``, by
  default ``views.PROTOCOL_VIEWS[protocol]``): the softmax of every view, averaged per video.
  Also reports the logit-averaged top-1 (the released code's aggregation) and how many videos had
  no decodable view (left out, listed in the broken-file report)."""
  spec = spec or views.PROTOCOL_VIEWS[protocol]
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


def rsa_view_spec(config: ml_collections.ConfigDict) -> views.ViewSpec:
  """The views of ``--protocol=rsa``: ``config.eval_num_clips`` clips (default 1) x 1 centre crop
  of ``data.crop_size`` on frames resized to ``data.eval_frame_size`` (H, W)."""
  num_clips = config.get('eval_num_clips', 1)
  if not isinstance(num_clips, int) or num_clips < 1:
    raise ConfigError(f'config.eval_num_clips={num_clips!r}; allowed: clips per video >= 1 '
                      '(RSA tests with 1 or 2)')
  frame_size = config.data.get('eval_frame_size')
  if (frame_size is None or len(tuple(frame_size)) != 2 or
      min(int(x) for x in frame_size) < int(config.data.crop_size)):
    raise ConfigError(f'--protocol=rsa needs config.data.eval_frame_size = (H, W), both >= '
                      f'data.crop_size (the RSA recipes: (240, 320)); got {frame_size!r}')
  return views.ViewSpec(num_clips, 1, 'crop_size', tuple(int(x) for x in frame_size))


def evaluate_rsa(config: ml_collections.ConfigDict, model: Any, variables: Any,
                 mesh: jax.sharding.Mesh, *, progress: bool = False) -> dict[str, Any]:
  """RSA's test protocol (``rsa_neurips2021_supplementary.md`` §1 "Testing": "we sample one or
  two clips, resize them to 240 x 320, and center-crop by 224 x 224 ... average softmax
  scores"): :func:`evaluate_views` on :func:`rsa_view_spec`'s views."""
  return evaluate_views(config, model, variables, mesh, protocol='rsa',
                        spec=rsa_view_spec(config), progress=progress)
# The released Charades test: 10 clips x 3 spatial shifts (left, centre, right) of 256 x 256 at
# short side 256 (video-long-term-feature-banks lib/core/config.py NUM_TEST_CLIPS_FINAL_EVAL = 30,
# lib/datasets/charades.py "3-crop testing", configs/charades_r101_baseline.yaml TEST.SCALE /
# CROP_SIZE 256): the views of 30view (docs/recipes.md says where the clip positions differ).
CHARADES_VIEWS = views.PROTOCOL_VIEWS['30view']


def evaluate_charades(config: ml_collections.ConfigDict, model: Any, variables: Any,
                      mesh: jax.sharding.Mesh, *, progress: bool = False) -> dict[str, Any]:
  """Charades mAP: per video the element-wise maximum over its 30 views of the sigmoid scores
  (:class:`~bat_jax.evaluation.metrics.MaxViewAccumulator`), then
  :func:`~bat_jax.evaluation.metrics.mean_average_precision` over every process's videos.
  Videos with no decodable view are left out (listed in the broken-file report and counted in
  ``num_videos_skipped``)."""
  num_classes = int(config.model.num_classes)
  acc, info = predict_views(config, model, variables, mesh, CHARADES_VIEWS, progress=progress,
                            label='charades',
                            accumulator=metrics_lib.MaxViewAccumulator(num_classes))
  slots = -(-info['num_videos'] // jax.process_count())
  ids, rows = metrics_lib.gather_videos(
      acc.video_ids(), np.concatenate([acc.scores(), acc.labels(),
                                       acc.view_counts()[:, None]], axis=1), slots)
  if len(ids) == 0:
    raise ValueError('no video of the eval set could be decoded')
  scores, labels = rows[:, :num_classes], rows[:, num_classes:2 * num_classes]
  mean_ap, ap = metrics_lib.mean_average_precision(scores, labels)
  return {
      'mAP': mean_ap,
      'num_classes_scored': int(np.sum(~np.isnan(ap))),
      'num_examples': int(len(ids)),
      'num_videos_skipped': info['num_videos'] - int(len(ids)),
      'num_views': int(rows[:, -1].sum()),
      'views_per_video': CHARADES_VIEWS.num_views,
      **info,
  }


PROTOCOLS: dict[str, Callable[..., dict[str, Any]]] = {
    'clip': evaluate_clip,
    '30view': functools.partial(evaluate_views, protocol='30view'),
    '250view': functools.partial(evaluate_views, protocol='250view'),
    'imagenet': evaluate_imagenet,
    'rsa': evaluate_rsa,
    'charades': evaluate_charades,
}
