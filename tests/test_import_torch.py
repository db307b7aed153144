"""``bat_jax.tools.import_torch``: PyTorch state dicts -> our variables.

* torchvision ResNet-50 (random weights, random BN statistics), imported through the CLI, gives
  torchvision's logits to 1e-4 of their scale (eval mode);
* a checkpoint in the BAT authors' released video layout, built here from the names and shapes of
  their ``models/resnet.py`` + ``models/non_local.py`` (numpy, saved as safetensors), fits the
  C2D + 3D-BAT model of ``configs/kinetics_c2d_3dbat.py`` with zero missing / unexpected /
  mismatched names, and its parameter count is the released model's 29,190,232;
* one released BAT block (2-D image layout with sigmoid normalisation, and 3-D video layout with
  the temporal transform) computes, after the import, what a NumPy transcription of the released
  forward computes;
* files that would run code when unpickled are refused, by the built-in reader and by
  ``torch.load(weights_only=True)``, and their payload (which writes a marker file) never runs.

PyTorch is not a dependency of the package: the torchvision parts run in a separate interpreter,
``$BAT_JAX_TORCH_PYTHON`` or ``.venv-torch/bin/python`` (``make venv-torch``,
``requirements-torch.txt``). Without one these tests fail (they never skip).
"""

import json
import os
import pickle
import subprocess
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bat_jax import build_model
from bat_jax.blocks.bat import BATBlock
from bat_jax.tools import import_torch as it
from tests import helpers_train as h

REPO = h.REPO
TORCH_PYTHON_ENV = 'BAT_JAX_TORCH_PYTHON'
RELEASED_C2D_3DBAT_PARAMS = 29_190_232  # released_code_facts.md: C2D + 3D-BAT, 400 classes


def torch_python() -> str:
  exe = os.environ.get(TORCH_PYTHON_ENV) or os.path.join(REPO, '.venv-torch', 'bin', 'python')
  if not os.path.exists(exe):
    pytest.fail(f'no PyTorch interpreter at {exe}: run `make venv-torch` (creates .venv-torch '
                f'from requirements-torch.txt) or set {TORCH_PYTHON_ENV}=/path/to/python with '
                'torch and torchvision installed')
  return exe


# ---------------------------------------------------------------------------------------------
# Files that run code when unpickled.


