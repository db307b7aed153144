"""``bat_jax.tools.import_torch`` on the released BAT video code's Non-local models (``--nltype
nl3d``, BA-Transform/BAT-Video-Classification ``models/non_local.py`` ``NONLocalBlock3D`` inside
``models/resnet.py``'s C2D / I3D ResNet-50).

* full-size released-layout C2D+NL and I3D+NL state dicts (random values) import with zero
  missing / unexpected / mismatched names, and the generator has the released parameter counts;
* a tiny-width released C2D+NL and I3D+NL (random weights, random BN statistics), run by a PyTorch
  transcription of the released forward in ``.venv-torch`` (``$BAT_JAX_TORCH_PYTHON``), give the
  same logits as our model after the import, with ``model.pool1_padding=0`` (the released stem
  pool; our default is torchvision's padding 1).
"""

import functools
import json
import os
import subprocess

import jax
import numpy as np
import pytest

from bat_jax import build_model
from bat_jax.tools import import_torch as it
from tests.test_import_torch import n_released_params, released_state_dict, torch_python

# released_code_facts.md: C2D 24,327,632, C2D+NL 31,686,096, I3D 28,043,472; I3D+NL adds the
# same five blocks as C2D+NL.
RELEASED_PARAMS = {'c2d': 31_686_096, 'i3d': 28_043_472 + 31_686_096 - 24_327_632}

_TORCH_SCRIPT = r'''
import json, sys
import numpy as np, torch
import torch.nn.functional as F

d = sys.argv[1]
x0 = torch.from_numpy(np.load(f'{d}/x.npy'))  # (n, 3, t, h, w), float64
out = {}
for arch in ('c2d', 'i3d'):
  sd = {k: torch.from_numpy(np.asarray(v, np.float64))
        for k, v in np.load(f'{d}/{arch}.npz').items()}

  def conv(x, name, stride=(1, 1, 1), spatial_pad=0):
    w = sd[f'{name}.weight']
    pad = (w.shape[2] // 2, spatial_pad, spatial_pad)
    return F.conv3d(x, w, sd.get(f'{name}.bias'), stride, pad)

  def bn(x, name):
    return F.batch_norm(x, sd[f'{name}.running_mean'], sd[f'{name}.running_var'],
                        sd[f'{name}.weight'], sd[f'{name}.bias'], False, 0.0, 1e-5)

  def bottleneck(x, p, stride):  # models/resnet.py Bottleneck.forward
    y = F.relu(bn(conv(x, f'{p}.conv1'), f'{p}.bn1'))
    y = F.relu(bn(conv(y, f'{p}.conv2', (1, stride, stride), 1), f'{p}.bn2'))
    y = bn(conv(y, f'{p}.conv3'), f'{p}.bn3')
    if f'{p}.downsample.0.weight' in sd:
      x = bn(conv(x, f'{p}.downsample.0', (1, stride, stride)), f'{p}.downsample.1')
    return F.relu(y + x)

  def nl3d(x, p):  # models/non_local.py _NonLocalBlockND.forward, sub_sample, use_scale, head 1
    n, c = x.shape[:2]
    inter = sd[f'{p}.theta.weight'].shape[0]
    pooled = F.max_pool3d(x, [1, 2, 2])
    g_x = conv(pooled, f'{p}.g.1').view(n, inter, -1).permute(0, 2, 1)
    theta_x = conv(x, f'{p}.theta').view(n, inter, -1).permute(0, 2, 1)
    phi_x = conv(pooled, f'{p}.phi.1').view(n, inter, -1)
    f = F.softmax(torch.matmul(theta_x, phi_x) * inter ** -.5, dim=-1)
    y = torch.matmul(f, g_x).permute(0, 2, 1).contiguous().view(n, inter, *x.shape[2:])
    return bn(conv(y, f'{p}.W.0'), f'{p}.W.1') + x

  with torch.no_grad():  # models/resnet.py ResNet.forward (eval: dropout is the identity)
    x = F.relu(bn(conv(x0, 'conv1', (1, 2, 2), 3), 'bn1'))
    x = F.max_pool3d(x, [1, 3, 3], [1, 2, 2], 0)
    for layer in (1, 2, 3, 4):
      i = 0
      while f'layer{layer}.{i}.conv1.weight' in sd:
        x = bottleneck(x, f'layer{layer}.{i}', 2 if (i == 0 and layer > 1) else 1)
        if f'layer{layer}.nl{i}.theta.weight' in sd:
          x = nl3d(x, f'layer{layer}.nl{i}')
        i += 1
      if layer == 1:
        x = F.max_pool3d(x, [2, 1, 1], [2, 1, 1])
    x = F.avg_pool3d(x, [x.shape[2], 7, 7], stride=1)
    out[arch] = conv(x, 'fc').mean(dim=(2, 3, 4)).tolist()
with open(f'{d}/logits.json', 'w') as fh:
  json.dump(out, fh)
'''


def nl_config(arch, **model):
  from configs import kinetics_c2d_nl, kinetics_i3d_nl  # pylint: disable=g-import-not-at-top
  cfg = (kinetics_c2d_nl if arch == 'c2d' else kinetics_i3d_nl).get_config()
  cfg.model.update(model)
  return cfg


