"""Backbones and whole models: the papers' parameter counts, multiply-adds and shapes."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from ml_collections import config_flags  # noqa: F401  (config files import ml_collections)

from bat_jax import build_model
from bat_jax.tools import summary

FIVE = {'res3': (1, 3), 'res4': (1, 3, 5)}


def load_config(name):
  import importlib
  return importlib.import_module(f'configs.{name}').get_config()


def model_summary(model_config):
  return summary.summarize(ml_collections.ConfigDict(model_config))


def bat(groups, **kw):
  return {'type': 'bat', 'groups': groups, **kw}


# The authors' released code, counted with PyTorch (shared/reference/released_code_facts.md).
RELEASED_PARAMS = [
    ('resnet50', 1000, None, (224, 224), 25_557_032),
    ('resnet50', 1000, bat(4, normalization='sigmoid'), (224, 224), 30_234_220),
    ('c2d_resnet50', 400, None, (8, 224, 224), 24_327_632),
    ('c2d_resnet50', 400, bat(8), (8, 224, 224), 29_179_672),
    ('c2d_resnet50', 400, bat(8, temporal_groups=4, temporal_size=4), (8, 224, 224), 29_190_232),
    ('i3d_resnet50', 400, None, (8, 224, 224), 28_043_472),
    ('i3d_resnet50', 400, bat(8), (8, 224, 224), 32_895_512),
    ('c2d_resnet50', 400, {'type': 'nonlocal'}, (8, 224, 224), 31_686_096),
]


@pytest.mark.parametrize('name, classes, block, size, expected', RELEASED_PARAMS)
def test_parameter_counts_equal_the_released_code(name, classes, block, size, expected):
  cfg = dict(name=name, num_classes=classes, input_size=size,
             block=block or {'type': 'none'}, insertions=FIVE if block else {})
  assert model_summary(cfg)['params'] == expected


def test_recipe_configs_reproduce_the_papers_tables():
  """Params (M, two decimals as printed) and GMACs (within 2%) of Tables 2, 4, 6, 7, 8."""
  table = {  # config: (params M, GFLOPs, tolerance on params in M)
      'imagenet_r50': (25.56, 4.14, 0.005),
      'imagenet_r50_bat': (30.23, 5.44, 0.005),
      'imagenet_r101_bat': (49.2, 9.2, 0.05),
      'imagenet_r152_bat': (64.9, 12.9, 0.05),
      'kinetics_c2d': (24.3, 19.6, 0.05),
      'kinetics_c2d_bat': (29.2, 24.8, 0.05),
      'kinetics_c2d_3dbat': (29.2, 24.8, 0.05),
      'kinetics_i3d': (28.4, 28.4, None),  # Table 8 prints 28.4 M; the released code has 28.04 M
      'kinetics_i3d_bat': (32.9, 33.6, 0.05),
      'mini_kinetics_c2d_bat': (28.60, 24.77, 0.005),
  }
  for name, (params, gflops, tol) in table.items():
    result = model_summary(load_config(name).model)
    if tol is not None:
      assert abs(result['params'] / 1e6 - params) <= tol, (name, result['params'])
    assert abs(result['gmacs'] - gflops) / gflops < 0.02, (name, result['gmacs'])


@pytest.mark.parametrize('groups, params_m', [(0, 30.17), (1, 30.18), (2, 30.19), (4, 30.23),
                                              (16, 31.09)])
def test_table4_attention_groups(groups, params_m):
  cfg = load_config('imagenet_r50_bat').model
  cfg.block.groups = groups
  assert round(model_summary(cfg)['params'] / 1e6, 2) == params_m


@pytest.mark.parametrize('matrix, params_m, gflops', [('full', 31.86, 5.50),
                                                      ('downsample', 30.23, 5.22),
                                                      ('block', 30.23, 5.44)])
def test_table2_matrix_variants(matrix, params_m, gflops):
  cfg = load_config('imagenet_r50_bat').model
  cfg.block.matrix = matrix
  result = model_summary(cfg)
  assert round(result['params'] / 1e6, 2) == params_m
  assert abs(result['gmacs'] - gflops) / gflops < 0.05


def test_per_block_counts_and_summary_cli():
  """One image BAT-Block: 343,156 params at D=512, 1,330,292 at D=1024 (released code)."""
  out = subprocess.run(
      [sys.executable, '-m', 'bat_jax.tools.summary', '--config=configs/imagenet_r50_bat.py',
       '--json'], capture_output=True, text=True, check=True)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['params'] == 30_234_220
  assert {n: b['params'] for n, b in result['blocks'].items()} == {
      'res3_bat1': 343_156, 'res3_bat3': 343_156, 'res4_bat1': 1_330_292,
      'res4_bat3': 1_330_292, 'res4_bat5': 1_330_292}
  extra = result['gmacs'] - model_summary(load_config('imagenet_r50').model)['gmacs']
  assert abs(sum(b['gmacs'] for b in result['blocks'].values()) - extra) < 1e-6
  assert 'res4_bat5' in out.stdout and 'total' in out.stdout


def test_video_backbone_follows_supplementary_table1():
  """Stage output sizes at 8x224x224: 8x112 (conv1), 8x56 (pool1, res2), 4x56 (pool2), 4x28,
  4x14, 4x7; I3D inflates res2 [1,1,1], res3 [1,0,1,0], res4 [1,0,1,0,1,0], res5 [0,1,0]."""
  model = build_model(dict(name='i3d_resnet50', num_classes=400))
  x = jax.ShapeDtypeStruct((1, 8, 224, 224, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  _, state = jax.eval_shape(lambda v, x: model.apply(v, x, capture_intermediates=True), variables, x)
  inter = state['intermediates']
  assert inter['conv1']['__call__'][0].shape == (1, 8, 112, 112, 64)
  sizes = {'res2_block2': (8, 56, 256), 'res3_block3': (4, 28, 512), 'res4_block5': (4, 14, 1024),
           'res5_block2': (4, 7, 2048)}
  for name, (t, hw, c) in sizes.items():
    assert inter[name]['__call__'][0].shape == (1, t, hw, hw, c), name
  plan = {'res2': [1, 1, 1], 'res3': [1, 0, 1, 0], 'res4': [1, 0, 1, 0, 1, 0], 'res5': [0, 1, 0]}
  for stage, inflated in plan.items():
    got = [variables['params'][f'{stage}_block{i}']['conv1']['kernel'].shape[0] == 3
           for i in range(len(inflated))]
    assert got == [bool(v) for v in inflated], stage
  assert variables['params']['conv1']['kernel'].shape == (5, 7, 7, 3, 64)


def test_images_are_nhwc_and_train_mode_needs_dropout_and_batch_stats():
  model = build_model(dict(name='resnet18', num_classes=7, width=4, dropout_rate=0.5,
                           block=bat(2, size=2), insertions={'res3': (1,)}))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 32, 32, 3)), jnp.float32)
  variables = jax.jit(model.init)(jax.random.key(0), x)
  logits = jax.jit(model.apply)(variables, x)
  assert logits.shape == (2, 7)
  logits, updates = jax.jit(lambda v, x: model.apply(
      v, x, train=True, rngs={'dropout': jax.random.key(1)}, mutable=['batch_stats']))(variables, x)
  assert logits.shape == (2, 7)
  changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         updates['batch_stats'], variables['batch_stats'])
  assert all(jax.tree.leaves(changed))
  with pytest.raises(Exception, match='dropout'):
    jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))(variables, x)


@pytest.mark.parametrize('cfg, message', [
    (dict(name='resnet49'), "model.name='resnet49'.*allowed"),
    (dict(name='resnet50', block={'type': 'bot'}, insertions=FIVE), "model.block.type='bot'"),
    (dict(name='resnet50', block=bat(4, window=3), insertions=FIVE), r"unknown field.*window"),
    (dict(name='resnet50', block=bat(3), insertions=FIVE), r'model\.block\.groups=3'),
    (dict(name='resnet50', block=bat(4), insertions={'res6': (1,)}), 'stage'),
    (dict(name='resnet50', block=bat(4), insertions={'res3': (4,)}), r'res3.*0\.\.3'),
])
def test_config_errors_name_the_field(cfg, message):
  with pytest.raises(ValueError, match=message):
    build_model(dict(num_classes=10, **cfg))


@pytest.mark.parametrize('size', [(8, 256, 256), (8, 224, 288)])
def test_c2d_3dbat_runs_fully_convolutionally_with_finite_gradients(size):
  """The full C2D + 3D-BAT depth at resolutions other than the 224^2 it is built for (256: two
  sliding windows at res3/res4; 224x288: non-square with a short last cell) at reduced width
  (16)."""
  cfg = load_config('kinetics_c2d_3dbat').model
  cfg.width = 16
  cfg.bn_group_size = 0  # one clip: BatchNorm over it (the recipe's groups of 16 need 16 clips)
  model = build_model(cfg)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, *size, 3)), jnp.float32)
  variables = jax.jit(lambda x: model.init(jax.random.key(0), x))(x[:, :, :224, :224])

  @jax.jit
  def loss_and_grads(params, x):
    def loss(p):
      logits, _ = model.apply({'params': p, 'batch_stats': variables['batch_stats']}, x,
                              train=True, rngs={'dropout': jax.random.key(1)},
                              mutable=['batch_stats'])
      return jax.nn.logsumexp(logits) - logits[0, 3]
    return jax.value_and_grad(loss)(params)

  value, grads = loss_and_grads(variables['params'], x)
  assert np.isfinite(float(value))
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
  p_grad = grads['res3_bat1']['predictor']['predict_p']['conv']['kernel']
  assert float(jnp.abs(p_grad).sum()) > 0  # the predictor learns at every resolution


def test_nonlocal_recipes_against_the_papers():
  """Params: Table 5 (+7.36 M), Table 8 (C2D+NL 31.7 M, I3D+NL 35.4 M), chebysnl Table 6 (+2.62 M).

  Multiply-adds: the papers' NL "GFLOPs" count the two affinity products (theta^T phi, f g) twice
  and convolutions once (docs/nonlocal.md); with that rule our counts land within 2%."""
  expect = {  # config: (params M, paper GFLOPs)
      'imagenet_r50_nl': (25.56 + 7.36, 4.14 + 3.55),
      'kinetics_c2d_nl': (31.7, 30.7),
      'kinetics_i3d_nl': (35.4, 39.5),
      'imagenet_r50_snl': (25.56 + 2.62, None),
  }
  for name, (params_m, gflops) in expect.items():
    result = model_summary(load_config(name).model)
    assert abs(result['params'] / 1e6 - params_m) < 0.02, (name, result['params'])
    if gflops is not None:
      paper_rule = result['gmacs'] + sum(b['gmacs_matmul'] for b in result['blocks'].values())
      assert abs(paper_rule - gflops) / gflops < 0.02, (name, paper_rule)