class _Payload:
  """Unpickling this calls ``exec``, which writes ``marker``."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return (exec, (f'open({self.marker!r}, "w").write("ran")',))


def _write_evil_files(directory):
  """A plain pickle and a ``torch.save``-style zip archive, each with a payload; returns
  ``{path: marker}``."""
  out = {}
  plain, marker = os.path.join(directory, 'evil.pkl'), os.path.join(directory, 'ran_pkl')
  with open(plain, 'wb') as f:
    pickle.dump({'conv1.weight': _Payload(marker)}, f, protocol=2)
  out[plain] = marker
  archive, marker = os.path.join(directory, 'evil.pth'), os.path.join(directory, 'ran_zip')
  with zipfile.ZipFile(archive, 'w') as z:
    z.writestr('evil/data.pkl', pickle.dumps({'conv1.weight': _Payload(marker)}, protocol=2))
    z.writestr('evil/byteorder', 'little')
    z.writestr('evil/version', '3\n')
  out[archive] = marker
  return out


# ---------------------------------------------------------------------------------------------
# The torchvision side, in the PyTorch interpreter (no JAX there).

_TORCH_SCRIPT = r'''
import importlib.util, json, sys
import numpy as np, torch, torchvision

out, repo, evil = sys.argv[1], sys.argv[2], sys.argv[3:]
torch.manual_seed(0)
g = torch.Generator().manual_seed(1)
model = torchvision.models.resnet50(weights=None).eval()
for m in model.modules():  # random BN statistics and affine parameters
  if isinstance(m, torch.nn.BatchNorm2d):
    n = m.num_features
    m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
    m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
    m.bias.data.copy_(0.1 * torch.randn(n, generator=g))
torch.save(model.state_dict(), f'{out}/resnet50.pth')
x = torch.randn(2, 3, 64, 64, generator=g)
with torch.no_grad():
  y = model(x)
np.save(f'{out}/x.npy', x.numpy())
np.save(f'{out}/logits.npy', y.numpy())

# The tool's reading half with torch.load(weights_only=True).
spec = importlib.util.spec_from_file_location('torch_reader', f'{repo}/bat_jax/tools/torch_reader.py')
it = importlib.util.module_from_spec(spec)
sys.modules['torch_reader'] = it
spec.loader.exec_module(it)
result = {'torch': torch.__version__, 'torchvision': torchvision.__version__}
ref = model.state_dict()
sd = it.read_state_dict(f'{out}/resnet50.pth', 'torch')
result['same_names'] = sorted(sd) == sorted(ref)
result['same_values'] = all(np.array_equal(sd[k], ref[k].numpy()) for k in ref)
# A training checkpoint as the released code saves it (DataParallel names, extra entries).
torch.save({'epoch': 3, 'arch': 'resnet50', 'best_prec1': 70.5,
            'state_dict': {'module.' + k: v for k, v in ref.items()}}, f'{out}/wrapped.pth')
wrapped = it.read_state_dict(f'{out}/wrapped.pth', 'torch')
result['wrapped_same_names'] = sorted(wrapped) == sorted(ref)
torch.save(torch.nn.Conv2d(3, 4, 3), f'{out}/pickled_module.pth')  # a module, not a state dict
refused = {}
for path in evil + [f'{out}/pickled_module.pth']:
  try:
    it.read_state_dict(path, 'torch')
    refused[path] = None
  except it.UnsafeCheckpointError as e:
    refused[path] = str(e)
result['refused'] = refused
with open(f'{out}/result.json', 'w') as f:
  json.dump(result, f)
'''


@pytest.fixture(scope='module')
def torch_side(tmp_path_factory):
  """Runs the PyTorch interpreter once: torchvision ResNet-50 files + reader results."""
  d = str(tmp_path_factory.mktemp('torch_side'))
  evil = _write_evil_files(d)
  script = os.path.join(d, 'torch_side.py')
  with open(script, 'w') as f:
    f.write(_TORCH_SCRIPT)
  proc = subprocess.run([torch_python(), script, d, REPO, *evil], capture_output=True, text=True,
                        timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(os.path.join(d, 'result.json')) as f:
    result = json.load(f)
  return d, result, evil


def test_torchvision_resnet50_logits_match(torch_side, tmp_path):
  """The CLI converts torchvision's ResNet-50 (``--strict``: every tensor used); the checkpoint
  restores the way ``evaluate.py`` restores one and gives torchvision's logits."""
  d, result, _ = torch_side
  out = str(tmp_path / 'r50')
  proc = subprocess.run(
      [sys.executable, '-m', 'bat_jax.tools.import_torch', f'--checkpoint={d}/resnet50.pth',
       '--config=configs/imagenet_r50.py', f'--out={out}', '--strict', '--reader=builtin'],
      cwd=REPO, env=h.env_for(1), capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert 'loaded: 267' in proc.stdout  # 53 BN x 4 + 53 convs + fc (2)
  assert 'skipped (num_batches_tracked; flax BN keeps no counter): 53' in proc.stdout
  for kind in ('missing', 'unexpected', 'shape-mismatched'):
    assert f'  {kind} ' in proc.stdout and [
        ln for ln in proc.stdout.splitlines() if ln.startswith(f'  {kind} ')][0].endswith(': 0')
  with open(os.path.join(out, 'import_report.json')) as f:
    report = json.load(f)
  assert report['loaded']['params/res5_block2/conv3/kernel'] == 'layer4.2.conv3.weight'
  assert report['loaded']['batch_stats/res2_block0/downsample_bn/var'] == (
      'layer1.0.downsample.1.running_var')

  # Restore as evaluate.py does (tree check + partial restore onto the mesh).
  import optax  # pylint: disable=g-import-not-at-top
  from configs import imagenet_r50  # pylint: disable=g-import-not-at-top
  from bat_jax.data import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from bat_jax.training import state as state_lib  # pylint: disable=g-import-not-at-top
  from bat_jax.training.checkpoint import Checkpointer  # pylint: disable=g-import-not-at-top
  cfg = imagenet_r50.get_config()
  model = build_model(cfg.model)
  abstract = state_lib.abstract_train_state(model, optax.identity(),
                                            state_lib.init_input_shape(cfg.model),
                                            mesh_lib.make_mesh())
  ckpt = Checkpointer(os.path.join(out, 'checkpoints'), create=False)
  assert ckpt.latest_step() == 0
  variables = ckpt.restore_variables(0, abstract)
  ckpt.close()
  x = np.load(os.path.join(d, 'x.npy')).transpose(0, 2, 3, 1)  # NCHW -> NHWC
  want = np.load(os.path.join(d, 'logits.npy'))
  got = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x))
  scale = np.abs(want).max()
  assert scale > 1.0  # random BN statistics: the logits are not trivially small
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)