@pytest.mark.parametrize('arch', ['c2d', 'i3d'])
def test_released_nl_layout_imports_completely(arch, tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  sd = released_state_dict(np.random.default_rng(0), block='nl3d', i3d=arch == 'i3d')
  assert n_released_params(sd) == RELEASED_PARAMS[arch]  # the generator is the released model
  path = str(tmp_path / f'{arch}_nl.safetensors')
  save_file(sd, path)
  report = it.import_checkpoint(path, nl_config(arch), None, strict=True, log=None)
  assert report.ok and not report.plan.inflate
  assert not report.plan.missing and not report.unexpected and not report.mismatched
  assert len(report.plan.load) + len(report.converted.skipped) == len(sd)
  loaded = report.as_dict()['loaded']
  assert loaded['params/res4_nonlocal5/w/kernel'] == 'layer3.nl5.W.0.weight'
  assert loaded['params/res3_nonlocal1/phi/bias'] == 'layer2.nl1.phi.1.bias'
  assert loaded['params/res3_nonlocal3/g/kernel'] == 'layer2.nl3.g.1.weight'
  assert loaded['batch_stats/res4_nonlocal3/bn/var'] == 'layer3.nl3.W.1.running_var'
  arrays = report.converted.arrays
  np.testing.assert_array_equal(arrays['params/res4_nonlocal1/theta/kernel'][0, 0, 0].T,
                                sd['layer3.nl1.theta.weight'][:, :, 0, 0, 0])
  if arch == 'i3d':  # the released inflation: layer3.0.conv1 is 3x1x1, layer3.1.conv1 1x1x1
    assert arrays['params/res4_block0/conv1/kernel'].shape == (3, 1, 1, 512, 256)
    assert arrays['params/res4_block1/conv1/kernel'].shape == (1, 1, 1, 1024, 256)


def test_nl_names_do_not_map_into_a_bat_model():
  """The block's part names depend on the model's block type: a released ``nl3d`` tensor has no
  place in a BAT model (and a BAT tensor none in a Non-local one)."""
  assert it.map_name('layer2.nl1.W.0.weight', insert_name='bat') is None
  assert it.map_name('layer2.nl1.conv1.0.weight', insert_name='nonlocal') is None
  assert it.map_name('layer2.nl1.W.0.weight', insert_name='nonlocal') == (
      'params/res3_nonlocal1/w/kernel', 'conv')
  assert it.map_name('layer2.nl1.phi.weight', insert_name='nonlocal') == (
      'params/res3_nonlocal1/phi/kernel', 'conv')  # sub_sample=False: no max pool at index 0


def test_released_nl_models_give_the_released_logits(tmp_path):
  """Tiny width (4), 4 x 224 x 224 clips (the released head pools 7x7: global at 224): the
  released C2D+NL and I3D+NL forwards (PyTorch, float64) and ours after import agree."""
  d = str(tmp_path)
  rng = np.random.default_rng(3)
  x = rng.normal(0.0, 1.0, (2, 3, 4, 224, 224))
  np.save(os.path.join(d, 'x.npy'), x)
  sds = {}
  for arch in ('c2d', 'i3d'):
    sd = released_state_dict(rng, width=4, num_classes=5, block='nl3d', i3d=arch == 'i3d')
    for name, w in sd.items():  # every conv and fc ~ N(0, 1 / fan_in): activations stay O(1),
      if w.ndim == 5:  # so the attention softmaxes stay soft (float32 vs float64 comparable)
        sd[name] = rng.normal(0.0, 1.0 / np.sqrt(w[0].size), w.shape).astype(np.float32)
    np.savez(os.path.join(d, f'{arch}.npz'), **sd)
    sds[arch] = sd
  script = os.path.join(d, 'released_nl.py')
  with open(script, 'w') as f:
    f.write(_TORCH_SCRIPT)
  proc = subprocess.run([torch_python(), script, d], capture_output=True, text=True, timeout=600,
                        check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(os.path.join(d, 'logits.json')) as f:
    want = {k: np.asarray(v) for k, v in json.load(f).items()}

  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  for arch, sd in sds.items():
    path = os.path.join(d, f'{arch}.safetensors')
    save_file(sd, path)
    cfg = nl_config(arch, width=4, num_classes=5, input_size=(4, 224, 224), pool1_padding=0)
    report = it.import_checkpoint(path, cfg, None, strict=True, log=None)
    variables = it._unflat(report.converted.arrays)  # pylint: disable=protected-access
    model = build_model(cfg.model)
    forward = jax.jit(functools.partial(model.apply, train=False))
    got = np.asarray(forward(variables, np.asarray(x.transpose(0, 2, 3, 4, 1), np.float32)))
    scale = np.abs(want[arch]).max()
    assert scale > 0.1 and np.ptp(want[arch]) > 0.1 * scale  # logits not trivially constant
    np.testing.assert_allclose(got, want[arch], rtol=1e-4, atol=1e-4 * scale, err_msg=arch)
