"""Trainer pieces in-process: schedules, weight-decay mask, clipping, loss, eval metrics, the
synthetic data set's sharding and state, and that a short run learns."""

import importlib
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import Mesh

from bat_jax.data import mesh as mesh_lib
from bat_jax.data import synthetic
from bat_jax.evaluation import steps
from bat_jax.training import config_checks, loop, optim
from bat_jax.training import state as state_lib
from tests import helpers_train as h


def _recipe(**kw) -> ml_collections.ConfigDict:
  cfg = h.get_config('image')
  cfg.update(kw)
  return cfg


# --------------------------------------------------------------------------------------------
# Learning-rate schedules.


def test_step_schedule_warmup_linear_scaling_and_decays():
  # ImageNet recipe at batch 1024: peak 0.1 * 1024 / 256 = 0.4, 5 warm-up epochs, x0.1 at 30/60/80.
  cfg = _recipe(base_learning_rate=0.1, lr_base_batch_size=256, global_batch_size=1024,
                schedule='step', warmup_epochs=5, lr_decay_epochs=(30, 60, 80),
                lr_decay_factor=0.1)
  spe = 10
  lr = optim.learning_rate_schedule(cfg, spe, 90 * spe)
  assert optim.peak_learning_rate(cfg) == pytest.approx(0.4)
  # warm-up: step s (0-based) uses 0.4 * (s + 1) / 50
  for s in (0, 1, 24, 49):
    assert float(lr(s)) == pytest.approx(0.4 * (s + 1) / 50, rel=1e-5)
  assert float(lr(50)) == pytest.approx(0.4)
  assert float(lr(299)) == pytest.approx(0.4)
  assert float(lr(300)) == pytest.approx(0.04)
  assert float(lr(599)) == pytest.approx(0.04)
  assert float(lr(600)) == pytest.approx(0.004)
  assert float(lr(800)) == pytest.approx(0.0004)
  assert float(lr(899)) == pytest.approx(0.0004)


def test_step_schedule_without_warmup_kinetics():
  cfg = _recipe(base_learning_rate=0.01, lr_base_batch_size=64, global_batch_size=64,
                schedule='step', warmup_epochs=0, lr_decay_epochs=(40, 80), lr_decay_factor=0.1)
  lr = optim.learning_rate_schedule(cfg, 100, 100 * 100)
  assert float(lr(0)) == pytest.approx(0.01)
  assert float(lr(3999)) == pytest.approx(0.01)
  assert float(lr(4000)) == pytest.approx(0.001)
  assert float(lr(8000)) == pytest.approx(0.0001)


def test_cosine_schedule():
  cfg = _recipe(base_learning_rate=0.01, lr_base_batch_size=64, global_batch_size=128,
                schedule='cosine', warmup_epochs=2)
  total, spe = 50 * 10, 10
  lr = optim.learning_rate_schedule(cfg, spe, total)
  peak = 0.02
  assert float(lr(0)) == pytest.approx(peak / 20)
  assert float(lr(19)) == pytest.approx(peak)
  mid = 20 + (total - 20) // 2
  assert float(lr(mid)) == pytest.approx(peak / 2, rel=1e-3)
  assert float(lr(total)) == pytest.approx(0.0, abs=1e-9)
  values = [float(lr(s)) for s in range(20, total)]
  assert all(a >= b for a, b in zip(values, values[1:]))


def test_cosine_over_all_steps_as_the_released_video_code():
  """``cosine_span='all_steps'``: after the warm-up, lr(s) = peak (1 + cos(pi s / N)) / 2 with s
  the global step (released ``main.py`` ``adjust_learning_rate``, float64 reference)."""
  cfg = _recipe(base_learning_rate=0.01, lr_base_batch_size=64, global_batch_size=128,
                schedule='cosine', warmup_epochs=2, cosine_span='all_steps')
  total, spe, peak = 50 * 10, 10, 0.02
  lr = optim.learning_rate_schedule(cfg, spe, total)
  steps_after = np.arange(20, total + 1)
  want = peak * 0.5 * (np.cos(steps_after / total * np.pi) + 1.0)
  np.testing.assert_allclose([float(lr(s)) for s in steps_after], want, rtol=1e-5, atol=1e-9)
  assert float(lr(20)) < peak  # the cosine does not restart at the peak
  assert float(lr(19)) == pytest.approx(peak)
  for name in ('mini_kinetics_c2d', 'mini_kinetics_c2d_bat', 'mini_kinetics_c2d_nl'):
    assert importlib.import_module(f'configs.{name}').get_config().cosine_span == 'all_steps'


def test_cosine_span_is_validated():
  cfg = _recipe(schedule='cosine', cosine_span='everything')
  with pytest.raises(config_checks.ConfigError, match='config.cosine_span'):
    config_checks.validate_config(cfg)


