"""2-D -> 3-D: ``config.init_from`` an image checkpoint into C2D and I3D
(``bat_jax.training.transfer``: ``plan_transfer``, ``load_init_variables``).

The property tested for I3D, precisely: the checkpoint's 2-D kernels ``w`` become
``w_t = w / t`` repeated ``t`` times along time, so on a clip whose ``T`` frames are all the same
image ``x``, an inflated conv computes ``sum_tau w / t * x = w * x`` at every output frame whose
whole temporal window lies inside the clip. The zero padding in time (``t // 2`` frames each side)
makes the frames within ``t // 2`` of either end differ, and each further temporal conv (and pool2,
which merges frame pairs) moves that boundary inwards. So the I3D feature map after res5 equals
the 2-D network's (per frame, to float rounding) at every frame whose receptive field in time
contains no padding, which :func:`exact_frames` computes from the inflation plan; the end frames
differ. (This is sufficient, not necessary: a frame whose receptive field only just reaches the
padding can still agree, when the deviation dies out at a ReLU.) For I3D ResNet-50 (conv1
``t = 5``, 3 + 2 + 3 + 1 inflated blocks, pool2) and ``T = 40`` input frames these are pooled
frames 9 and 10 of 20; no ``T`` makes every frame exact, so the logits (a mean over all frames)
of I3D and the 2-D model differ. C2D has no temporal kernels: its logits on such a clip are the
image model's.

Models are width-4 ResNet-50s with a 2D BAT-Block after res3 block 1, on 32x32 inputs.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from bat_jax import build_model
from bat_jax.models.registry import i3d_temporal_kernels
from bat_jax.data import mesh as mesh_lib
from bat_jax.training import state as state_lib
from bat_jax.training import transfer as inflate
from bat_jax.training.checkpoint import write_variables_checkpoint
from bat_jax.training.transfer import load_init_variables
from configs import blocks

NUM_CLASSES = 6


def _cfg(name, input_size, num_classes=NUM_CLASSES, groups=2, temporal_groups=0):
  cfg = ml_collections.ConfigDict()
  cfg.model = ml_collections.ConfigDict(dict(
      name=name, num_classes=num_classes, width=4, input_size=input_size, dropout_rate=0.0,
      block=blocks.bat(groups=groups, size=4, temporal_groups=temporal_groups, temporal_size=2),
      insertions=blocks.insertions({'res3': (1,)})))
  return cfg


def _flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    name = f'{prefix}/{k}' if prefix else k
    out.update(_flat(v, name) if hasattr(v, 'items') else {name: np.asarray(v)})
  return out


def _abstract(cfg):
  model = build_model(cfg.model)
  return model, state_lib.abstract_train_state(model, optax.sgd(0.1),
                                               state_lib.init_input_shape(cfg.model),
                                               mesh_lib.make_mesh())


@pytest.fixture(scope='module')
def image_run(tmp_path_factory):
  """An image ResNet-50 + BAT 'run' (checkpoint + config.json) with random BN statistics."""
  cfg = _cfg('resnet50', (32, 32))
  model = build_model(cfg.model)
  shapes = jax.eval_shape(lambda k: model.init({'params': k, 'dropout': k},
                                               jnp.zeros((1, 32, 32, 3)), train=False),
                          jax.random.key(0))
  rng = np.random.default_rng(0)

  def draw(path, leaf):  # He-normal kernels, random BN statistics / affine, small biases
    name, shape = jax.tree_util.keystr(path), leaf.shape
    if name.endswith("['var']") or name.endswith("['scale']"):
      value = rng.uniform(0.5, 1.5, shape)
    elif name.endswith("['kernel']"):
      value = rng.normal(0.0, np.sqrt(2.0 / (np.prod(shape[:-2]) * shape[-1])), shape)
    else:
      value = rng.normal(0.0, 0.1, shape)
    return jnp.asarray(value, jnp.float32)

  variables = jax.tree_util.tree_map_with_path(draw, dict(shapes))
  workdir = str(tmp_path_factory.mktemp('image_run'))
  write_variables_checkpoint(workdir, variables, step=12, config=cfg)
  image = jnp.asarray(rng.normal(0.0, 1.0, (2, 32, 32, 3)), jnp.float32)
  logits, res5 = _apply(model, variables, image)
  return workdir, cfg, variables, image, logits, res5[:, 0]


def _apply(model, variables, x):
  """Logits and the output of the last residual block (N, T, H, W, C)."""
  logits, state = model.apply(variables, x, train=False, mutable=['intermediates'],
                              capture_intermediates=lambda mdl, _: mdl.name == 'res5_block2')
  return np.asarray(logits), np.asarray(state['intermediates']['res5_block2']['__call__'][0])


def exact_frames(num_frames, stem_t, temporal_kernels, temporal_pool=True):
  """Boolean mask over the last stage's frames: True where no zero padding in time reaches."""
  def conv(mask, t):
    r = t // 2
    return np.array([r <= f < len(mask) - r and mask[f - r:f + r + 1].all()
                     for f in range(len(mask))])
  mask = conv(np.ones(num_frames, bool), stem_t)
  for stage, kernels in enumerate(temporal_kernels):
    for t in kernels:
      mask = conv(mask, t)
    if stage == 0 and temporal_pool:
      mask = mask[0::2] & mask[1::2]
  return mask


