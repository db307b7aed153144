"""Every recipe in configs/ loads and builds at its input size, and matches the table row it names.

Counts come from ``bat_jax.tools.summary`` (``jax.eval_shape`` + jaxpr multiply-adds; nothing is
allocated). Params are compared at the precision the paper prints (half a unit of its last digit);
"GFLOPs" are multiply-adds, within 2% unless a row says why not (docs/recipes.md has the table).
"""

import functools
import importlib
import inspect
import pathlib
import re

import ml_collections
import pytest

from bat_jax import build_model
from bat_jax.data import video
from bat_jax.tools import summary
from configs import args
from configs import blocks

CONFIG_DIR = pathlib.Path(__file__).resolve().parent.parent / 'configs'
CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob('*.py')
                 if p.stem not in ('__init__', 'args', 'blocks'))


@functools.lru_cache(maxsize=None)
def counts(spec):
  """Counts of ``'<file>[:arg]'`` (configs.args.load)."""
  cfg = args.load(spec)
  result = summary.summarize(cfg.model)
  # The papers' NL "GFLOPs" count the affinity products twice (docs/nonlocal.md).
  result['paper_gflops'] = result['gmacs'] + sum(b['gmacs_matmul']
                                                 for b in result['blocks'].values())
  return result


@pytest.mark.parametrize('name', CONFIGS)
def test_every_config_loads_builds_and_names_its_source(name):
  module = importlib.import_module(f'configs.{name}')
  cfg = module.get_config()
  assert isinstance(cfg, ml_collections.ConfigDict)
  build_model(cfg.model)
  result = counts(name)
  assert result['params'] > 0 and result['gmacs'] > 0
  assert list(result['input'][1:-1]) == list(cfg.model.input_size)
  doc = inspect.getdoc(module) or ''
  if not name.startswith(('base_', 'demo_')):
    assert 'Table' in doc or '§' in doc, f'{name}: the docstring names no table row'
  for field in ('global_batch_size', 'num_epochs', 'base_learning_rate', 'weight_decay'):
    assert field in cfg, (name, field)
  if 'train_augment' in cfg.data:  # the augmentation and its short sides go together
    video.check_train_augment(cfg.data.train_augment, cfg.data.train_short_side)


def _expand(name: str) -> list[str]:
  """``'x_{a,b}.py'`` -> ``['x_a.py', 'x_b.py']`` (docs write a file family with braces)."""
  head, brace, rest = name.partition('{')
  if not brace:
    return [name]
  choices, _, tail = rest.partition('}')
  return [e for c in choices.split(',') for e in _expand(head + c + tail)]


def test_every_config_is_listed_in_the_recipes_doc():
  """docs/recipes.md names each recipe file (``name``, ``name.py`` or a brace family) in the
  table or section that gives its paper row."""
  text = (CONFIG_DIR.parent / 'docs' / 'recipes.md').read_text()
  listed = {e for m in re.findall(r'[a-z0-9_]+(?:\{[a-z0-9_,]+\}[a-z0-9_]*)*', text)
            for e in _expand(m)}
  missing = [n for n in CONFIGS if not n.startswith('base_') and n not in listed]
  assert not missing, f'configs not in docs/recipes.md: {missing}'


@pytest.mark.parametrize('kind', ['nl', 'ns', 'a2', 'cgnl', 'snl'])
@pytest.mark.parametrize('variant', sorted(blocks.CIFAR_VARIANTS))
def test_cifar_rows_every_column_builds(kind, variant):
  """chebysnl §3.1: every row (block) x column (C_s, stage, x3) of Tables 2-4 builds; the
  inserted blocks sit after the second residual block of the named stages with C_s = C_1 / r."""
  cfg = args.load(f'cifar100_preresnet56_{kind}:{variant}')
  reduction, plan = blocks.CIFAR_VARIANTS[variant]
  assert cfg.model.block.reduction == reduction
  result = counts(f'cifar100_preresnet56_{kind}:{variant}')
  block = {'nl': 'nonlocal', 'snl': 'snl'}.get(kind, 'chebyshev')
  assert sorted(result['blocks']) == sorted(f'{s}_{block}1' for s in plan)
  width = {'res1': 64, 'res2': 128, 'res3': 256}  # preresnet56_bottleneck's outputs
  for stage in plan:  # theta / phi / g convs have C_s = C_1 / r outputs
    c1, cs = width[stage], width[stage] // reduction
    per_block = result['blocks'][f'{stage}_{block}1']['params']
    if kind == 'nl':
      assert per_block == 3 * (c1 * cs + cs) + cs * c1 + c1 + 2 * c1
    elif kind == 'snl':  # W_0, W_1 free
      assert per_block == 3 * c1 * cs + 2 * cs * c1 + 2 * c1
    else:  # Table 1's form: one W
      assert cfg.model.block.weights == 'table1'
      assert per_block == 3 * c1 * cs + cs * c1 + 2 * c1
  assert result['params'] == 958_708 + sum(b['params'] for b in result['blocks'].values())