# --------------------------------------------------------------------------------------------
# Optimizer: weight-decay mask, SGD momentum, clipping.


def _params():
  return {'conv1': {'kernel': jnp.full((1, 3, 3, 2, 4), 2.0)},
          'bn1': {'scale': jnp.full((4,), 2.0), 'bias': jnp.full((4,), 2.0)},
          'bat': {'conv_in': {'kernel': jnp.full((1, 1, 1, 4, 2), 2.0), 'bias': jnp.full((2,), 2.0)}},
          'fc': {'kernel': jnp.full((4, 3), 2.0), 'bias': jnp.full((3,), 2.0)}}


def test_weight_decay_conv_fc_weights_only_and_all():
  params = _params()
  zeros = jax.tree.map(jnp.zeros_like, params)
  for mode, decayed in (('conv_fc_weights', {"['conv1']['kernel']", "['bat']['conv_in']['kernel']",
                                             "['fc']['kernel']"}),
                        ('all', set(h.flat(params)))):
    cfg = _recipe(weight_decay=1e-4, weight_decay_on=mode, grad_clip_norm=0.0, momentum=0.9)
    tx = optim.make_optimizer(cfg, 0.5)
    updates, _ = tx.update(zeros, tx.init(params), params)
    for name, u in h.flat(updates).items():
      expected = -0.5 * 1e-4 * 2.0 if name in decayed else 0.0
      np.testing.assert_allclose(np.asarray(u), expected, rtol=1e-6, err_msg=f'{mode} {name}')


def test_sgd_momentum_matches_pytorch_form():
  """v = m v + (g + wd p); p -= lr v, with lr changing between steps."""
  cfg = _recipe(weight_decay=0.1, weight_decay_on='all', grad_clip_norm=0.0, momentum=0.9)
  lrs = [0.5, 0.25, 0.125]
  tx = optim.make_optimizer(cfg, lambda count: jnp.asarray(lrs)[count])
  p = {'w': jnp.array([1.0, -2.0])}
  opt = tx.init(p)
  p_ref, v = np.array([1.0, -2.0]), np.zeros(2)
  for i, g in enumerate([np.array([0.3, 0.1]), np.array([-0.2, 0.4]), np.array([0.1, 0.1])]):
    u, opt = tx.update({'w': jnp.asarray(g)}, opt, p)
    p = optax.apply_updates(p, u)
    v = 0.9 * v + g + 0.1 * p_ref
    p_ref = p_ref - lrs[i] * v
    np.testing.assert_allclose(np.asarray(p['w']), p_ref, rtol=1e-6)


def test_grad_clip_by_global_norm_before_weight_decay():
  cfg = _recipe(weight_decay=0.0, grad_clip_norm=20.0, momentum=0.0)
  tx = optim.make_optimizer(cfg, 1.0)
  params = {'a': jnp.zeros(3), 'b': jnp.zeros(4)}
  grads = {'a': jnp.full(3, 30.0), 'b': jnp.full(4, 40.0)}
  u, _ = tx.update(grads, tx.init(params), params)
  assert float(optax.tree.norm(u)) == pytest.approx(20.0, rel=1e-5)
  small = {'a': jnp.full(3, 1.0), 'b': jnp.full(4, 1.0)}
  u, _ = tx.update(small, tx.init(params), params)
  np.testing.assert_allclose(np.asarray(u['a']), -1.0)