def test_torch_load_reader(torch_side):
  """``torch.load(weights_only=True)`` path: same tensors as the module's state dict;
  ``module.`` prefixes and checkpoint dicts handled; unsafe files refused."""
  _, result, evil = torch_side
  assert result['same_names'] and result['same_values'] and result['wrapped_same_names']
  for path, marker in evil.items():
    assert result['refused'][path], path
    assert 'refused by torch.load(weights_only=True)' in result['refused'][path]
    assert 'exec' in result['refused'][path]
    assert not os.path.exists(marker)
  module = [p for p in result['refused'] if p.endswith('pickled_module.pth')][0]
  assert result['refused'][module] and 'Conv2d' in result['refused'][module]


def test_builtin_reader_reads_torch_files(torch_side):
  """The restricted unpickler (no torch) reads ``torch.save`` archives and refuses a pickled
  ``nn.Module``."""
  d, _, _ = torch_side
  sd = it.read_state_dict(os.path.join(d, 'resnet50.pth'), 'builtin')
  wrapped = it.read_state_dict(os.path.join(d, 'wrapped.pth'), 'builtin')
  assert sorted(sd) == sorted(wrapped) and len(sd) == 320
  assert sd['conv1.weight'].shape == (64, 3, 7, 7) and sd['conv1.weight'].dtype == np.float32
  assert sd['bn1.num_batches_tracked'].dtype == np.int64
  for k in sd:
    np.testing.assert_array_equal(sd[k], wrapped[k])
  with pytest.raises(it.UnsafeCheckpointError, match='torch.nn.modules.conv.Conv2d'):
    it.read_state_dict(os.path.join(d, 'pickled_module.pth'), 'builtin')


def test_code_running_pickles_are_refused(tmp_path):
  evil = _write_evil_files(str(tmp_path))
  for path, marker in evil.items():
    with pytest.raises(it.UnsafeCheckpointError, match='refused'):
      it.read_state_dict(path, 'builtin')
    assert not os.path.exists(marker)
  # The payload is real: an unrestricted unpickle does run it.
  sentinel = tmp_path / 'ran_plain'
  pickle.loads(pickle.dumps(_Payload(sentinel)))
  assert sentinel.exists()
  # The command line says why and exits non-zero, without a traceback.
  proc = subprocess.run(
      [sys.executable, '-m', 'bat_jax.tools.import_torch', f'--checkpoint={tmp_path}/evil.pth',
       '--config=configs/imagenet_r18.py', f'--out={tmp_path}/out'],
      cwd=REPO, env=h.env_for(1), capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode != 0
  assert 'refused' in proc.stderr and 'builtins.exec' in proc.stderr, proc.stderr[-2000:]
  assert 'Traceback' not in proc.stderr
  assert not os.path.exists(evil[f'{tmp_path}/evil.pth'])
  assert not (tmp_path / 'out').exists()


def _fake_torch_pickle(monkeypatch, size, stride, numel):
  """``data.pkl`` bytes of ``{'w': tensor}`` as ``torch.save`` writes them, made without torch:
  stand-ins for ``torch._utils._rebuild_tensor_v2`` and ``torch.FloatStorage`` are registered
  under those module names just while pickling."""
  import collections  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  import types  # pylint: disable=g-import-not-at-top
  torch_mod, utils_mod = types.ModuleType('torch'), types.ModuleType('torch._utils')

  def _rebuild_tensor_v2(*args):
    raise AssertionError(args)
  _rebuild_tensor_v2.__module__ = 'torch._utils'
  _rebuild_tensor_v2.__qualname__ = '_rebuild_tensor_v2'
  float_storage = type('FloatStorage', (), {'__module__': 'torch'})
  utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2
  torch_mod.FloatStorage = float_storage
  torch_mod._utils = utils_mod
  monkeypatch.setitem(sys.modules, 'torch', torch_mod)
  monkeypatch.setitem(sys.modules, 'torch._utils', utils_mod)

  class _Storage:
    pass

  class _Tensor:
    def __reduce__(self):
      return (_rebuild_tensor_v2, (_Storage(), 0, size, stride, False, collections.OrderedDict()))

  class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      return ('storage', float_storage, '0', 'cpu', numel) if isinstance(obj, _Storage) else None

  buf = io.BytesIO()
  _Pickler(buf, protocol=2).dump({'w': _Tensor()})
  return buf.getvalue()


def _torch_zip(path, pkl, storage):
  with zipfile.ZipFile(path, 'w') as z:
    z.writestr('archive/data.pkl', pkl)
    z.writestr('archive/byteorder', 'little')
    z.writestr('archive/data/0', storage.tobytes())
  return str(path)


def test_builtin_reader_strided_tensors_and_bounds(tmp_path, monkeypatch):
  """Strides are honoured (a transposed view reads right) and a tensor reaching past its
  storage is an error, never a read out of bounds."""
  storage = np.arange(6, dtype=np.float32)
  ok = _torch_zip(tmp_path / 'ok.pth', _fake_torch_pickle(monkeypatch, (3, 2), (1, 3), 6), storage)
  bad = _torch_zip(tmp_path / 'bad.pth', _fake_torch_pickle(monkeypatch, (1000,), (1,), 6),
                   storage)
  monkeypatch.delitem(sys.modules, 'torch')
  monkeypatch.delitem(sys.modules, 'torch._utils')
  np.testing.assert_array_equal(it.read_state_dict(ok, 'builtin')['w'],
                                storage.reshape(2, 3).T)
  with pytest.raises(ValueError, match='reaches past its storage'):
    it.read_state_dict(bad, 'builtin')


# ---------------------------------------------------------------------------------------------
# The released BAT layout (numpy, safetensors).


# The released ``i3d_resnet50``'s ``use_temp_convs_set`` (models/resnet.py): stem t = 5, then
# t = 3 for the conv1 of the marked bottlenecks of layer1..layer4.
RELEASED_I3D_TEMPORAL = (5, ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)))


