"""The Non-local paper's own Kinetics models (``nonlocal_cvpr2018_slides.md`` Tables 1-2) and the
configs ``configs/nl_kinetics_*.py``: Table 1's map sizes, the released inflation and placement
lists, Table 2e's printed counts and ratios (through ``jax.eval_shape``: nothing is allocated).
"""

import importlib
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bat_jax import build_model
from bat_jax.nn.layers import max_pool_time
from bat_jax.models.registry import BACKBONES
from bat_jax.models.resnet import ResNet
from bat_jax.tools import complexity, summary
from configs import base_nl_kinetics

ROOT = pathlib.Path(__file__).resolve().parent.parent
NL_CONFIGS = sorted(p.stem for p in (ROOT / 'configs').glob('nl_kinetics_*.py'))


def load(name):
  return importlib.import_module(f'configs.{name}').get_config()


def abstract_variables(model_config, shape):
  model = build_model(model_config)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  return model, x, jax.eval_shape(lambda x: model.init({'params': jax.random.key(0)}, x), x)


def test_table1_map_sizes():
  """Table 1 (32x224^2 input): conv1 16x112^2, pool1 -> res2 8x56^2, pool2 -> res3 4x28^2,
  res4 4x14^2, res5 4x7^2 (tiny width: only the shapes matter)."""
  cfg = ml_collections.ConfigDict(dict(name='nlpaper_c2d_resnet50', num_classes=4, width=4))
  model, x, variables = abstract_variables(cfg, (1, 32, 224, 224, 3))
  _, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=['intermediates']),
      variables, x)
  out = {k: v['__call__'][0].shape[1:4] for k, v in state['intermediates'].items()
         if k in ('conv1', 'res2_block2', 'res3_block3', 'res4_block5', 'res5_block2')}
  assert out == {'conv1': (16, 112, 112), 'res2_block2': (8, 56, 56),
                 'res3_block3': (4, 28, 28), 'res4_block5': (4, 14, 14),
                 'res5_block2': (4, 7, 7)}


@pytest.mark.parametrize('window,stride,padding', [(3, 2, 1), (2, 2, 0)])
def test_max_pool_time_against_numpy(window, stride, padding):
  x = np.random.default_rng(0).normal(size=(2, 8, 3, 2, 5))
  padded = np.pad(x, ((0, 0), (padding, padding), (0, 0), (0, 0), (0, 0)),
                  constant_values=-np.inf)
  t_out = (8 + 2 * padding - window) // stride + 1
  want = np.stack([padded[:, i * stride:i * stride + window].max(axis=1) for i in range(t_out)],
                  axis=1)
  got = max_pool_time(jnp.asarray(x, jnp.float32), window, stride, padding)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


# video-nonlocal-net lib/models/resnet_video_org.py, obtain_arc(4) (I3D ResNet-101):
# use_temp_convs_1 = [2] (conv1 1 + 2 * 2 = 5), res2 [1, 1, 1], res3 [1, 0, 1, 0],
# res4 [1 if i % 2 == 0 else 0 for i in range(23)], res5 [0, 1, 0].
RELEASED_I3D_R101 = ([1, 1, 1], [1, 0, 1, 0], [1 - i % 2 for i in range(23)], [0, 1, 0])


@pytest.mark.parametrize('arch,inflated', [('i3d', 'conv1'), ('i3d333', 'conv2')])
def test_i3d_inflation_follows_the_released_lists(arch, inflated):
  """3x1x1 inflates the first 1x1 conv, 3x3x3 the 3x3, in the blocks the released lists name."""
  cfg = ml_collections.ConfigDict(dict(name=f'nlpaper_{arch}_resnet101', num_classes=4, width=4))
  _, _, variables = abstract_variables(cfg, (1, 8, 32, 32, 3))
  params = variables['params']
  assert params['conv1']['kernel'].shape[:3] == (5, 7, 7)
  other = 'conv2' if inflated == 'conv1' else 'conv1'
  for stage, used in zip(('res2', 'res3', 'res4', 'res5'), RELEASED_I3D_R101):
    for i, u in enumerate(used):
      block = params[f'{stage}_block{i}']
      assert block[inflated]['kernel'].shape[0] == 1 + 2 * u, (stage, i)
      assert block[other]['kernel'].shape[0] == 1