def test_cross_entropy_label_smoothing():
  logits = jnp.array([[2.0, 0.5, -1.0], [0.0, 0.0, 3.0]])
  labels = jnp.array([0, 1])
  logp = np.asarray(jax.nn.log_softmax(logits))
  plain = -logp[[0, 1], [0, 1]]
  np.testing.assert_allclose(np.asarray(steps.cross_entropy(logits, labels)), plain, rtol=1e-6)
  a = 0.1
  target = np.full((2, 3), a / 3) + (1 - a) * np.eye(3)[[0, 1]]
  np.testing.assert_allclose(np.asarray(steps.cross_entropy(logits, labels, a)),
                             -(target * logp).sum(-1), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Evaluation metrics with padding masks.


class _TableModel(nn.Module):
  """Logits looked up from the first pixel's value (an example id): a model with known outputs."""
  table: np.ndarray

  @nn.compact
  def __call__(self, x, train=False):
    self.param('unused', nn.initializers.zeros, (1,))
    ids = x[:, 0, 0, 0].astype(jnp.int32)
    return jnp.asarray(self.table)[ids]


def test_eval_step_top1_top5_mean_class_accuracy_ignore_padding():
  rng = np.random.default_rng(0)
  n, k, batch = 13, 7, 8
  table = rng.standard_normal((n, k)).astype(np.float32)
  labels = rng.integers(0, k, n)
  mesh = mesh_lib.make_mesh()
  model = _TableModel(table)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 2, 2, 3)))
  eval_step = steps.make_eval_step(model, mesh, k)
  totals = None
  for start in range(0, 16, batch):  # two batches, the last padded with garbage rows
    ids = np.arange(start, start + batch)
    mask = ids < n
    x = np.zeros((batch, 2, 2, 3), np.float32)
    x[:, 0, 0, 0] = np.where(mask, ids, 0)
    y = np.where(mask, labels[np.minimum(ids, n - 1)], (labels[0] + 1) % k)
    out = eval_step(variables, mesh_lib.global_batch(
        {'image': x, 'label': y.astype(np.int32), 'mask': mask}, mesh))
    out = jax.device_get(out)
    totals = out if totals is None else {key: totals[key] + out[key] for key in totals}
  pred = table.argmax(-1)
  top5 = np.argsort(-table, -1)[:, :5]
  assert totals['count'] == n
  assert totals['top1'] == np.sum(pred == labels)
  assert totals['top5'] == sum(labels[i] in top5[i] for i in range(n))
  per_class = [np.mean(pred[labels == c] == c) for c in range(k) if np.any(labels == c)]
  seen = totals['class_count'] > 0
  np.testing.assert_allclose(np.mean(totals['class_top1'][seen] / totals['class_count'][seen]),
                             np.mean(per_class), rtol=1e-6)
  np.testing.assert_allclose(totals['loss'] / n, np.mean(
      -np.asarray(jax.nn.log_softmax(table))[np.arange(n), labels]), rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Synthetic data: deterministic, sharded by process, resumable.


def test_synthetic_shards_are_disjoint_rows_of_the_same_global_batch():
  cfg = synthetic.get_config(num_classes=3, num_frames=2, crop_size=8, num_train_examples=20,
                             num_eval_examples=7)
  whole = synthetic.make_train_iterator(cfg, 8, 0, 1, seed=5)
  parts = [synthetic.make_train_iterator(cfg, 8, i, 4, seed=5) for i in range(4)]
  for _ in range(6):  # crosses epoch boundaries (20 examples, 8 per batch)
    full = next(whole)
    shards = [next(p) for p in parts]
    assert full['video'].shape == (8, 2, 8, 8, 3)
    np.testing.assert_array_equal(np.concatenate([s['video'] for s in shards]), full['video'])
    np.testing.assert_array_equal(np.concatenate([s['label'] for s in shards]), full['label'])
  # another seed: another order
  other = next(synthetic.make_train_iterator(cfg, 8, 0, 1, seed=6))
  first = next(synthetic.make_train_iterator(cfg, 8, 0, 1, seed=5))
  assert not np.array_equal(other['video'], first['video'])


def test_synthetic_state_resumes_the_same_batches():
  cfg = synthetic.get_config(num_train_examples=24, crop_size=8)
  it = synthetic.make_train_iterator(cfg, 8, 1, 2, seed=0)
  for _ in range(4):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  expected = [next(it) for _ in range(3)]
  fresh = synthetic.make_train_iterator(cfg, 8, 1, 2, seed=0)
  fresh.set_state(state)
  for e in expected:
    got = next(fresh)
    np.testing.assert_array_equal(got['image'], e['image'])
    np.testing.assert_array_equal(got['label'], e['label'])


def test_synthetic_eval_is_padded_with_mask_and_covers_each_example_once():
  cfg = synthetic.get_config(num_classes=4, num_eval_examples=13, crop_size=8)
  seen = []
  for p in range(2):
    batches = list(synthetic.make_eval_iterator(cfg, 8, p, 2))
    assert len(batches) == 2  # ceil(13 / 8) global batches, on every process
    for b in batches:
      assert b['image'].shape[0] == 4 and b['mask'].dtype == bool
      seen += [tuple(x.ravel()[:5]) for x in b['image'][b['mask']]]
  assert len(seen) == 13 and len(set(seen)) == 13
  again = list(synthetic.make_eval_iterator(cfg, 8, 0, 2))
  np.testing.assert_array_equal(again[1]['image'], list(
      synthetic.make_eval_iterator(cfg, 8, 0, 2))[1]['image'])


# --------------------------------------------------------------------------------------------
# The loop, in-process: learns; dropout keys per step.


def test_dropout_keys_depend_on_step_only():
  s = state_lib.TrainState(step=jnp.int32(3), params={}, batch_stats={}, opt_state=(),
                           rng=jax.random.key_data(jax.random.key(1)))
  a = jax.random.key_data(s.step_rng())
  assert np.array_equal(a, jax.random.key_data(s.step_rng()))
  assert not np.array_equal(a, jax.random.key_data(s.replace(step=jnp.int32(4)).step_rng()))


def test_short_run_learns_above_chance(tmp_path):
  """48 steps of a width-4 ResNet-18 on 4-class synthetic images: eval top-1 far above 25%.
  (Eval top-1 at the end was 1.0 for seeds 0-3 when this was written.)"""
  loop.mark_flags_parsed()
  cfg = h.get_config('image')
  cfg.eval_every_steps, cfg.eval_every_epochs, cfg.checkpoint_every_steps = 0, 0, 0
  result = loop.train_and_evaluate(cfg, str(tmp_path))
  lines = h.metrics_lines(str(tmp_path))
  assert [m['step'] for m in lines] == list(range(1, 49))
  assert result['step'] == 48 and not result['preempted']
  assert lines[-1]['eval_top1'] >= 0.9, lines[-1]
  assert np.mean([m['train_loss'] for m in lines[-4:]]) < 0.5 * lines[0]['train_loss']
  # The same scalars in TensorBoard (float32 there), plus the rates.
  tb = h.tensorboard_scalars(os.path.join(tmp_path, 'tensorboard'))
  for tag in ('train_loss', 'learning_rate', 'eval_top1'):
    logged = {m['step']: m[tag] for m in lines if tag in m}
    assert tb[tag].keys() == logged.keys()
    np.testing.assert_allclose([tb[tag][k] for k in logged], list(logged.values()), rtol=1e-6)
  assert set(tb['steps_per_sec']) == set(range(2, 49))  # step 1 includes compilation
  assert all(v > 0 for v in tb['examples_per_sec'].values())
  assert h.checkpoint_steps(str(tmp_path)) == [48]


def test_one_device_mesh_batch_sharding_is_data_axis():
  mesh = mesh_lib.make_mesh()
  assert isinstance(mesh, Mesh) and mesh.axis_names == ('data',)
  batch = mesh_lib.global_batch({'x': np.ones((4, 2), np.float32)}, mesh)
  assert batch['x'].shape == (4, 2)
  assert batch['x'].sharding.spec == jax.sharding.PartitionSpec('data')


def released_snl_lrs(epochs=100, lr=0.01, drops=(31, 61, 81), warmup_epochs=10, drop_ratio=0.1):
  """Per-epoch lr of the released SNL ``train_val.py`` (ImageNet branch): warm-up forced on, the
  warm-up epochs added to ``epochs`` and to every drop epoch, ``adjust_learning_rate``'s
  ``np.linspace(lr * drop_ratio**len(drops), lr, warmup)`` and its in-place ``args.lr *= decay``."""
  warmup_lrs = np.linspace(lr * drop_ratio**len(drops), lr, num=warmup_epochs)
  drops = [d + warmup_epochs for d in drops]
  out = []
  for epoch in range(epochs + warmup_epochs):
    if epoch < warmup_epochs:
      out.append(warmup_lrs[epoch])
    else:
      lr *= drop_ratio if epoch in drops else 1.0
      out.append(lr)
  return out


def test_snl_imagenet_schedule_is_the_released_one():
  """configs/imagenet_r50_snl.py: every update of every epoch gets the released lr of its epoch."""
  from configs import imagenet_r50_snl  # pylint: disable=g-import-not-at-top
  cfg = imagenet_r50_snl.get_config()
  spe = 7
  lr = optim.learning_rate_schedule(cfg, spe, cfg.num_epochs * spe)
  want = released_snl_lrs()
  assert len(want) == cfg.num_epochs == 110
  assert want[0] == pytest.approx(1e-5) and want[9] == pytest.approx(0.01)
  got = np.array([[float(lr(e * spe + k)) for k in range(spe)] for e in range(110)])
  np.testing.assert_allclose(got, np.repeat(np.array(want)[:, None], spe, axis=1), rtol=1e-5)


@pytest.mark.parametrize('granularity', ['step', 'epoch'])
def test_warmup_start_factor(granularity):
  """The ramp starts at ``warmup_start_factor * peak``; 'step' ramps per update (reaching the peak
  at the last warm-up update), 'epoch' holds ``linspace(start, peak, E)[e]`` within epoch e."""
  cfg = _recipe(base_learning_rate=0.1, lr_base_batch_size=256, global_batch_size=256,
                schedule='step', warmup_epochs=4, lr_decay_epochs=(), warmup_start_factor=0.1,
                warmup_granularity=granularity)
  lr = optim.learning_rate_schedule(cfg, 5, 50)
  got = np.array([float(lr(s)) for s in range(25)])
  if granularity == 'step':
    want = 0.01 + 0.09 * np.minimum(np.arange(25) + 1, 20) / 20
  else:
    want = np.concatenate([np.repeat(np.linspace(0.01, 0.1, 4), 5), np.full(5, 0.1)])
  np.testing.assert_allclose(got, want, rtol=1e-5)
