"""BatchNorm statistics per group of examples (``model.bn_group_size``, ``layers.BatchNorm``).

Training mode: each group of ``g`` consecutive examples is normalised with its own mean and
(biased) variance; the running averages follow the first group (``nn.DataParallel``'s replica 0).
Checked against float64 NumPy written from the BN equations, gradients included, and on 1 vs 8
simulated devices.
"""

import importlib
import subprocess
import sys
import textwrap

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bat_jax import build_model
from bat_jax.nn.layers import BatchNorm
from bat_jax.training import config_checks
from bat_jax.training.config_checks import ConfigError, validate_config
from configs import args
from tests import helpers_train as h

EPS, MOMENTUM = 1e-5, 0.9


def bn_reference(x, scale, bias, group, relu, ct):
  """float64: outputs, first-group statistics and the gradients of ``sum(ct * y)`` w.r.t. ``x``,
  scale, bias; each ``group``-example slice normalised on its own (y = scale x_hat + bias,
  x_hat = (x - mu) / sqrt(var + eps); dx = scale / sqrt(var + eps) / m * (m dy - sum dy -
  x_hat sum(dy x_hat)) per slice of ``m`` elements per channel)."""
  x, ct = np.asarray(x, np.float64), np.asarray(ct, np.float64)
  y, dx = np.empty_like(x), np.empty_like(x)
  dscale, dbias, stats = 0.0, 0.0, []
  for start in range(0, x.shape[0], group):
    xs = x[start:start + group].reshape(-1, x.shape[-1])
    m = xs.shape[0]
    mu, var = xs.mean(0), xs.var(0)
    stats.append((mu, var))
    xhat = (xs - mu) / np.sqrt(var + EPS)
    ys = scale * xhat + bias
    dy = ct[start:start + group].reshape(-1, x.shape[-1])
    if relu:
      dy = np.where(ys > 0, dy, 0.0)
      ys = np.maximum(ys, 0.0)
    y[start:start + group] = ys.reshape(y[start:start + group].shape)
    dscale = dscale + (dy * xhat).sum(0)
    dbias = dbias + dy.sum(0)
    dxs = scale / np.sqrt(var + EPS) / m * (m * dy - dy.sum(0) - xhat * (dy * xhat).sum(0))
    dx[start:start + group] = dxs.reshape(dx[start:start + group].shape)
  return y, stats[0], (dx, dscale, dbias)


def run_bn(module, x, ct):
  """Training-mode outputs, updated batch_stats and the gradients of ``sum(ct * y)``."""
  variables = module.init(jax.random.key(0), x)
  params = {'scale': jnp.linspace(0.5, 1.5, x.shape[-1]), 'bias': jnp.linspace(-0.2, 0.3,
                                                                               x.shape[-1])}

  def loss(params, x):
    y, updates = module.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                              mutable=['batch_stats'])
    return jnp.sum(y * ct), (y, updates['batch_stats'])

  (_, (y, stats)), grads = jax.value_and_grad(loss, (0, 1), has_aux=True)(params, x)
  return y, stats, params, grads


def inputs(shape=(8, 2, 3, 3, 5)):
  x = jax.random.normal(jax.random.key(1), shape) * 2.0 + 0.5
  ct = jax.random.normal(jax.random.key(2), shape)
  return x, ct


