"""``cifar_resnet50`` and the ``cifar_r50*`` recipes: chebysnl Table 5's ResNet50 columns.

The released SNL code (zh460045050/SNL_ICCV2021, ``SNL-Classification``) trains torchvision's
ResNet-50 (``model/resnet_snl.py``) whose conv1 ``train_val.py`` 337-341 replaces by a 3x3
stride-1 conv and whose max pool it removes, with a new ``fc`` 2048 -> classes (344-346).

* its parameter count equals one derived by hand from those files (and the same derivation with
  the ImageNet stem and 1000 classes gives torchvision's 25,557,032, chebysnl Table 6's 25.56 M);
* a small network of the same kind computes what a float64 NumPy transcription of the released
  ``forward`` computes (eval mode, random BN statistics);
* every recipe builds for both data sets, puts its block where resnet_snl.py 219 does, and its
  command is in docs/recipes.md.
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bat_jax.models import registry
from bat_jax.models.resnet import ResNet
from bat_jax.tools import summary
from configs import args
from tests.test_backbones import as_f32, np_bn, np_bottleneck, np_conv, randomize, relu

DOCS = pathlib.Path(__file__).resolve().parent.parent / 'docs' / 'recipes.md'
# Table 5's rows: Backbone, + NL, + NS, + A^2, + CGNL, + Ours.
ROWS = ('', '_nl', '_ns', '_a2', '_cgnl', '_snl')
DATASETS = {'cifar10': 10, 'cifar100': 100}


def released_resnet50_params(num_classes: int, stem_kernel: int) -> int:
  """Parameters of resnet_snl.py's ``resnet50`` (``Bottleneck``, layers [3, 4, 6, 3]): conv1
  ``stem_kernel`` x ``stem_kernel`` 3 -> 64 (7 as built, 3 after train_val.py's CIFAR swap), bn1;
  per stage ``planes`` 64 / 128 / 256 / 512: conv1 1x1 in -> planes, bn1, conv2 3x3, bn2, conv3
  1x1 -> 4 planes, bn3, the first block with ``downsample`` = 1x1 conv + BN; fc 2048 -> classes
  with bias. (BN: weight and bias; running statistics are not parameters.)"""
  total = stem_kernel * stem_kernel * 3 * 64 + 2 * 64
  inplanes = 64
  for planes, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
    for i in range(blocks):
      total += inplanes * planes + 2 * planes
      total += 9 * planes * planes + 2 * planes
      total += planes * 4 * planes + 2 * 4 * planes
      if i == 0:
        total += inplanes * 4 * planes + 2 * 4 * planes
      inplanes = 4 * planes
  return total + 2048 * num_classes + num_classes


def test_hand_count_is_what_we_build():
  assert released_resnet50_params(1000, stem_kernel=7) == 25_557_032  # torchvision; Table 6 25.56
  assert released_resnet50_params(100, stem_kernel=3) == 23_705_252
  for dataset, classes in DATASETS.items():
    got = summary.summarize(args.load(f'cifar_r50:dataset={dataset}').model)
    assert got['params'] == released_resnet50_params(classes, stem_kernel=3), dataset
    assert list(got['input'][1:-1]) == [32, 32]


def test_small_network_matches_the_released_forward():
  """``ResNet.forward`` after train_val.py's swap: conv1 3x3 stride 1 (padding 1), bn1, ReLU, no
  max pool, layer1..4 (post-activation bottlenecks, stride 2 from layer2 on), average pool
  (``AvgPool2d(4)`` on the 4x4 maps of 32x32 inputs: the global mean), (dropout), fc — here with
  the registry entry's fields at width 2 (8 / 16 / 32 / 64 output channels), 2 + 1 + 1 + 1
  blocks, 16x16 inputs (2x2 maps at the pool)."""
  fields = {k: v for k, v in registry.BACKBONES['cifar_resnet50'].items() if k != 'stage_sizes'}
  stage_sizes = (2, 1, 1, 1)
  model = ResNet(stage_sizes=stage_sizes, num_classes=5, width=2, **fields)
  x = np.random.default_rng(0).normal(size=(2, 16, 16, 3))
  v = randomize(model.init(jax.random.key(0), jnp.asarray(x, jnp.float32)), 1)
  p, s = v['params'], v['batch_stats']
  assert p['conv1']['kernel'].shape == (1, 3, 3, 3, 2)
  y = relu(np_bn(np_conv(x, p['conv1']['kernel'][0]), p['bn1'], s['bn1']))[:, None]
  for stage, n in enumerate(stage_sizes):
    for i in range(n):
      y = np_bottleneck(y, p[f'res{stage + 2}_block{i}'], s[f'res{stage + 2}_block{i}'],
                        strides=2 if (stage > 0 and i == 0) else 1, groups=1,
                        width_per_group=64, se=False, shift=0)
  assert y.shape[2:4] == (2, 2)  # 16 -> 16 (no pool) -> 16, 8, 4, 2
  want = y.mean(axis=(1, 2, 3)) @ p['fc']['kernel'] + p['fc']['bias']
  got = model.apply(as_f32(v), jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('dataset', sorted(DATASETS))
@pytest.mark.parametrize('row', ROWS)
def test_every_row_builds_and_is_documented(row, dataset):
  """Each Table 5 ResNet50 cell: the data set and classes, one block right before the last
  residual block of res4 (after block 4 of 6, resnet_snl.py 219) with C_s = 1024 / 2, and the
  exact command in docs/recipes.md."""
  spec = f'cifar_r50{row}:dataset={dataset}'
  cfg = args.load(spec)
  assert cfg.data.name == dataset and cfg.model.num_classes == DATASETS[dataset]
  result = summary.summarize(cfg.model)
  base = released_resnet50_params(DATASETS[dataset], stem_kernel=3)
  assert result['params'] == base + sum(b['params'] for b in result['blocks'].values())
  if row:
    assert dict(cfg.model.insertions) == {'res4': (4,)}
    (name, block), = result['blocks'].items()
    assert name.startswith('res4_') and name.endswith('4')
    c1, cs = 1024, 512
    want = {'_nl': 3 * (c1 * cs + cs) + cs * c1 + c1 + 2 * c1,   # theta, phi, g, W (biases), BN
            '_snl': 3 * c1 * cs + 2 * cs * c1 + 2 * c1}.get(row, 3 * c1 * cs + cs * c1 + 2 * c1)
    assert block['params'] == want
  else:
    assert not result['blocks']
  assert f'--config=configs/{spec.replace(":", ".py:")}`' in DOCS.read_text()


def test_unknown_dataset_is_an_error():
  with pytest.raises(ValueError, match="dataset='cifar1000'"):
    args.load('cifar_r50_snl:dataset=cifar1000')