def released_state_dict(rng, *, width=64, num_classes=400, stage_sizes=(3, 4, 6, 3),
                        nl=None, k=8, s=7, tk=4, ts=4, video=True, bottleneck=True,
                        block='bat', i3d=False):
  """Names and shapes of the released ``c2d_resnet50`` / ``i3d_resnet50`` (video) / ``nlnet50``
  (image) with blocks ``layer{L}.nl{i}``: ``block='bat'`` (``BATBlock(D, k, tk, ts, s)``) or
  ``'nl3d'`` (``NONLocalBlock3D(D)``), random values and BN statistics. Written from the released
  ``models/resnet.py`` and ``models/non_local.py``, independently of the importer."""
  nl = {2: (1, 3), 3: (1, 3, 5)} if nl is None else nl
  stem_t, temporal = RELEASED_I3D_TEMPORAL if i3d else (1, ((),) * len(stage_sizes))
  sd = {}

  def conv(name, o, i, kt, kh, kw, bias=False):
    shape = (o, i, kt, kh, kw) if video else (o, i, kh, kw)
    sd[f'{name}.weight'] = (rng.standard_normal(shape, np.float32) *
                            np.float32(np.sqrt(2.0 / (o * kh * kw))))
    if bias:
      sd[f'{name}.bias'] = rng.standard_normal(o, np.float32) * np.float32(0.1)

  def bn(name, c):
    sd[f'{name}.weight'] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    sd[f'{name}.bias'] = rng.normal(0.0, 0.1, c).astype(np.float32)
    sd[f'{name}.running_mean'] = rng.normal(0.0, 0.1, c).astype(np.float32)
    sd[f'{name}.running_var'] = rng.uniform(0.5, 1.5, c).astype(np.float32)
    sd[f'{name}.num_batches_tracked'] = np.asarray(7, np.int64)

  conv('conv1', width, 3, stem_t, 7, 7)
  bn('bn1', width)
  inplanes = width
  expansion = 4 if bottleneck else 1
  for stage, blocks in enumerate(stage_sizes):
    layer = stage + 1
    planes = width * 2**stage
    for i in range(blocks):
      p = f'layer{layer}.{i}'
      if bottleneck:
        kt = 3 if i < len(temporal[stage]) and temporal[stage][i] else 1
        conv(f'{p}.conv1', planes, inplanes, kt, 1, 1)
        bn(f'{p}.bn1', planes)
        conv(f'{p}.conv2', planes, planes, 1, 3, 3)
        bn(f'{p}.bn2', planes)
        conv(f'{p}.conv3', planes * 4, planes, 1, 1, 1)
        bn(f'{p}.bn3', planes * 4)
      else:
        conv(f'{p}.conv1', planes, inplanes, 1, 3, 3)
        bn(f'{p}.bn1', planes)
        conv(f'{p}.conv2', planes, planes, 1, 3, 3)
        bn(f'{p}.bn2', planes)
      if i == 0 and (stage > 0 or inplanes != planes * expansion):
        conv(f'{p}.downsample.0', planes * expansion, inplanes, 1, 1, 1)
        bn(f'{p}.downsample.1', planes * expansion)
      inplanes = planes * expansion
      if i in nl.get(layer, ()) and block == 'bat':
        add_released_bat(sd, rng, f'layer{layer}.nl{i}', inplanes, k=k, s=s, tk=tk, ts=ts,
                         video=video)
      elif i in nl.get(layer, ()):
        add_released_nl3d(sd, rng, f'layer{layer}.nl{i}', inplanes)
  if video:
    sd['fc.weight'] = rng.normal(0.0, 0.01, (num_classes, inplanes, 1, 1, 1)).astype(np.float32)
  else:
    sd['fc.weight'] = rng.normal(0.0, 0.01, (num_classes, inplanes)).astype(np.float32)
  sd['fc.bias'] = rng.normal(0.0, 0.01, num_classes).astype(np.float32)
  return sd