@pytest.mark.parametrize('relu', [False, True])
@pytest.mark.parametrize('group', [1, 2, 4])
def test_groups_are_slices_normalised_independently(group, relu):
  x, ct = inputs()
  y, stats, params, (dparams, dx) = run_bn(BatchNorm(relu=relu, group_size=group), x, ct)
  ry, (mu, var), (rdx, rdscale, rdbias) = bn_reference(
      x, np.asarray(params['scale']), np.asarray(params['bias']), group, relu, ct)
  np.testing.assert_allclose(y, ry, rtol=1e-5, atol=1e-5)
  # Running averages from the first group: momentum * init (0 and 1) + (1 - momentum) * stats.
  np.testing.assert_allclose(stats['mean'], (1 - MOMENTUM) * mu, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats['var'], MOMENTUM + (1 - MOMENTUM) * var, rtol=1e-5)
  np.testing.assert_allclose(dx, rdx, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(dparams['scale'], rdscale, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(dparams['bias'], rdbias, rtol=1e-4, atol=1e-5)


def test_group_of_the_whole_batch_is_todays_global_bn():
  x, ct = inputs()
  today = run_bn(BatchNorm(relu=True), x, ct)
  whole = run_bn(BatchNorm(relu=True, group_size=x.shape[0]), x, ct)
  for a, b in zip(jax.tree.leaves(today), jax.tree.leaves(whole)):
    np.testing.assert_array_equal(a, b)
  # ... which is flax's BatchNorm: outputs, running averages, gradients.
  flax_bn = run_bn(nn.BatchNorm(use_running_average=False, momentum=MOMENTUM, epsilon=EPS), x, ct)
  for a, b in zip(jax.tree.leaves(flax_bn), jax.tree.leaves(run_bn(BatchNorm(group_size=8), x, ct))):
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
  # Groups do change the result (so the tests above can tell grouped from global BN).
  assert not np.allclose(run_bn(BatchNorm(relu=True, group_size=2), x, ct)[0], whole[0])


def test_eval_mode_ignores_groups():
  x, _ = inputs()
  variables = BatchNorm().init(jax.random.key(0), x)
  a = BatchNorm(use_running_average=True).apply(variables, x)
  b = BatchNorm(use_running_average=True, group_size=3).apply(variables, x)  # 3 divides nothing
  np.testing.assert_array_equal(a, b)


def test_bad_group_size_is_a_clear_error():
  x, _ = inputs()
  with pytest.raises(ValueError, match=r'model\.bn_group_size=3 must be 0 or divide the batch of '
                                       r'8'):
    BatchNorm(group_size=3).init_with_output(jax.random.key(0), x)
  cfg = dict(name='resnet18', num_classes=3, width=4, input_size=(16, 16), bn_group_size=-1)
  with pytest.raises(ValueError, match=r'model\.bn_group_size=-1'):
    build_model(cfg)


def test_config_group_must_divide_the_global_batch():
  config = importlib.import_module('configs.base_imagenet').get_config()
  config.data = ml_collections.ConfigDict(dict(name='synthetic', num_classes=3, crop_size=16,
                                               num_train_examples=8, num_eval_examples=8))
  config.global_batch_size = 64
  config.model.bn_group_size = 24
  with pytest.raises(ConfigError, match=r'config\.model\.bn_group_size=24 must divide '
                                        r'config\.global_batch_size=64'):
    validate_config(config)
  config.model.bn_group_size = 8
  validate_config(config)


def test_every_bn_of_the_model_uses_the_groups():
  """A ResNet + BAT model: group size = batch is today's model; smaller groups change every
  BN's statistics (the first group's statistics reach each running average)."""
  cfg = dict(name='resnet18', num_classes=3, width=2, input_size=(8, 8),
             block={'type': 'bat', 'groups': 2, 'size': 2, 'dropout_rate': 0.0},
             insertions={'res3': (1,)})
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  variables = jax.jit(build_model(cfg).init)(jax.random.key(1), x[:1])

  def train_apply(group, x=x):
    model = build_model(dict(cfg, bn_group_size=group))
    return jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(
        variables, x)

  (y0, s0), (y4, s4), (y2, s2) = train_apply(0), train_apply(4), train_apply(2)
  np.testing.assert_array_equal(y0, y4)
  jax.tree.map(np.testing.assert_array_equal, s0, s4)
  assert not np.allclose(y2, y0)
  # Every running mean of the grouped model is the one from the first 2 clips alone.
  first = train_apply(0, x[:2])[1]
  flat2, flat_first = (jax.tree_util.tree_leaves_with_path(s) for s in (s2, first))
  assert len(flat2) > 40
  for (path, a), (_, b) in zip(flat2, flat_first):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=jax.tree_util.keystr(path))


VIDEO_RECIPES = ('kinetics_c2d', 'kinetics_c2d_bat', 'kinetics_c2d_3dbat', 'kinetics_c2d_3dbat:frames=16',
                 'kinetics_i3d', 'kinetics_i3d_bat', 'kinetics_r101_c2d_3dbat', 'kinetics_c2d_nl',
                 'kinetics_i3d_nl', 'kinetics_tsm_r50', 'mini_kinetics_c2d', 'mini_kinetics_c2d_bat',
                 'mini_kinetics_c2d_nl', 'ssv1_rsa_r50')


@pytest.mark.parametrize('name', VIDEO_RECIPES)
def test_video_recipes_set_per_gpu_groups_that_divide_the_batch(name):
  config = args.load(name)
  group = config.model.bn_group_size
  assert group > 0 and config.global_batch_size % group == 0
  build_model(config.model)  # a valid model field


_DEVICES_SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from bat_jax import build_model
    assert jax.device_count() == 8, jax.devices()
    cfg = dict(name='resnet18', num_classes=5, width=2, input_size=(32, 32))
    x = jax.random.normal(jax.random.key(0), (16, 32, 32, 3))
    labels = jnp.arange(16) % 5
    variables = jax.jit(build_model(cfg).init)(jax.random.key(1), x[:1])

    def loss(params, x, group):
      logits, _ = build_model(dict(cfg, bn_group_size=group)).apply(
          {'params': params, 'batch_stats': variables['batch_stats']}, x, train=True,
          mutable=['batch_stats'])
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    mesh = Mesh(np.asarray(jax.devices()), ('data',))
    sharded = jax.device_put(x, NamedSharding(mesh, P('data')))
    one = jax.device_put(x, jax.devices()[0])
    f = jax.jit(jax.value_and_grad(lambda p, x: loss(p, x, 4)))
    (l1, g1), (l8, g8) = f(variables['params'], one), f(variables['params'], sharded)
    np.testing.assert_allclose(l8, l1, rtol=1e-6)
    largest = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g1))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-4 * largest),
                 g8, g1)
    print('LOSS', float(l1), float(l8))
''')


def test_one_and_eight_devices_give_the_same_grouped_loss(tmp_path):
  """Groups of 4 over a batch of 16 sharded over 8 simulated devices (2 per device: the groups
  span devices) give the loss and gradients of the same batch on one device. (Gradients agree
  to float32 reduction-order noise, which grows as a group's statistics cover fewer elements: at
  res5's 1x1 map a group of 4 clips has 4 values per channel.)"""
  proc = subprocess.run([sys.executable, '-c', _DEVICES_SCRIPT], env=h.env_for(8), cwd=h.REPO,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert 'LOSS' in proc.stdout


def test_group_must_divide_the_per_process_batch(monkeypatch):
  """Groups never span two hosts: with 4 processes a global batch of 64 gives each 16 clips."""
  config = importlib.import_module('configs.kinetics_c2d').get_config()
  monkeypatch.setattr(jax, 'process_count', lambda: 4)
  config.model.bn_group_size = 32  # divides the global batch (64), not the 16 of a process
  with pytest.raises(ConfigError, match=r'config\.model\.bn_group_size=32 must divide the '
                                        r'per-process batch 16'):
    config_checks.check_devices(config)
  config.model.bn_group_size = 16
  config_checks.check_devices(config)