def test_inflate_kernel():
  k = np.random.default_rng(0).normal(size=(1, 3, 3, 2, 4)).astype(np.float32)
  big = inflate.inflate_kernel(k, 5)
  assert big.shape == (5, 3, 3, 2, 4)
  np.testing.assert_allclose(big.sum(axis=0), k[0], rtol=1e-6)
  np.testing.assert_array_equal(big[0], big[4])
  assert inflate.is_inflatable((1, 1, 1, 8, 8), (3, 1, 1, 8, 8))
  assert not inflate.is_inflatable((1, 1, 1, 8, 8), (3, 1, 1, 8, 16))
  with pytest.raises(ValueError):
    inflate.inflate_kernel(big, 2)


def test_c2d_takes_the_image_checkpoint_unchanged(image_run):
  workdir, _, variables, image, logits2d, _ = image_run
  cfg = _cfg('c2d_resnet50', (4, 32, 32))
  model, abstract = _abstract(cfg)
  # Every name loads (no inflation, nothing at init), so the abstract state can stand in for
  # the initial one.
  params, batch_stats, report = load_init_variables(workdir, abstract, abstract,
                                                    model_config=cfg.model)
  assert report['reinitialised'] == {} and report['unused'] == [] and not report['inflated']
  got, want = _flat({'params': params, 'batch_stats': batch_stats}), _flat(variables)
  assert got.keys() == want.keys()
  for name in want:
    np.testing.assert_array_equal(got[name], want[name], err_msg=name)
  clip = jnp.repeat(image[:, None], 4, axis=1)  # every frame the same image
  logits3d = np.asarray(jax.jit(model.apply)({'params': params, 'batch_stats': batch_stats}, clip))
  np.testing.assert_allclose(logits3d, logits2d, rtol=1e-5, atol=1e-5 * np.abs(logits2d).max())


def test_i3d_equals_the_2d_model_where_no_padding_reaches(image_run):
  workdir, _, variables, image, _, f2 = image_run
  num_frames = 40
  cfg = _cfg('i3d_resnet50', (num_frames, 32, 32))
  model, abstract = _abstract(cfg)
  params, batch_stats, report = load_init_variables(workdir, abstract, abstract,
                                                    model_config=cfg.model)
  p3, p2 = _flat(params), _flat(variables['params'])
  assert report['inflated'] == {'params/' + n: 3 if n != 'conv1/kernel' else 5
                                for n in p3 if p3[n].shape != p2[n].shape}
  assert p3['conv1/kernel'].shape == (5, 7, 7, 3, 4)
  np.testing.assert_allclose(p3['conv1/kernel'], np.repeat(p2['conv1/kernel'], 5, 0) / 5,
                             rtol=1e-6)
  inflated = [n for n in p3 if p3[n].shape != p2[n].shape]
  kernels = i3d_temporal_kernels((3, 4, 6, 3))
  assert len(inflated) == 1 + sum(t == 3 for stage in kernels for t in stage)  # conv1 + blocks
  for name in inflated:
    np.testing.assert_allclose(p3[name].sum(axis=0), p2[name][0], rtol=1e-5, atol=1e-7)

  mask = exact_frames(num_frames, 5, kernels)
  assert mask.tolist() == [False] * 9 + [True] * 2 + [False] * 9
  clip = jnp.repeat(image[:, None], num_frames, axis=1)
  _, f3 = _apply(model, {'params': params, 'batch_stats': batch_stats}, clip)
  scale = np.abs(f2).max()
  assert f3.shape[1] == len(mask)
  for j in np.flatnonzero(mask):
    np.testing.assert_allclose(f3[:, j], f2, rtol=1e-4, atol=1e-5 * scale, err_msg=f'frame {j}')
  # The end frames see the padding. (Frames just outside the mask can still agree: the mask is
  # sufficient, not necessary; a deviation that comes in only through the outermost taps of
  # several 1/3-weighted kernels can die out at a ReLU.)
  for j in (0, len(mask) - 1):
    assert np.abs(f3[:, j] - f2).max() > 1e-2 * scale, f'frame {j} should see the padding'