def add_released_bat(sd, rng, prefix, d, *, k, s, tk, ts, video, scale=None):
  """One released ``BATBlock(d, r=2, s, ts, k, tk)`` (video) or image ``BATBlock(d, s, k)``."""
  c = d // 2

  def w(shape):
    fan_out = shape[0] * int(np.prod(shape[2:]))
    std = scale if scale is not None else np.sqrt(2.0 / fan_out)
    return rng.normal(0.0, std, shape).astype(np.float32)

  def b(n):
    return rng.normal(0.0, 0.1, n).astype(np.float32)

  def bn(name, n):
    sd[f'{name}.weight'] = rng.uniform(0.5, 1.5, n).astype(np.float32)
    sd[f'{name}.bias'] = rng.normal(0.0, 0.1, n).astype(np.float32)
    sd[f'{name}.running_mean'] = rng.normal(0.0, 0.1, n).astype(np.float32)
    sd[f'{name}.running_var'] = rng.uniform(0.5, 1.5, n).astype(np.float32)
    sd[f'{name}.num_batches_tracked'] = np.asarray(3, np.int64)

  one = (1, 1, 1) if video else (1, 1)
  sd[f'{prefix}.conv1.0.weight'], sd[f'{prefix}.conv1.0.bias'] = w((c, d, *one)), b(c)
  bn(f'{prefix}.conv1.1', c)
  t = f'{prefix}.batransform'
  sd[f'{t}.conv1.0.weight'], sd[f'{t}.conv1.0.bias'] = w((k, c, *one)), b(k)
  bn(f'{t}.conv1.1', k)
  sd[f'{t}.conv_p.weight'] = w((s * s * k, k, 1, s, 1) if video else (s * s * k, k, s, 1))
  sd[f'{t}.conv_p.bias'] = b(s * s * k)
  sd[f'{t}.conv_q.weight'] = w((s * s * k, k, 1, 1, s) if video else (s * s * k, k, 1, s))
  sd[f'{t}.conv_q.bias'] = b(s * s * k)
  if video and tk > 0:
    sd[f'{t}.conv_t.weight'] = w((ts * ts * tk, k, ts, 1, 1))
    sd[f'{t}.conv_t.bias'] = b(ts * ts * tk)
  sd[f'{t}.conv2.0.weight'], sd[f'{t}.conv2.0.bias'] = w((c, c, *one)), b(c)
  bn(f'{t}.conv2.1', c)
  sd[f'{prefix}.conv2.0.weight'], sd[f'{prefix}.conv2.0.bias'] = w((d, c, *one)), b(d)
  bn(f'{prefix}.conv2.1', d)


def add_released_nl3d(sd, rng, prefix, d):
  """One released ``NONLocalBlock3D(d)`` (sub_sample=True, bn_layer=True): ``theta``,
  ``phi = Sequential(MaxPool3d, Conv3d)``, ``g`` likewise, ``W = Sequential(Conv3d, BatchNorm3d)``;
  every conv ``1x1x1`` with a bias, inter channels ``d // 2``."""
  c = d // 2
  for name, o, i in (('theta', c, d), ('phi.1', c, d), ('g.1', c, d), ('W.0', d, c)):
    sd[f'{prefix}.{name}.weight'] = rng.normal(0.0, np.sqrt(1.0 / i), (o, i, 1, 1, 1)).astype(
        np.float32)
    sd[f'{prefix}.{name}.bias'] = rng.normal(0.0, 0.1, o).astype(np.float32)
  sd[f'{prefix}.W.1.weight'] = rng.uniform(0.5, 1.5, d).astype(np.float32)
  sd[f'{prefix}.W.1.bias'] = rng.normal(0.0, 0.1, d).astype(np.float32)
  sd[f'{prefix}.W.1.running_mean'] = rng.normal(0.0, 0.1, d).astype(np.float32)
  sd[f'{prefix}.W.1.running_var'] = rng.uniform(0.5, 1.5, d).astype(np.float32)
  sd[f'{prefix}.W.1.num_batches_tracked'] = np.asarray(5, np.int64)


