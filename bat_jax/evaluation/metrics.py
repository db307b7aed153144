"""Evaluation metrics from sums that add up over batches and processes.

* clip protocol: the jitted eval step (``evaluation/steps.py``) returns per-batch sums
  (``count``, ``loss``, ``top1``, ``top5``, per-class ``class_count`` / ``class_top1``);
  :func:`clip_metrics` turns their totals into top-1 / top-5 / mean per-class accuracy / loss;
* multi-view protocols: :class:`ViewAccumulator` sums each video's view predictions (softmax and
  logits), :func:`video_metric_sums` gives the same kind of sums per video, and
  :func:`metrics_from_sums` the accuracies.

Mean per-class accuracy is the mean over the classes that have examples of (correct / examples
of the class). :func:`sum_over_processes` adds sums over processes (every sum is a count).

Multi-label (Charades): :class:`MaxViewAccumulator` keeps each video's element-wise maximum of
the views' sigmoid scores, :func:`gather_videos` collects the videos of every process and
:func:`charades_average_precision` / :func:`mean_average_precision` score them as Charades'
official ``Charades_v1_classify.m`` does.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils



def softmax(logits: np.ndarray) -> np.ndarray:
  """Softmax over the last axis in float64."""
  x = np.asarray(logits, np.float64)
  x = x - x.max(axis=-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=-1, keepdims=True)


class ViewAccumulator:
  """Sums each video's view predictions as the batches come (rows of one video may be spread over
  several batches; padding rows, ``mask`` False or ``video_index`` < 0, are ignored).

  ``add(logits (B, K), labels (B,), video_index (B,), mask (B,))``; then ``video_ids()``,
  ``mean_probs()`` (mean softmax over each video's views), ``mean_logits()``, ``labels()``,
  ``view_counts()``, all in increasing ``video_index`` order.
  """

  def __init__(self, num_classes: int):
    self.num_classes = int(num_classes)
    self._prob: dict[int, np.ndarray] = {}
    self._logit: dict[int, np.ndarray] = {}
    self._count: dict[int, int] = {}
    self._label: dict[int, int] = {}

  def add(self, logits: np.ndarray, labels: np.ndarray, video_index: np.ndarray,
          mask: np.ndarray | None = None) -> None:
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or logits.shape[1] != self.num_classes:
      raise ValueError(f'logits {logits.shape}, expected (B, {self.num_classes})')
    video_index = np.asarray(video_index)
    keep = video_index >= 0
    if mask is not None:
      keep &= np.asarray(mask, bool)
    probs = softmax(logits)
    for row in np.flatnonzero(keep):
      v, label = int(video_index[row]), int(labels[row])
      if v in self._count:
        if self._label[v] != label:
          raise ValueError(f'video {v} has views labelled {self._label[v]} and {label}')
        self._prob[v] += probs[row]
        self._logit[v] += logits[row]
        self._count[v] += 1
      else:
        self._prob[v], self._logit[v] = probs[row].copy(), logits[row].copy()
        self._count[v], self._label[v] = 1, label

  def __len__(self) -> int:
    return len(self._count)

  def video_ids(self) -> np.ndarray:
    return np.asarray(sorted(self._count), np.int64)

  def view_counts(self) -> np.ndarray:
    return np.asarray([self._count[v] for v in sorted(self._count)], np.int64)

  def labels(self) -> np.ndarray:
    return np.asarray([self._label[v] for v in sorted(self._count)], np.int64)

  def mean_probs(self) -> np.ndarray:
    ids = sorted(self._count)
    if not ids:
      return np.zeros((0, self.num_classes))
    return np.stack([self._prob[v] / self._count[v] for v in ids])

  def mean_logits(self) -> np.ndarray:
    ids = sorted(self._count)
    if not ids:
      return np.zeros((0, self.num_classes))
    return np.stack([self._logit[v] / self._count[v] for v in ids])


def _topk_hits(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """Whether ``labels`` is among the ``k`` highest scores (ties broken towards lower classes,
  like ``argmax``)."""
  if len(scores) == 0:
    return np.zeros(0, bool)
  order = np.argsort(-scores, axis=-1, kind='stable')[:, :k]
  return np.any(order == labels[:, None], axis=-1)


def video_metric_sums(scores: np.ndarray, labels: np.ndarray, num_classes: int,
                      top_k: int = 5) -> dict[str, np.ndarray]:
  """Per-video counts that add up over processes: ``count``, ``top1``, ``top{k}``,
  ``class_count`` (K,), ``class_top1`` (K,)."""
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels, np.int64)
  k = min(top_k, num_classes)
  top1 = _topk_hits(scores, labels, 1).astype(np.float64)
  topk = _topk_hits(scores, labels, k).astype(np.float64)
  return {
      'count': np.float64(len(labels)),
      'top1': top1.sum(),
      f'top{top_k}': topk.sum(),
      'class_count': np.bincount(labels, minlength=num_classes).astype(np.float64),
      'class_top1': np.bincount(labels, weights=top1, minlength=num_classes),
  }


def metrics_from_sums(sums: dict[str, np.ndarray], top_k: int = 5) -> dict[str, float]:
  """top-1, top-k and mean per-class accuracy (over the classes that have videos)."""
  count = float(sums['count'])
  if count == 0:
    raise ValueError('no video was evaluated')
  seen = sums['class_count'] > 0
  return {
      'top1': float(sums['top1'] / count),
      f'top{top_k}': float(sums[f'top{top_k}'] / count),
      'mean_class_accuracy': float(np.mean(sums['class_top1'][seen] / sums['class_count'][seen])),
  }


def clip_metrics(totals: dict[str, np.ndarray] | None) -> dict[str, float]:
  """top-1, top-5, mean per-class accuracy and mean loss of the eval step's summed outputs."""
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


def local_rows(x: jax.Array) -> np.ndarray:
  """This process's rows of a global array sharded over ``'data'``, in order."""
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  rows, seen = [], set()
  for s in shards:
    start = s.index[0].start or 0
    if start not in seen:  # (a replicated axis would repeat rows)
      seen.add(start)
      rows.append(np.asarray(s.data))
  return np.concatenate(rows)


def sum_over_processes(sums: dict[str, Any]) -> dict[str, Any]:
  """``sums`` added over every process (each entry a count, so int32 gathering is exact)."""
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


# ----------------------------------------------------------------------------------------------
# Multi-label (Charades).


def sigmoid(logits: np.ndarray) -> np.ndarray:
  """Element-wise logistic function in float64."""
  x = np.asarray(logits, np.float64)
  return np.exp(-np.logaddexp(0.0, -x))


class MaxViewAccumulator:
  """Each video's element-wise maximum over its views of the sigmoid scores, and its multi-hot
  label (the ``add`` interface of :class:`ViewAccumulator`, labels (B, K)).

  The maximum is the released Charades test's view aggregation:
  facebookresearch/video-long-term-feature-banks ``lib/utils/metrics.py``
  (``aggregate_predictions_from_clips``: ``all_preds[i] = np.maximum(all_preds[cur_clip_index],
  all_preds[i])`` over the sigmoid ``prob`` of the 30 views) and PySlowFast's Charades configs
  (``ENSEMBLE_METHOD: max``)."""

  def __init__(self, num_classes: int):
    self.num_classes = int(num_classes)
    self._score: dict[int, np.ndarray] = {}
    self._count: dict[int, int] = {}
    self._label: dict[int, np.ndarray] = {}

  def add(self, logits: np.ndarray, labels: np.ndarray, video_index: np.ndarray,
          mask: np.ndarray | None = None) -> None:
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels)
    if logits.ndim != 2 or logits.shape[1] != self.num_classes or labels.shape != logits.shape:
      raise ValueError(f'logits {logits.shape} and multi-hot labels {labels.shape}, expected '
                       f'(B, {self.num_classes}) both')
    keep = np.asarray(video_index) >= 0
    if mask is not None:
      keep &= np.asarray(mask, bool)
    scores = sigmoid(logits)
    for row in np.flatnonzero(keep):
      v = int(video_index[row])
      if v in self._count:
        if not np.array_equal(self._label[v], labels[row]):
          raise ValueError(f'video {v} has views with different labels')
        np.maximum(self._score[v], scores[row], out=self._score[v])
        self._count[v] += 1
      else:
        self._score[v], self._label[v] = scores[row].copy(), labels[row].copy()
        self._count[v] = 1

  def video_ids(self) -> np.ndarray:
    return np.asarray(sorted(self._count), np.int64)

  def view_counts(self) -> np.ndarray:
    return np.asarray([self._count[v] for v in sorted(self._count)], np.int64)

  def scores(self) -> np.ndarray:
    return np.stack([self._score[v] for v in sorted(self._count)]) if self._count else \
        np.zeros((0, self.num_classes))

  def labels(self) -> np.ndarray:
    return np.stack([self._label[v] for v in sorted(self._count)]).astype(np.float64) if \
        self._count else np.zeros((0, self.num_classes))


