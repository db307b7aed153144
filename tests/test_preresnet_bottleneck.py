"""``preresnet56_bottleneck``: the released SNL code's CIFAR PreResNet-56
(zh460045050/SNL_ICCV2021 ``SNL-Classification/model/preresnet_snl.py``), the chebysnl CIFAR
rows' backbone.

* its parameter count equals one derived by hand, layer by layer, from that file;
* a small network of the same kind (pre-activation bottlenecks, conv + BN projection on the raw
  input, ``1x1`` conv-BN-ReLU head) computes what a float64 NumPy transcription of the released
  ``forward`` computes (eval mode, random BN statistics).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bat_jax.models.resnet import CIFAR_STAGES, ResNet
from tests.test_backbones import as_f32, count, np_bn, np_conv, randomize, relu


def released_preresnet56_params(num_classes: int) -> int:
  """Parameters of ``preresnet56`` as ``preresnet_snl.py`` builds and runs it: ``conv`` 3->16
  (3x3); per stage ``planes`` 16 / 32 / 64, 9 ``Bottleneck``s (bn1 on the input, conv1 1x1 in ->
  planes, bn2, conv2 3x3, bn3, conv3 1x1 planes -> 4 planes), the first with ``downsample`` =
  conv 1x1 + BN (the second ``_make_layer``, which overrides the first); head ``bn1`` (256),
  ``fc1`` 1x1 conv 256 -> 256 without bias, ``bn2`` (256), ``fc2`` Linear(256, classes). (The
  ``conv1`` / ``fc`` modules train_val.py adds for CIFAR are never called by ``forward``.)"""
  total = 3 * 3 * 3 * 16
  inplanes = 16
  for planes in (16, 32, 64):
    for i in range(9):
      total += 2 * inplanes + inplanes * planes  # bn1, conv1
      total += 2 * planes + 9 * planes * planes  # bn2, conv2
      total += 2 * planes + planes * 4 * planes  # bn3, conv3
      if i == 0:
        total += inplanes * 4 * planes + 2 * 4 * planes  # downsample conv + BN
      inplanes = 4 * planes
  return total + 2 * 256 + 256 * 256 + 2 * 256 + 256 * num_classes + num_classes


def test_hand_count_is_what_we_build():
  assert released_preresnet56_params(100) == 958_708
  assert count('preresnet56_bottleneck', 100, (32, 32))['params'] == 958_708
  assert count('preresnet56_bottleneck', 10, (32, 32))['params'] == released_preresnet56_params(10)


def np_preact_bottleneck(x, p, s, strides):
  """preresnet_snl.py ``Bottleneck.forward``: BN-ReLU-conv1x1, BN-ReLU-conv3x3 (stride),
  BN-ReLU-conv1x1, plus ``downsample(x)`` (conv + BN of the raw input) or ``x``; no ReLU."""
  y = np_conv(relu(np_bn(x, p['bn1'], s['bn1'])), p['conv1']['kernel'][0])
  y = np_conv(relu(np_bn(y, p['bn2'], s['bn2'])), p['conv2']['kernel'][0], strides)
  y = np_conv(relu(np_bn(y, p['bn3'], s['bn3'])), p['conv3']['kernel'][0])
  if 'downsample_conv' in p:
    x = np_bn(np_conv(x, p['downsample_conv']['kernel'][0], strides), p['downsample_bn'],
              s['downsample_bn'])
  return y + x


def test_small_network_matches_the_released_forward():
  """``PreResNet.forward``: conv, layer1..3, ``fc1(relu(bn1(x)))``, ``relu(bn2(.))``, average
  pool (global: ``AvgPool2d(8)`` on the 8x8 maps of 32x32 inputs), (dropout), ``fc2`` — here at
  width 2 (8 / 16 / 32 output channels), 2 + 1 + 1 blocks, 8x8 inputs."""
  stage_sizes = (2, 1, 1)
  model = ResNet(stage_sizes=stage_sizes, residual_block='bottleneck', num_classes=5, width=2,
                 stem='cifar', preact=True, stage_names=CIFAR_STAGES,
                 preact_projection='conv_bn', head_conv=True)
  x = np.random.default_rng(0).normal(size=(2, 8, 8, 3))
  v = randomize(model.init(jax.random.key(0), jnp.asarray(x, jnp.float32)), 1)
  p, s = v['params'], v['batch_stats']
  y = np_conv(x, p['conv1']['kernel'][0])
  for stage, n in zip(CIFAR_STAGES, stage_sizes):
    for i in range(n):
      name = f'{stage}_block{i}'
      assert ('downsample_bn' in p[name]) == (i == 0)  # every stage entry projects (16 -> 8 too)
      y = np_preact_bottleneck(y, p[name], s[name], 2 if (i == 0 and stage != 'res1') else 1)
  y = np_conv(relu(np_bn(y, p['final_bn'], s['final_bn'])), p['head_conv']['kernel'][0])
  y = relu(np_bn(y, p['head_bn'], s['head_bn'])).mean(axis=(1, 2))
  want = y @ p['fc']['kernel'] + p['fc']['bias']
  got = model.apply(as_f32(v), jnp.asarray(x, jnp.float32))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_unknown_projection_is_an_error():
  model = ResNet(stage_sizes=(1, 1, 1), stem='cifar', preact=True, width=2,
                 stage_names=CIFAR_STAGES, preact_projection='identity')
  with pytest.raises(ValueError, match="preact_projection='identity'"):
    model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