def test_video_from_image_reinitialises_classifier_and_new_temporal_predictor(image_run):
  """Class count differs and the 3D BAT-Block has a temporal predictor the 2D one lacks: both
  keep their fresh values, and the report says why (with the run's model config the transfer is
  known to be image -> video)."""
  workdir, _, variables, _, _, _ = image_run
  cfg = _cfg('c2d_resnet50', (4, 32, 32), num_classes=3, temporal_groups=2)
  model, abstract = _abstract(cfg)
  # A stand-in for the freshly initialised state: every entry a distinct constant.
  counter = iter(range(1, 10**6))
  fresh = jax.tree.map(lambda a: jnp.full(a.shape, float(next(counter)), a.dtype), abstract)
  at_init = {'params/fc/kernel', 'params/fc/bias',
             'params/res3_bat1/predictor/predict_t/conv/kernel',
             'params/res3_bat1/predictor/predict_t/conv/bias'}
  _, _, report = load_init_variables(workdir, abstract, fresh)
  assert set(report['reinitialised']) == at_init
  assert report['reinitialised']['params/fc/kernel'] == (
      'shape: checkpoint [128, 6] vs model [128, 3] (classifier: 6 classes in the checkpoint, '
      '3 in the model (model.num_classes))')
  assert report['reinitialised']['params/res3_bat1/predictor/predict_t/conv/kernel'] == (
      'not in the checkpoint')

  params, batch_stats, report = load_init_variables(workdir, abstract, fresh,
                                                    model_config=cfg.model)
  assert report['reinitialised']['params/fc/kernel'] == (
      'classifier: another class count (model.num_classes)')
  assert report['reinitialised']['params/res3_bat1/predictor/predict_t/conv/kernel'] == (
      'new in the 3-D model (temporal predictor of a block loaded from 2-D)')
  assert report['unused'] == ['params/fc/bias', 'params/fc/kernel']
  got, init = _flat({'params': params, 'batch_stats': batch_stats}), _flat(
      {'params': fresh.params, 'batch_stats': fresh.batch_stats})
  want = _flat(variables)
  assert set(report['loaded']) == set(got) - at_init
  for name in got:
    np.testing.assert_array_equal(got[name], init[name] if name in at_init else want[name],
                                  err_msg=name)
  # ImageNet BAT weights (predictor included) went into the video block.
  np.testing.assert_array_equal(got['params/res3_bat1/predictor/predict_p/conv/kernel'],
                                want['params/res3_bat1/predictor/predict_p/conv/kernel'])


def test_bat_groups_or_size_that_differ_are_reinitialised_and_named(image_run):
  workdir = image_run[0]
  cfg = _cfg('c2d_resnet50', (4, 32, 32), groups=4)
  _, abstract = _abstract(cfg)
  _, _, report = load_init_variables(workdir, abstract, abstract, model_config=cfg.model)
  assert report['reinitialised']['params/res3_bat1/predictor/conv/kernel'] == (
      'shape: checkpoint [1, 1, 1, 16, 2] vs model [1, 1, 1, 16, 4] (BAT groups: k=2 in the '
      'checkpoint, k=4 in the model (model.block.groups; the spatial k must match))')
  assert 'params/res3_bat1/predictor/conv/kernel' in report['unused']

  cfg = _cfg('c2d_resnet50', (4, 32, 32))
  cfg.model.block.size = 2
  _, abstract = _abstract(cfg)
  _, _, report = load_init_variables(workdir, abstract, abstract, model_config=cfg.model)
  assert ('window 4 in the checkpoint, 2 in the model (model.block.size; must match)'
          in report['reinitialised']['params/res3_bat1/predictor/predict_p/conv/kernel'])


def test_plan_sorts_every_name():
  source = {'params/conv1/kernel': (1, 7, 7, 3, 4), 'params/fc/kernel': (8, 10),
            'params/x/predictor/predict_p/conv/kernel': (4, 2, 32), 'params/old': (3,)}
  target = {'params/conv1/kernel': (5, 7, 7, 3, 4), 'params/fc/kernel': (8, 4),
            'params/x/predictor/predict_p/conv/kernel': (4, 2, 32),
            'params/x/predictor/predict_t/conv/kernel': (2, 2, 8), 'params/new': (2,)}
  plan = inflate.plan_transfer(source, target, video_from_image=True)
  assert plan.inflate == {'params/conv1/kernel': 5}
  assert plan.load == ['params/x/predictor/predict_p/conv/kernel']
  assert plan.reinit == ['params/fc/kernel']
  assert plan.new == ['params/x/predictor/predict_t/conv/kernel']
  assert plan.missing == ['params/new'] and plan.unexpected == ['params/old']
  strict = inflate.plan_transfer(source, target)
  assert strict.missing == ['params/new', 'params/x/predictor/predict_t/conv/kernel']
  assert [m[0] for m in strict.mismatched] == ['params/fc/kernel']
  values = inflate.apply_plan(plan, {n: np.ones(s, np.float32) for n, s in source.items()},
                              {n: np.zeros(s, np.float32) for n, s in target.items()})
  assert values.keys() == target.keys()
  np.testing.assert_allclose(values['params/conv1/kernel'], 0.2)
  assert not values['params/fc/kernel'].any()
  report = plan.init_report()
  assert report['counts'] == {'loaded': 1, 'inflated': 1, 'reinitialised': 3, 'unused': 2}
  assert report['unused'] == ['params/fc/kernel', 'params/old']
  ignoring = inflate.plan_transfer(source, target, video_from_image=True, ignore=('conv1',))
  assert ignoring.ignored == ['params/conv1/kernel'] and not ignoring.inflate
  assert ignoring.init_report()['reinitialised']['params/conv1/kernel'] == (
      'named by config.init_from_ignore')