def n_released_params(sd):
  return sum(v.size for n, v in sd.items()
             if not n.endswith(('running_mean', 'running_var', 'num_batches_tracked')))


def test_released_c2d_3dbat_layout_imports_completely(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  from configs import kinetics_c2d_3dbat  # pylint: disable=g-import-not-at-top
  sd = released_state_dict(np.random.default_rng(0))
  params = sum(v.size for n, v in sd.items()
               if not n.endswith(('running_mean', 'running_var', 'num_batches_tracked')))
  assert params == RELEASED_C2D_3DBAT_PARAMS  # the generator is the released model
  path = str(tmp_path / 'c2d_3dbat.safetensors')
  save_file(sd, path)
  cfg = kinetics_c2d_3dbat.get_config()
  report = it.import_checkpoint(path, cfg, str(tmp_path / 'out'), strict=True, log=None)
  assert report.ok
  assert not report.plan.missing and not report.unexpected and not report.mismatched
  assert len(report.converted.skipped) == sum(n.endswith('num_batches_tracked') for n in sd)
  assert len(report.plan.load) + len(report.converted.skipped) == len(sd)
  rep = json.loads((tmp_path / 'out' / 'import_report.json').read_text())
  assert rep['loaded']['params/res3_bat1/predictor/predict_t/conv/kernel'] == (
      'layer2.nl1.batransform.conv_t.weight')
  assert rep['loaded']['params/res4_bat5/conv3/bias'] == 'layer3.nl5.conv2.0.bias'
  assert rep['loaded']['batch_stats/res4_bat3/bn2/mean'] == (
      'layer3.nl3.batransform.conv2.1.running_mean')
  # Layouts: window convs (out, in, 1, s, 1) -> (s, in, out); fc (400, 2048, 1, 1, 1) -> Dense.
  arrays = report.converted.arrays
  wp = sd['layer3.nl1.batransform.conv_p.weight']
  kp = arrays['params/res4_bat1/predictor/predict_p/conv/kernel']
  assert kp.shape == (7, 8, 392)
  np.testing.assert_array_equal(kp[3, 5, 100], wp[100, 5, 0, 3, 0])
  kq = arrays['params/res4_bat1/predictor/predict_q/conv/kernel']
  np.testing.assert_array_equal(kq[2, 1, 7], sd['layer3.nl1.batransform.conv_q.weight'][7, 1, 0, 0, 2])
  kt = arrays['params/res3_bat3/predictor/predict_t/conv/kernel']
  assert kt.shape == (4, 8, 64)
  np.testing.assert_array_equal(kt[1, 2, 9], sd['layer2.nl3.batransform.conv_t.weight'][9, 2, 1, 0, 0])
  np.testing.assert_array_equal(arrays['params/fc/kernel'], sd['fc.weight'][:, :, 0, 0, 0].T)
  np.testing.assert_array_equal(arrays['params/res3_block0/conv2/kernel'][0, 1, 2, 5, 9],
                                sd['layer2.0.conv2.weight'][9, 5, 0, 1, 2])


def test_strict_and_report_name_every_tensor(tmp_path):
  """Missing, unexpected and mismatched names are listed (with the cause for BAT / fc), --strict
  fails and writes nothing, otherwise they keep the model's initial values. (An image
  ResNet-18 + BAT in the released image layout: 2-D weights, ``nn.Linear`` classifier.)"""
  import ml_collections  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  from configs import blocks  # pylint: disable=g-import-not-at-top
  from bat_jax.training.checkpoint import resolve_state_dir  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  sd = released_state_dict(rng, width=4, num_classes=10, stage_sizes=(2, 2, 2, 2),
                           nl={2: (1,), 3: (1,)}, k=2, s=2, video=False, bottleneck=False)
  del sd['layer1.1.conv2.weight']
  sd['layer9.0.conv1.weight'] = np.zeros((1, 1, 1, 1), np.float32)
  sd['something.else'] = np.zeros(3, np.float32)
  path = str(tmp_path / 'small.safetensors')
  save_file(sd, path)
  cfg = ml_collections.ConfigDict()
  cfg.model = ml_collections.ConfigDict(dict(
      name='resnet18', num_classes=7, width=4, input_size=(32, 32),
      block=blocks.image_bat(groups=4, size=2),
      insertions=blocks.insertions({'res3': (1,), 'res4': (1,)})))
  with pytest.raises(it.ImportMismatchError) as e:
    it.import_checkpoint(path, cfg, str(tmp_path / 'strict'), strict=True, log=None)
  msg = str(e.value)
  assert 'params/res2_block1/conv2/kernel' in msg  # missing
  assert 'layer9.0.conv1.weight' in msg and 'something.else' in msg  # unexpected
  assert 'fc.weight -> params/fc/kernel checkpoint (32, 10) vs model (32, 7)' in msg
  assert '10 classes in the checkpoint, 7 in the model (model.num_classes)' in msg
  assert 'k=2 in the checkpoint, k=4 in the model (model.block.groups' in msg
  assert not (tmp_path / 'strict').exists()

  report = it.import_checkpoint(path, cfg, str(tmp_path / 'lenient'), seed=3, log=None)
  assert not report.ok
  assert report.plan.missing == ['params/res2_block1/conv2/kernel']
  assert report.unexpected == ['layer9.0.conv1.weight', 'something.else']
  mismatched = {m[0] for m in report.mismatched}
  assert {'params/fc/kernel', 'params/fc/bias', 'params/res3_bat1/predictor/conv/kernel',
          'params/res4_bat1/predictor/predict_p/conv/kernel'} <= mismatched
  saved = ocp.StandardCheckpointer().restore(resolve_state_dir(str(tmp_path / 'lenient')))
  p = saved['params']
  # Kept at their initial values (Dense: N(0, 0.01), zero bias; conv: N(0, 2 / fan_out)).
  assert p['fc']['kernel'].shape == (32, 7) and not np.any(p['fc']['bias'])
  assert 0.005 < np.std(p['fc']['kernel']) < 0.02
  missing = p['res2_block1']['conv2']['kernel']
  assert missing.shape == (1, 3, 3, 4, 4)
  assert 0.5 < np.std(missing) / np.sqrt(2.0 / (9 * 4)) < 1.5
  # Loaded ones are the checkpoint's, in our layout.
  np.testing.assert_array_equal(p['res2_block0']['conv2']['kernel'],
                                np.transpose(sd['layer1.0.conv2.weight'], (2, 3, 1, 0))[None])
  np.testing.assert_array_equal(p['res3_bat1']['conv3']['bias'], sd['layer2.nl1.conv2.0.bias'])
  np.testing.assert_array_equal(saved['batch_stats']['res4_bat1']['bn3']['var'],
                                sd['layer3.nl1.conv2.1.running_var'])
  assert json.loads((tmp_path / 'lenient' / 'config.json').read_text())['model']['num_classes'] == 7
  rep = json.loads((tmp_path / 'lenient' / 'import_report.json').read_text())
  assert rep['unexpected'] == ['layer9.0.conv1.weight', 'something.else']
  assert rep['missing'] == ['params/res2_block1/conv2/kernel']


# ---------------------------------------------------------------------------------------------
# One released BAT block: NumPy transcription of the released forward vs ours after import.


def _softmax(x, axis):
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def released_bat_forward(sd, prefix, x, *, k, s, tk, ts, video):
  """The released ``BATBlock.forward`` in eval mode, float64. ``x (n, D, t, h, w)``; the image
  code's block is the video one with ``t = 1``, no temporal transform and sigmoid + L1
  normalisation (``p / p.sum(dim=3)``, ``q / q.sum(dim=2)``) instead of the softmaxes."""
  g = lambda name: np.asarray(sd[name], np.float64)  # noqa: E731

  def conv(x, name):  # a 1x1(x1) conv with bias on (n, c, t, h, w)
    w = g(f'{name}.weight').reshape(g(f'{name}.weight').shape[:2])
    return np.einsum('oc,ncthw->nothw', w, x) + g(f'{name}.bias')[None, :, None, None, None]

  def bn(x, name):
    sh = (1, -1, 1, 1, 1)
    return ((x - g(f'{name}.running_mean').reshape(sh)) /
            np.sqrt(g(f'{name}.running_var').reshape(sh) + 1e-5) * g(f'{name}.weight').reshape(sh)
            + g(f'{name}.bias').reshape(sh))

  relu = lambda v: np.maximum(v, 0.0)  # noqa: E731
  n, _, t, hh, ww = x.shape
  xl = relu(bn(conv(x, f'{prefix}.conv1.0'), f'{prefix}.conv1.1'))
  c = xl.shape[1]
  bt = f'{prefix}.batransform'
  out = relu(bn(conv(xl, f'{bt}.conv1.0'), f'{bt}.conv1.1'))  # (n, k, t, h, w)
  bh, bw = hh // s, ww // s
  rp = out.reshape(n, k, t, s, bh, ww).max(axis=(4, 5))  # adaptive_max_pool to (t, s, 1)
  cp = out.reshape(n, k, t, hh, s, bw).max(axis=(3, 5))  # to (t, 1, s)
  wp = g(f'{bt}.conv_p.weight').reshape(s * s * k, k, s)  # (o, k, 1, s, 1) / (o, k, s, 1)
  wq = g(f'{bt}.conv_q.weight').reshape(s * s * k, k, s)
  p = np.einsum('oca,ncta->not', wp, rp) + g(f'{bt}.conv_p.bias')[None, :, None]
  q = np.einsum('oca,ncta->not', wq, cp) + g(f'{bt}.conv_q.bias')[None, :, None]
  p, q = p.reshape(n, k, s, s, t), q.reshape(n, k, s, s, t)  # .view(n, k, s, s, t)
  if video:
    p, q = _softmax(p, 3), _softmax(q, 2)
  else:
    p, q = 1 / (1 + np.exp(-p)), 1 / (1 + np.exp(-q))
    p, q = p / p.sum(axis=3, keepdims=True), q / q.sum(axis=2, keepdims=True)
  y = np.zeros_like(xl)
  for ch in range(c):
    grp = ch // (c // k)
    for f in range(t):
      pf = np.kron(p[:, grp, :, :, f][0], np.eye(bh))  # kron(P, I_{H/s}), per sample below
      for b in range(n):
        pf = np.kron(p[b, grp, :, :, f], np.eye(bh))
        qf = np.kron(q[b, grp, :, :, f], np.eye(bw))
        y[b, ch, f] = pf @ xl[b, ch, f] @ qf
  if video and tk > 0:
    tp = out.reshape(n, k, ts, t // ts, hh, ww).mean(axis=(3, 4, 5))  # adaptive_avg_pool (ts,1,1)
    wt = g(f'{bt}.conv_t.weight').reshape(ts * ts * tk, k, ts)
    tm = np.einsum('oca,nca->no', wt, tp) + g(f'{bt}.conv_t.bias')[None]
    tm = _softmax(tm.reshape(n, tk, ts, ts), 3)
    z = np.zeros_like(y)
    for ch in range(c):
      grp = ch // (c // tk)
      for b in range(n):
        tf = np.kron(tm[b, grp], np.eye(t // ts))
        z[b, ch] = np.einsum('ij,jhw->ihw', tf, y[b, ch])
    y = z
  y = relu(bn(conv(y, f'{bt}.conv2.0'), f'{bt}.conv2.1'))
  y = relu(bn(conv(y, f'{prefix}.conv2.0'), f'{prefix}.conv2.1'))
  return x + y


@pytest.mark.parametrize('video', [True, False], ids=['video_3dbat_softmax', 'image_sigmoid'])
def test_released_bat_block_computes_the_same(video):
  k, s, tk, ts, d = 4, 4, 2, 2, 16
  t = 4 if video else 1
  rng = np.random.default_rng(2)
  sd = {}
  add_released_bat(sd, rng, 'layer2.nl1', d, k=k, s=s, tk=tk, ts=ts, video=video, scale=0.3)
  x = rng.normal(0.0, 1.0, (2, d, t, 8, 8))
  want = released_bat_forward(sd, 'layer2.nl1', x, k=k, s=s, tk=tk, ts=ts, video=video)

  converted = it.convert_state_dict(sd)
  assert not converted.unknown and not converted.bad
  tree = it._unflat(converted.arrays)  # pylint: disable=protected-access
  variables = {'params': tree['params']['res3_bat1'],
               'batch_stats': tree['batch_stats']['res3_bat1']}
  block = BATBlock(groups=k, size=s, temporal_groups=tk if video else 0, temporal_size=ts,
                   normalization='softmax' if video else 'sigmoid', reduction=2)
  shapes = jax.eval_shape(lambda: block.init(jax.random.key(0), jnp.zeros((2, t, 8, 8, d))))
  assert jax.tree.map(lambda a: a.shape, shapes) == jax.tree.map(lambda a: a.shape, variables)
  got = block.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 4, 1), jnp.float32), train=False)
  np.testing.assert_allclose(np.asarray(got).transpose(0, 4, 1, 2, 3), want, rtol=1e-4,
                             atol=1e-4 * np.abs(want).max())