# config: (params M as printed, half a unit of its last digit or None (not compared),
#          GFLOPs as printed or None, 'macs' | 'paper' (NL rule), relative tolerance, source)
TABLE_ROWS = {
    'imagenet_r50': (25.56, .005, 4.14, 'macs', .02, 'Tables 2/4/5 baseline'),
    'imagenet_r50_bat': (30.23, .005, 5.44, 'macs', .02, 'Table 2 block-based / Table 4 k=4'),
    'imagenet_r50_bat:matrix=full': (31.86, .005, 5.50, 'macs', .02, 'Table 2 full resolution'),
    # Ours 5.39: the paper's block-based figure pays for dense H x H products that our kron-free
    # transform does not, so 'downsampling' cannot be 0.22 G cheaper here (docs/models.md).
    'imagenet_r50_bat:matrix=downsample': (30.23, .005, 5.22, 'macs', .035, 'Table 2 downsampling'),
    'imagenet_r50_bat:k=0': (30.17, .005, 5.43, 'macs', .02, 'Table 4 k=0'),
    'imagenet_r50_bat:k=1': (30.18, .005, 5.44, 'macs', .02, 'Table 4 k=1'),
    'imagenet_r50_bat:k=2': (30.19, .005, 5.44, 'macs', .02, 'Table 4 k=2'),
    'imagenet_r50_bat:k=16': (31.09, .005, 5.45, 'macs', .02, 'Table 4 k=16'),
    'imagenet_r50_nl': (25.56 + 7.36, .005, 4.14 + 3.55, 'paper', .02, 'Table 5 ResNet-50 +NL'),
    'imagenet_r18': (11.69, .005, None, 'macs', None, 'Table 5 ResNet-18 baseline'),
    # SE: the paper adds 0.06 G for SE (4.14 -> 4.2, 5.44 -> 5.5) where SE's FCs are 0.0025 G.
    'imagenet_se_r50': (28.1, .05, 4.2, 'macs', .03, 'Table 6 SE-ResNet-50'),
    'imagenet_se_r50_bat': (None, None, 5.5, 'macs', .025, 'Table 6 SE-ResNet-50 + BAT'),
    'imagenet_resnext50': (25.0, .05, 4.3, 'macs', .02, 'Table 6 ResNeXt-50 (32x4d)'),
    'imagenet_resnext50_bat': (29.7, .05, 5.6, 'macs', .02, 'Table 6 ResNeXt-50 + BAT'),
    'imagenet_r101_bat': (49.2, .05, 9.2, 'macs', .02, 'Table 6 ResNet-101 + BAT'),
    'imagenet_r152_bat': (64.9, .05, 12.9, 'macs', .02, 'Table 6 ResNet-152 + BAT'),
    'mini_kinetics_c2d': (23.92, .005, 19.55, 'macs', .02, 'Table 7 baseline'),
    'mini_kinetics_c2d_nl': (31.28, .005, 30.69, 'paper', .02, 'Table 7 NL (No)'),
    'mini_kinetics_c2d_nl_pretrained': (31.28, .005, 30.69, 'paper', .02, 'Table 7 NL (Yes)'),
    'mini_kinetics_c2d_bat:tk=0': (28.60, .005, 24.76, 'macs', .02, 'Table 7 BAT (4, 0)'),
    'mini_kinetics_c2d_bat:tk=1': (28.60, .005, 24.77, 'macs', .02, 'Table 7 BAT (4, 1)'),
    'mini_kinetics_c2d_bat:tk=2': (28.60, .005, 24.77, 'macs', .02, 'Table 7 BAT (4, 2)'),
    'mini_kinetics_c2d_bat': (28.60, .005, 24.77, 'macs', .02, 'Table 7 BAT (4, 4)'),
    'kinetics_c2d': (24.3, .05, 19.6, 'macs', .02, 'Table 8 C2D'),
    'kinetics_c2d_nl': (31.7, .05, 30.7, 'paper', .02, 'Table 8 C2D + NL'),
    'kinetics_c2d_bat': (29.2, .05, 24.8, 'macs', .02, 'Table 8 C2D + BAT'),
    'kinetics_c2d_3dbat': (29.2, .05, 24.8, 'macs', .02, 'Table 8 C2D + 3D-BAT'),
    # Table 8 prints 28.4 M for I3D; the released I3D has 28.04 M, which we match (test_models).
    'kinetics_i3d': (None, None, 28.4, 'macs', .02, 'Table 8 I3D'),
    'kinetics_i3d_nl': (35.4, .05, 39.5, 'paper', .02, 'Table 8 I3D + NL'),
    'kinetics_i3d_bat': (32.9, .05, 33.6, 'macs', .02, 'Table 8 I3D + BAT'),
    'kinetics_tsm_r50': (24.3, .05, 32.8, 'macs', .02, 'Table 8 TSM'),
    'ssv1_rsa_r50': (22.0, .05, 35.9, 'macs', .02, 'RSA supplement Table 2b, 7 layers'),
    'imagenet_r50_snl': (25.56 + 2.62, .005, None, 'macs', None, 'chebysnl Table 6 +Ours'),
}


