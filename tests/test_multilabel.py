"""Multi-label training / evaluation (Charades): config.loss, the sigmoid loss in the train and
eval steps, against float64 NumPy formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bat_jax.data import mesh as mesh_lib
from bat_jax.evaluation import metrics as metrics_lib
from bat_jax.evaluation import steps
from bat_jax.training import config_checks
from bat_jax.training import state as state_lib
from bat_jax.training import steps as train_steps
from configs import base_kinetics
from tests.test_training import _TableModel


def _bce_reference(logits, targets):
  """mean over batch and classes of -[y log s + (1 - y) log(1 - s)], s = 1 / (1 + e^-z)."""
  z, y = np.asarray(logits, np.float64), np.asarray(targets, np.float64)
  s = 1.0 / (1.0 + np.exp(-z))
  return np.mean(-(y * np.log(s) + (1 - y) * np.log(1 - s)), axis=-1)


def test_sigmoid_binary_cross_entropy_matches_numpy():
  rng = np.random.default_rng(0)
  logits = (rng.standard_normal((5, 9)) * 4).astype(np.float32)
  targets = (rng.random((5, 9)) < 0.3).astype(np.float32)
  got = steps.example_loss('sigmoid_binary_cross_entropy', jnp.asarray(logits),
                           jnp.asarray(targets))
  np.testing.assert_allclose(np.asarray(got), _bce_reference(logits, targets), rtol=1e-5)
  big = np.array([[30.0, -30.0]], np.float32)  # stable where 1 - sigmoid underflows in float32
  got = steps.sigmoid_binary_cross_entropy(jnp.asarray(big), jnp.asarray([[0.0, 1.0]]))
  np.testing.assert_allclose(np.asarray(got), [30.0], rtol=1e-5)


def test_softmax_default_unchanged():
  logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
  labels = jnp.array([0, 1])
  np.testing.assert_array_equal(
      np.asarray(steps.example_loss('softmax_cross_entropy', logits, labels, 0.1)),
      np.asarray(steps.cross_entropy(logits, labels, 0.1)))
  with pytest.raises(ValueError, match='config.loss'):
    steps.example_loss('hinge', logits, labels)


def _batch(ids, targets, mask=None):
  x = np.zeros((len(ids), 2, 2, 3), np.float32)
  x[:, 0, 0, 0] = ids
  out = {'image': x, 'label': targets.astype(np.float32)}
  if mask is not None:
    out['mask'] = mask
  return out


def test_train_and_eval_steps_with_multi_hot_labels():
  rng = np.random.default_rng(1)
  n, k = 8, 6
  table = rng.standard_normal((n, k)).astype(np.float32)
  targets = (rng.random((n, k)) < 0.4).astype(np.float32)
  model = _TableModel(table)
  mesh = mesh_lib.make_mesh()
  loss_name = 'sigmoid_binary_cross_entropy'
  tx = optax.sgd(0.1)
  state = state_lib.create_train_state(model, tx, 0, (1, 2, 2, 3), mesh)
  train_step = train_steps.make_train_step(model, tx, mesh, loss=loss_name)
  batch = mesh_lib.global_batch(_batch(np.arange(n), targets), mesh)
  _, metrics = train_step(state, batch)
  np.testing.assert_allclose(float(metrics['loss']), _bce_reference(table, targets).mean(),
                             rtol=1e-5)
  pred = table.argmax(-1)
  assert float(metrics['top1']) == pytest.approx(np.mean(targets[np.arange(n), pred] > 0))

  mask = np.arange(n) < 6  # the last two rows are padding
  eval_step = steps.make_eval_step(model, mesh, k, top_k=3, loss=loss_name)
  sums = jax.device_get(eval_step({'params': state.params},
                                  mesh_lib.global_batch(_batch(np.arange(n), targets, mask),
                                                        mesh)))
  keep = slice(0, 6)
  assert sums['count'] == 6
  np.testing.assert_allclose(sums['loss'], _bce_reference(table, targets)[keep].sum(), rtol=1e-5)
  top3 = np.argsort(-table, -1)[:, :3]
  assert sums['top3'] == sum(targets[i, top3[i]].any() for i in range(6))
  np.testing.assert_array_equal(sums['class_count'], targets[keep].sum(0))
  want = np.zeros(k)
  for i in range(6):
    want[pred[i]] += targets[i, pred[i]]
  np.testing.assert_array_equal(sums['class_top1'], want)


def test_config_loss_is_validated(tmp_path):
  cfg = base_kinetics.get_config()
  cfg.data.root = str(tmp_path)
  cfg.loss = 'hinge'
  with pytest.raises(config_checks.ConfigError, match=r"config\.loss='hinge'"):
    config_checks.validate_config(cfg, training=False)
  cfg.loss = 'sigmoid_binary_cross_entropy'
  cfg.label_smoothing = 0.1
  with pytest.raises(config_checks.ConfigError, match='config.label_smoothing'):
    config_checks.validate_config(cfg)


# ----------------------------------------------------------------------------------------------
# Charades mAP (Charades_v1_classify.m).


def _thumos_ap(conf, labels):
  """Line-by-line float64 transcription of THUMOSeventclspr (Charades_v1_classify.m); MATLAB's
  sort is stable, so ties keep the input order."""
  sortind = sorted(range(len(conf)), key=lambda i: -conf[i])
  tp = fp = 0
  ap = 0.0
  for i in sortind:
    if labels[i] == 1:
      tp += 1
      ap += tp / (tp + fp)
    else:
      fp += 1
  return ap / sum(labels == 1) if np.any(labels == 1) else np.nan


def _reference_map(scores, labels):
  scores = np.array(scores, np.float64)
  scores[labels.sum(1) == 0] = -np.inf  # the script never reads an action-less video's scores
  ap = np.array([_thumos_ap(scores[:, c], labels[:, c]) for c in range(scores.shape[1])])
  return np.nanmean(ap), ap


def test_map_hand_example_with_ties_empty_video_and_empty_class():
  scores = np.array([[0.9, 0.85, 0.5], [0.8, 0.8, 0.1], [0.8, 0.3, 0.7], [0.95, 0.9, 0.9],
                     [0.1, 0.25, 0.2]])
  labels = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
  m, ap = metrics_lib.mean_average_precision(scores, labels)
  # class 0: ranking v0, v1 (tie with v2, earlier in the file), v2, v4, v3 -> (1 + 2/3) / 2
  # class 1: v3 (no action) goes last: v0, v1, v2, v4 -> (1/2 + 2/3 + 3/4) / 3; class 2: none
  np.testing.assert_allclose(ap[:2], [5 / 6, 23 / 36], rtol=1e-12)
  assert np.isnan(ap[2])
  assert m == pytest.approx(53 / 72, rel=1e-12)


def test_map_matches_transcription_on_random_tied_scores():
  rng = np.random.default_rng(4)
  scores = rng.integers(0, 4, (40, 6)) / 4.0  # many ties
  labels = (rng.random((40, 6)) < 0.25).astype(int)
  labels[:, 5] = 0
  m, ap = metrics_lib.mean_average_precision(scores, labels)
  want_m, want_ap = _reference_map(scores, labels)
  np.testing.assert_allclose(ap, want_ap, rtol=1e-12)
  assert m == pytest.approx(want_m, rel=1e-12)


def test_max_view_accumulator_takes_the_max_sigmoid_and_ignores_padding():
  acc = metrics_lib.MaxViewAccumulator(2)
  lab = np.array([[1.0, 0.0]] * 3)
  acc.add(np.array([[0.0, 2.0], [1.0, -1.0], [9.0, 9.0]]), lab, np.array([4, 4, 4]),
          np.array([True, True, False]))
  acc.add(np.array([[-3.0, 3.0]]), lab[:1], np.array([4]))
  s = lambda x: 1 / (1 + np.exp(-x))
  np.testing.assert_allclose(acc.scores(), [[s(1.0), s(3.0)]], rtol=1e-12)
  assert acc.view_counts().tolist() == [3] and acc.video_ids().tolist() == [4]
  with pytest.raises(ValueError, match='different labels'):
    acc.add(np.zeros((1, 2)), np.array([[0.0, 1.0]]), np.array([4]))