def gather_videos(video_ids: np.ndarray, rows: np.ndarray, max_videos: int
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Every process's ``(video_ids (n,), rows (n, D))``, concatenated and sorted by video id.
  ``max_videos`` bounds any process's ``n`` (the padding length of the gather)."""
  video_ids, rows = np.asarray(video_ids, np.int64), np.asarray(rows, np.float64)
  if jax.process_count() > 1:
    ids = np.full(max_videos, -1, np.int32)
    ids[:len(video_ids)] = video_ids
    padded = np.zeros((max_videos, rows.shape[1]), np.float32)
    padded[:len(rows)] = rows
    all_ids = np.asarray(multihost_utils.process_allgather(ids)).reshape(-1)
    all_rows = np.asarray(multihost_utils.process_allgather(padded), np.float64)
    all_rows = all_rows.reshape(-1, rows.shape[1])
    keep = all_ids >= 0
    video_ids, rows = all_ids[keep].astype(np.int64), all_rows[keep]
  order = np.argsort(video_ids, kind='stable')
  return video_ids[order], rows[order]


def charades_average_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Per-class average precision (K,) as Charades' ``Charades_v1_classify.m`` computes it
  (``THUMOSeventclspr``, adapted from THUMOS'15): videos sorted by decreasing score with
  MATLAB's stable ``sort(-conf)`` (tied videos keep their order, the order of the test CSV),
  ``prec(i) = tp(i) / i`` over that ranking, ``AP = sum of prec at the positives / #positives``.
  A video without any action never gets its prediction read by the script (``gtids{i}`` stays
  empty), so its scores are ``-inf`` and it ranks last in every class. A class without
  positives gets NaN (0 / 0), as in the script."""
  scores = np.array(scores, np.float64)
  labels = np.asarray(labels) > 0
  if scores.shape != labels.shape or scores.ndim != 2:
    raise ValueError(f'scores {scores.shape} and labels {labels.shape}: expected (N, K) both')
  scores[~labels.any(axis=1)] = -np.inf
  ap = np.full(scores.shape[1], np.nan)
  for c in range(scores.shape[1]):
    tp = labels[np.argsort(-scores[:, c], kind='stable'), c]
    if tp.any():
      prec = np.cumsum(tp) / np.arange(1, len(tp) + 1)
      ap[c] = prec[tp].sum() / tp.sum()
  return ap


def mean_average_precision(scores: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
  """(mAP, per-class AP): the mean of :func:`charades_average_precision` over the classes with
  at least one positive video. (The official script's ``mean(ap_all)`` is NaN when a class has
  none, which never happens on the full test set; its Python ports take ``nanmean``, and the
  released LFB code's ``mean_ap_metric`` drops such classes: the same number.)"""
  ap = charades_average_precision(scores, labels)
  if np.all(np.isnan(ap)):
    raise ValueError('no class has a positive video: mAP is undefined')
  return float(np.nanmean(ap)), ap