@pytest.mark.parametrize('name', sorted(TABLE_ROWS))
def test_config_matches_its_table_row(name):
  params_m, params_tol, gflops, rule, gflops_tol, source = TABLE_ROWS[name]
  result = counts(name)
  if params_m is not None:
    assert abs(result['params'] / 1e6 - params_m) <= params_tol + 1e-9, (source, result['params'])
  if gflops is not None:
    ours = result['paper_gflops'] if rule == 'paper' else result['gmacs']
    assert abs(ours - gflops) / gflops < gflops_tol, (source, ours)


def test_table5_resnet18_deltas():
  """Table 5, ResNet-18 (11.69 M baseline): +NL +0.17 M / +0.23 G, +BAT +0.13 M / +0.03 G."""
  base = counts('imagenet_r18')
  assert round(base['params'] / 1e6, 2) == 11.69
  nl, bat = counts('imagenet_r18_nl'), counts('imagenet_r18_bat')
  assert nl['params'] - base['params'] == 165_568
  assert bat['params'] - base['params'] == 128_232
  assert round((nl['params'] - base['params']) / 1e6, 2) == 0.17
  assert round((bat['params'] - base['params']) / 1e6, 2) == 0.13
  assert round(nl['paper_gflops'] - base['gmacs'], 2) == 0.23  # 0.14 counting each MAC once
  assert round(bat['gmacs'] - base['gmacs'], 2) == 0.03


def test_table6_se_resnet50_bat_falls_short_of_33_1m():
  """SE-ResNet-50 + BAT: the paper prints 33.1 M; the released code's structure (SE in every
  bottleneck, five BAT-Blocks without SE) has 32,765,212. Kept as a known gap (docs/recipes.md)."""
  se, se_bat = counts('imagenet_se_r50'), counts('imagenet_se_r50_bat')
  assert se_bat['params'] == 32_765_212
  assert se_bat['params'] - se['params'] == counts('imagenet_r50_bat')['params'] - counts(
      'imagenet_r50')['params']
  assert 0.28 < 33.1 - se_bat['params'] / 1e6 < 0.39


def test_table3_positions_are_before_the_last_block():
  expect = {'imagenet_r50_bat:one_in=res3': {'res3_bat2'},
            'imagenet_r50_bat:one_in=res4': {'res4_bat4'},
            'imagenet_r50_bat:one_in=res5': {'res5_bat1'},
            'imagenet_r50_bat:one_in=res3+res4': {'res3_bat2', 'res4_bat4'}}
  for name, names in expect.items():
    assert set(counts(name)['blocks']) == names, name
  def bat_params(d, k=4, s=7):  # released image block: 343,156 (D=512), 1,330,292 (D=1024)
    c = d // 2
    return (d * c + c + 2 * c) + (c * c + c + 2 * c) + (c * d + d + 2 * d) + (
        c * k + k + 2 * k) + 2 * (s * k * s * s * k + s * s * k)
  assert bat_params(512) == 343_156 and bat_params(1024) == 1_330_292
  assert counts('imagenet_r50_bat:one_in=res5')['blocks']['res5_bat1']['params'] == bat_params(2048)
  assert counts('imagenet_r50_bat:one_in=res4')['blocks']['res4_bat4']['params'] == bat_params(1024)


def test_table9_longer_clips_and_deeper_backbone():
  """Table 9 gives accuracy only; check what the caption fixes: temporal block grid 8 (an 8 x 8
  temporal matrix at 16 frames, 8 cells of 4 frames at 64), input sizes, the ResNet-101 plan."""
  for name, frames in (('kinetics_c2d_3dbat:frames=16', 16), ('kinetics_c2d_3dbat:frames=64', 64),
                       ('kinetics_r101_c2d_3dbat:frames=16', 16), ('kinetics_r101_c2d_3dbat', 8)):
    cfg = args.load(name)
    assert tuple(cfg.model.input_size) == (frames, 224, 224) and cfg.data.num_frames == frames
    assert cfg.model.block.temporal_size == (8 if frames > 8 else 4)
    assert cfg.model.block.temporal_groups == 4 and cfg.model.block.groups == 8
  assert set(counts('kinetics_r101_c2d_3dbat')['blocks']) == {
      'res3_bat1', 'res3_bat3', 'res4_bat6', 'res4_bat13', 'res4_bat20'}
  # The temporal predictor grows with ts: 8*8*4 outputs over 8 taps instead of 4*4*4 over 4.
  assert counts('kinetics_c2d_3dbat:frames=16')['params'] > counts('kinetics_c2d_3dbat')['params']
  assert (counts('kinetics_c2d_3dbat:frames=64')['params']
          == counts('kinetics_c2d_3dbat:frames=16')['params'])