def released_positions(num_blocks, mod):
  """resnet_helper.res_stage_nonlocal: a block after residual block idx % mod == mod - 1."""
  return tuple(i for i in range(num_blocks) if i % mod == mod - 1)


def test_nl_placements():
  """One block right before the last residual block of its stage; 5 blocks: ResNet-50 as the
  released LAYER_MOD 2, ResNet-101 as resnet_video_org's res3 mod 2, res4 mod 2 * 4 - 1."""
  r50, r101 = base_nl_kinetics.plans('r50'), base_nl_kinetics.plans('r101')
  assert r50['res2'] == {'res2': (1,)} and r50['res5'] == {'res5': (1,)}
  assert r50['1block'] == {'res4': (4,)} and r101['1block'] == {'res4': (21,)}
  assert r50['5block'] == {'res3': released_positions(4, 2), 'res4': released_positions(6, 2)}
  assert r101['5block'] == {'res3': released_positions(4, 2), 'res4': released_positions(23, 7)}
  assert r50['10block'] == {'res3': (0, 1, 2, 3), 'res4': (0, 1, 2, 3, 4, 5)}
  for plan in (r50, r101):
    assert sum(len(v) for v in plan['5block'].values()) == 5
    assert sum(len(v) for v in plan['10block'].values()) == 10


def bn_params_resnet(stage_sizes, width=64):
  """BN scale + bias count of a bottleneck ResNet, by hand: the stem BN, per block bn1..bn3
  (p, p, 4p) and the first block's projection BN (4p)."""
  count = width
  for s, n in enumerate(stage_sizes):
    p = width * 2**s
    count += n * (p + p + 4 * p) + 4 * p
  return 2 * count


def test_table2e_c2d_r101_counts():
  """Table 2e: the R101 C2D baseline has 43.2 M parameters and 34.2 B FLOPs (docs/nonlocal.md).

  Params: ours count BN's scale and bias too (43,319,760); without them (the paper's count,
  conv + fc only) they round to 43.2 M. FLOPs: our layout (torchvision: stride on the 3x3,
  padded pool1) gives 35.29 G multiply-adds; the released pool1 (unpadded: 55x55 res2) with the
  MSRA/Caffe2 ResNet's stride on the first 1x1 of each stage's first block (res3..res5) gives
  34.2 G."""
  base = summary.summarize(load('nl_kinetics_c2d_r101').model)
  assert round((base['params'] - bn_params_resnet((3, 4, 23, 3))) / 1e6, 1) == 43.2
  assert round(base['params'] / 1e6, 1) == 43.3
  assert round(base['gmacs'], 1) == 35.3
  cfg = load('nl_kinetics_c2d_r101').model
  cfg.pool1_padding = 0
  model, x, variables = abstract_variables(cfg, (1, 32, 224, 224, 3))
  scoped = complexity.macs_by_scope(complexity.macs_table(
      lambda v, x: model.apply(v, x), variables, x))
  first_1x1 = sum(v for k, v in scoped.items()
                  if k.split('/')[1:] in (['res3_block0', 'conv1'], ['res4_block0', 'conv1'],
                                          ['res5_block0', 'conv1']))
  assert first_1x1 > 0
  # stride 2 on that 1x1 instead of the 3x3: it runs on a quarter of the positions
  assert round((sum(scoped.values()) - 0.75 * first_1x1) / 1e9, 1) == 34.2


