"""The released codes' per-parameter policies: ``bias_lr_mult`` and the weight-decay masks.

Released BAT video ``utils.py`` ``TrainPolicy``: conv / linear weights lr x1, decay x1; their biases
lr x2, decay 0; BN lr x1, decay 0. Released RSA ``ops/models.py`` ``get_optim_policies``: the same
for convs and biases, and the RSA layer's ``H1``, ``H2``, ``G`` (convs) and ``P1``, ``I`` decayed.
"""

import importlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from bat_jax import build_model
from bat_jax.training import optim
from bat_jax.training.config_checks import ConfigError, validate_config


def abstract_params(cfg, shape):
  model = build_model(ml_collections.ConfigDict(cfg))
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))['params']


def paths_where(mask):
  return {'/'.join(str(k.key) for k in path)
          for path, v in jax.tree_util.tree_flatten_with_path(mask)[0] if v}


BLOCK_BIASES = {
    'bat': ({'type': 'bat', 'groups': 2, 'size': 2},
            ['conv1', 'conv2', 'conv3', 'predictor/conv', 'predictor/predict_p/conv',
             'predictor/predict_q/conv']),
    'nonlocal': ({'type': 'nonlocal'}, ['g', 'theta', 'phi', 'w']),
}


@pytest.mark.parametrize('block', sorted(BLOCK_BIASES))
def test_bias_mask_is_every_conv_and_fc_bias_and_no_bn(block):
  fields, convs = BLOCK_BIASES[block]
  params = abstract_params(dict(name='resnet18', num_classes=3, width=4, input_size=(16, 16),
                                block=fields, insertions={'res3': (1,)}), (1, 16, 16, 3))
  block_name = 'res3_bat1' if block == 'bat' else 'res3_nonlocal1'
  assert paths_where(optim.conv_fc_bias_mask(params)) == (
      {'fc/bias'} | {f'{block_name}/{c}/bias' for c in convs})
  all_biases = {p for p in paths_where(jax.tree.map(lambda _: True, params))
                if p.endswith('/bias')}
  block_bn = f"{block_name}/{'bn1' if block == 'bat' else 'bn'}/bias"
  assert {'res3_block1/bn2/bias', block_bn} <= all_biases  # BN shifts exist, left out above


def test_released_video_weight_decay_mask_with_rsa_layers():
  params = abstract_params(dict(name='rsa_resnet50', num_classes=5, input_size=(8, 224, 224)),
                           (1, 8, 224, 224, 3))
  decayed = paths_where(optim.weight_decay_mask(params, 'conv_fc_weights'))
  rsa = [f'{stage}_block{i}/conv2' for stage, idx in
         (('res2', (2,)), ('res3', (1, 3)), ('res4', (1, 3, 5)), ('res5', (1,))) for i in idx]
  for layer in rsa:
    for name in ('H1', 'H2', 'G', 'P1', 'I', 'proj/kernel'):
      assert f'{layer}/{name}' in decayed, (layer, name)
  assert 'fc/kernel' in decayed and 'conv1/kernel' in decayed
  assert not any(p.endswith(('/bias', '/scale')) for p in decayed)
  # Everything else is a conv kernel: the decayed set is kernels + the RSA parameters.
  everything = paths_where(jax.tree.map(lambda _: True, params))
  assert decayed == {p for p in everything
                     if p.endswith('/kernel') or p.rsplit('/', 1)[-1] in optim.RSA_DECAYED_PARAMS}


def sgd_config(bias_lr_mult, weight_decay=0.0, nesterov=False):
  return ml_collections.ConfigDict(dict(
      optimizer='sgd', momentum=0.9, nesterov=nesterov, grad_clip_norm=0.0,
      weight_decay=weight_decay, weight_decay_on='conv_fc_weights', bias_lr_mult=bias_lr_mult))


PARAMS = {'conv': {'kernel': jnp.full((1, 1, 1, 2, 2), 0.5), 'bias': jnp.full((2,), 0.5)},
          'bn': {'scale': jnp.full((2,), 0.5), 'bias': jnp.full((2,), 0.5)}}


def run_steps(cfg, grads_per_step, lr=0.1):
  tx = optim.make_optimizer(cfg, optax.constant_schedule(lr))
  params, state = PARAMS, tx.init(PARAMS)
  for g in grads_per_step:
    grads = jax.tree.map(lambda p: jnp.full(p.shape, g), PARAMS)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return jax.tree.map(lambda a, b: np.asarray(a - b), params, PARAMS)


@pytest.mark.parametrize('nesterov', [False, True])
def test_bias_update_is_twice_a_weight_update_with_the_same_gradient(nesterov):
  delta = run_steps(sgd_config(2.0, nesterov=nesterov), [0.3, -0.1, 0.2])
  weight = delta['conv']['kernel'].reshape(-1)[0]
  assert weight != 0
  np.testing.assert_allclose(delta['conv']['bias'], 2 * weight, rtol=1e-6)
  np.testing.assert_allclose(delta['bn']['bias'], weight, rtol=1e-6)  # BN shift: x1
  np.testing.assert_allclose(delta['bn']['scale'], weight, rtol=1e-6)
  # The default (1) leaves every update alone.
  plain = run_steps(sgd_config(1.0, nesterov=nesterov), [0.3, -0.1, 0.2])
  np.testing.assert_allclose(plain['conv']['bias'], weight, rtol=1e-6)


def test_bias_has_no_decay_and_double_lr_one_step():
  # PyTorch: p -= lr_mult * lr * (g + decay_mult * wd * p) on the first step (momentum buffer = d).
  lr, wd, g, p = 0.1, 0.01, 0.3, 0.5
  delta = run_steps(sgd_config(2.0, weight_decay=wd), [g], lr)
  np.testing.assert_allclose(delta['conv']['kernel'], -lr * (g + wd * p), rtol=1e-6)
  np.testing.assert_allclose(delta['conv']['bias'], -2 * lr * g, rtol=1e-6)
  np.testing.assert_allclose(delta['bn']['bias'], -lr * g, rtol=1e-6)


def test_video_recipes_use_the_released_bias_policy():
  for name in ('kinetics_c2d_3dbat', 'kinetics_i3d_nl', 'mini_kinetics_c2d_bat', 'ssv1_rsa_r50'):
    cfg = importlib.import_module(f'configs.{name}').get_config()
    assert (cfg.bias_lr_mult, cfg.weight_decay_on) == (2.0, 'conv_fc_weights'), name
  assert importlib.import_module('configs.imagenet_r50_bat').get_config().get(
      'bias_lr_mult', 1.0) == 1.0  # the released image code: plain SGD on all parameters


@pytest.mark.parametrize('value', [0.0, -1.0, 'two', True])
def test_bad_bias_lr_mult_is_a_config_error(value):
  config = importlib.import_module('configs.base_imagenet').get_config()
  config.data = ml_collections.ConfigDict(dict(name='synthetic', num_classes=3, crop_size=16,
                                               num_train_examples=8, num_eval_examples=8))
  config.bias_lr_mult = value
  with pytest.raises(ConfigError, match=r'config\.bias_lr_mult='):
    validate_config(config)
