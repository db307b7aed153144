"""Hara et al.'s 3D ResNet-50 (registry ``hara3d_resnet50``; kenshohara/3D-ResNets-PyTorch,
CVPR2018 branch ``models/resnet.py``): parameter count by ``jax.eval_shape`` against a hand count
of that file's layers, the layer geometry, and ``temporal_strides`` against the unstrided block."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bat_jax import build_model
from bat_jax.models import resnet
from bat_jax.tools import summary


def hara_resnet_params(num_classes: int, layers=(3, 4, 6, 3)) -> int:
  """Parameters of the released ``resnet50(shortcut_type='B')``, written from its layer list:
  conv1 ``Conv3d(3, 64, 7)`` + BN; per Bottleneck ``1x1x1``, ``3x3x3``, ``1x1x1 (x4)`` convs
  without bias, each + BN (weight, bias); a ``1x1x1`` conv + BN shortcut on the first block of each
  stage (stride 2 or 64 -> 256 channels); ``Linear(2048, num_classes)``."""
  count = 3 * 64 * 7**3 + 2 * 64
  inplanes = 64
  for planes, blocks in zip((64, 128, 256, 512), layers):
    for i in range(blocks):
      count += inplanes * planes + 2 * planes
      count += planes * planes * 3**3 + 2 * planes
      count += planes * planes * 4 + 2 * planes * 4
      if i == 0:
        count += inplanes * planes * 4 + 2 * planes * 4
      inplanes = planes * 4
  return count + 2048 * num_classes + num_classes


def _cfg(num_classes=400):
  return ml_collections.ConfigDict(dict(name='hara3d_resnet50', num_classes=num_classes,
                                        input_size=(16, 112, 112)))


@pytest.mark.parametrize('num_classes,expected', [(400, 47_018_576), (101, 46_405_925)])
def test_parameter_count_matches_the_released_model(num_classes, expected):
  """Kinetics (400-way, the released resnet-50-kinetics.pth) and UCF-101 (101-way) heads. The
  expected counts are also what torch reports for the released ``resnet50(shortcut_type='B')``
  (docs/models.md)."""
  assert hara_resnet_params(num_classes) == expected
  assert summary.summarize(_cfg(num_classes=num_classes))['params'] == expected


def test_geometry_of_the_released_model():
  """conv1 7x7x7, 3x3x3 conv2 in every bottleneck, and 16x112^2 -> res2 8x28^2 ... res5 1x4^2
  (the released head pools (ceil(16 / 16), ceil(112 / 32), ...) = 1x4x4)."""
  model = build_model(_cfg())
  x = jax.ShapeDtypeStruct((1, 16, 112, 112, 3), jnp.float32)
  init = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  out, variables = jax.eval_shape(
      lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=['intermediates']),
      init, x)
  assert out.shape == (1, 400)
  params = init['params']
  assert params['conv1']['kernel'].shape == (7, 7, 7, 3, 64)
  sizes = (3, 4, 6, 3)
  for s, stage in enumerate(resnet.STAGES):
    for i in range(sizes[s]):
      block = params[f'{stage}_block{i}']
      assert block['conv2']['kernel'].shape[:3] == (3, 3, 3)
      assert block['conv1']['kernel'].shape[:3] == (1, 1, 1)
      assert ('downsample_conv' in block) == (i == 0)
  inter = variables['intermediates']
  shapes = {stage: inter[f'{stage}_block{sizes[s] - 1}']['__call__'][0].shape[1:4]
            for s, stage in enumerate(resnet.STAGES)}
  assert shapes == {'res2': (8, 28, 28), 'res3': (4, 14, 14), 'res4': (2, 7, 7),
                    'res5': (1, 4, 4)}


def test_temporal_strides_take_every_other_frame_of_the_unstrided_block():
  """With padding k // 2 (PyTorch's), a stride-2 3x3x3 conv2 and 1x1x1 shortcut give, in eval
  mode, exactly the stride-1-in-time block's output at frames 0, 2, 4, ..."""
  kw = dict(features=2, strides=2, temporal_kernel=3, inflation='3x3x3')
  strided = resnet.Bottleneck(temporal_strides=True, **kw)
  flat = resnet.Bottleneck(**kw)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 6, 4, 4, 4)), jnp.float32)
  shapes = jax.eval_shape(strided.init, jax.random.PRNGKey(1), x)
  rng = np.random.default_rng(1)  # random weights, BN statistics and scales
  variables = jax.tree_util.tree_map(
      lambda v: jnp.asarray(rng.uniform(0.5, 1.5, v.shape), jnp.float32), shapes)
  got = jax.jit(strided.apply)(variables, x)
  want = jax.jit(flat.apply)(variables, x)
  assert got.shape == (1, 3, 2, 2, 8) and want.shape == (1, 6, 2, 2, 8)
  np.testing.assert_allclose(got, want[:, ::2], rtol=1e-5, atol=1e-5)