@pytest.mark.parametrize('name,params,flops', [
    ('nl_kinetics_i3d_r101_333', 1.5, 1.8),
    ('nl_kinetics_i3d_r101_311', 1.2, 1.5),
    ('nl_kinetics_c2d_r101_5block', 1.2, 1.2),
])
def test_table2e_ratios(name, params, flops):
  """Table 2e's params / FLOPs relative to the C2D R101 baseline, rounded as printed (the NL
  rows' affinity products counted once: with the paper rule of docs/nonlocal.md the 5-block
  FLOPs ratio would be 1.3)."""
  base = summary.summarize(load('nl_kinetics_c2d_r101').model)
  row = summary.summarize(load(name).model)
  assert round(row['params'] / base['params'], 1) == params
  assert round(row['gmacs'] / base['gmacs'], 1) == flops


def test_table2g_128_frame_override_builds():
  """Table 2g's fine-tuning (docs/recipes.md): 128 frames at stride 1, batch 16."""
  cfg = load('nl_kinetics_i3d_r50_nl')
  cfg.model.input_size = (128, 224, 224)
  cfg.model.width = 4
  result = summary.summarize(cfg.model)
  assert result['input'] == [1, 128, 224, 224, 3]


def test_summary_json_runs_on_a_new_config():
  """``python -m bat_jax.tools.summary --config=<file> --json`` (every file: test_recipes.py)."""
  out = subprocess.run(
      [sys.executable, '-m', 'bat_jax.tools.summary',
       '--config=configs/nl_kinetics_c2d_r50_5block.py', '--json'],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['model'] == 'nlpaper_c2d_resnet50'
  assert sorted(result['blocks']) == ['res3_nonlocal1', 'res3_nonlocal3', 'res4_nonlocal1',
                                      'res4_nonlocal3', 'res4_nonlocal5']


@pytest.mark.parametrize('name', NL_CONFIGS)
def test_nl_configs_name_their_row_and_recipe(name):
  cfg = load(name)
  doc = importlib.import_module(f'configs.{name}').__doc__
  assert 'Table 2' in doc
  assert cfg.data.num_frames == 32 and cfg.data.frame_stride == 2
  assert tuple(cfg.model.input_size) == (32, 224, 224)
  assert cfg.init_from == ''  # ImageNet weights required (base_nl_kinetics.py)
  assert name in (ROOT / 'docs' / 'recipes.md').read_text()


def test_bad_rows_name_the_field():
  with pytest.raises(ValueError, match='plan='):
    base_nl_kinetics.get_config('r50', 'c2d', '7block')
  with pytest.raises(ValueError, match='arch='):
    base_nl_kinetics.get_config('r50', 'c3d')
  with pytest.raises(ValueError, match='without a plan'):
    base_nl_kinetics.get_config('r50', 'c2d', mode='space')


def test_docs_2d_snippet_runs():
  """docs/nonlocal.md §6 (COCO): the NL block on (N, H, W, C) maps; its output equals the
  one-frame clip's."""
  text = (ROOT / 'docs' / 'nonlocal.md').read_text()
  snippet = text.split('## 6.')[1].split('```python\n')[1].split('```')[0]
  scope = {}
  exec(snippet, scope)  # pylint: disable=exec-used
  block, variables = scope['block'], scope['variables']
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 8))
  variables = block.init(jax.random.key(0), x)
  variables = jax.tree.map(lambda a: a + 0.1, variables)  # a non-identity block (BN scale != 0)
  np.testing.assert_allclose(np.asarray(block.apply(variables, x)),
                             np.asarray(block.apply(variables, x[:, None])[:, 0]), rtol=1e-6)
  with pytest.raises(ValueError, match=r'\(N, H, W, D\)'):
    block.apply(variables, x[0, 0])


def test_bad_inflation_names_the_field():
  x = jnp.zeros((1, 2, 8, 8, 3))
  for fields in (dict(name='resnet18', inflation='3x3x3'), dict(name='resnet50', inflation='3x3')):
    module = ResNet(**{**BACKBONES[fields.pop('name')], **fields}, num_classes=2, width=4)
    with pytest.raises(ValueError, match='inflation'):
      jax.eval_shape(lambda x, m=module: m.init(jax.random.key(0), x), x)
