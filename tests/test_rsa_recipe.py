"""RSA recipe pieces: Nesterov SGD, TSN segment sampling, the no-flip rule, stochastic depth."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from bat_jax import build_model
from bat_jax.data import pipeline
from bat_jax.data import decode as D
from bat_jax.data import video as video_lib
from bat_jax.models import regularizers
from bat_jax.training import optim


# ------------------------------------------------------------------------------------------
# Nesterov SGD.
# ------------------------------------------------------------------------------------------


def _sgd_config(nesterov):
  return ml_collections.ConfigDict(dict(optimizer='sgd', momentum=0.9, nesterov=nesterov,
                                        grad_clip_norm=0.0, weight_decay=0.01,
                                        weight_decay_on='all'))


def test_nesterov_matches_pytorch_formula_two_steps():
  lr, m, wd = 0.1, 0.9, 0.01
  tx = optim.make_optimizer(_sgd_config(True), optax.constant_schedule(lr))
  p0 = {'w': jnp.array([1.0, -2.0, 0.5])}
  grads = [np.array([0.3, -0.1, 0.2]), np.array([-0.4, 0.25, 0.05])]
  state = tx.init(p0)
  params = p0
  for g in grads:
    updates, state = tx.update({'w': jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
  # torch.optim.SGD(nesterov=True, dampening=0): d = g + wd p; buf = d (step 1) else m buf + d;
  # p -= lr (d + m buf).
  p = np.array([1.0, -2.0, 0.5])
  buf = None
  for g in grads:
    d = g + wd * p
    buf = d if buf is None else m * buf + d
    p = p - lr * (d + m * buf)
  np.testing.assert_allclose(np.asarray(params['w']), p, rtol=1e-6, atol=1e-7)


def test_nesterov_default_off_is_plain_momentum():
  cfg = _sgd_config(False)
  del cfg['nesterov']
  tx = optim.make_optimizer(cfg, optax.constant_schedule(0.1))
  p0 = {'w': jnp.array([1.0])}
  state = tx.init(p0)
  params = p0
  for g in (0.3, -0.4):
    updates, state = tx.update({'w': jnp.array([g])}, state, params)
    params = optax.apply_updates(params, updates)
  p, buf = 1.0, None
  for g in (0.3, -0.4):
    d = g + 0.01 * p
    buf = d if buf is None else 0.9 * buf + d
    p -= 0.1 * buf
  np.testing.assert_allclose(float(params['w'][0]), p, rtol=1e-6)


# ------------------------------------------------------------------------------------------
# TSN segment sampling on a real encoded video.
# ------------------------------------------------------------------------------------------

_LEVEL = 8  # frame i is a flat grey image of value 8 i (+ 8): the index survives H.264


def _index_video(path, n):
  frames = np.stack([np.full((16, 16, 3), _LEVEL * (i + 1), np.uint8) for i in range(n)])
  D.write_video(path, frames, crf=10)
  return path


def _decoded_indices(clip):
  return np.rint(clip.reshape(clip.shape[0], -1).mean(1) / _LEVEL).astype(int) - 1


def test_segment_indices_hand_computed():
  # n = 27, T = 8: d = 3; train frame 3 i + floor(3 u_i); eval floor((2 i + 1) 27 / 16).
  u = np.array([0.0, 0.34, 0.67, 0.99, 0.5, 0.1, 0.9, 0.33])
  np.testing.assert_array_equal(D.segment_indices(27, 8, u),
                                [0, 4, 8, 11, 13, 15, 20, 21])
  np.testing.assert_array_equal(D.segment_indices(27, 8),
                                [1, 5, 8, 11, 15, 18, 21, 25])
  # TSN's int(tick / 2 + tick * i), tick = n / T, for a few lengths
  for n in (8, 9, 16, 27, 40, 71):
    tick = n / 8
    np.testing.assert_array_equal(D.segment_indices(n, 8),
                                  [int(tick / 2 + tick * i) for i in range(8)])
  # short video (n < T): floor((2 i + 1) 3 / 16), sorted, in range
  np.testing.assert_array_equal(D.segment_indices(3, 8), [0, 0, 0, 1, 1, 2, 2, 2])
  short = D.segment_indices(3, 8, np.full(8, 0.999))
  assert short.min() >= 0 and short.max() <= 2 and np.all(np.diff(short) >= 0)
  # multi-clip: clip k of K at the fraction (k + 1/2) / K of every segment
  np.testing.assert_array_equal(D.segment_indices(32, 8, clip_index=0, num_clips=2),
                                [1, 5, 9, 13, 17, 21, 25, 29])
  np.testing.assert_array_equal(D.segment_indices(32, 8, clip_index=1, num_clips=2),
                                [3, 7, 11, 15, 19, 23, 27, 31])


def test_segment_sampling_on_real_video(tmp_path):
  n, t = 27, 8
  path = _index_video(tmp_path / 'v.mp4', n)
  # evaluation: the segment centres
  clip = D.decode_segments(path, t, train=False)
  assert clip.shape == (t, 16, 16, 3)
  np.testing.assert_array_equal(_decoded_indices(clip), [1, 5, 8, 11, 15, 18, 21, 25])
  # training: the offsets the rng draws, then 3 i + floor(3 u_i)
  for seed in range(3):
    u = np.random.default_rng(seed).random(t)
    expected = np.arange(t) * 3 + np.floor(u * 3).astype(int)
    clip = D.decode_segments(path, t, np.random.default_rng(seed), train=True)
    np.testing.assert_array_equal(_decoded_indices(clip), expected)
  # through the transforms (crop = the full frame, no flip; uint8 pixels)
  out = video_lib.eval_transform(path, num_frames=t, stride=99, crop_size=16, short_side=16,
                                 sampling='segments')
  assert out.dtype == np.uint8
  np.testing.assert_array_equal(
      np.rint(out.reshape(t, -1).mean(1) / _LEVEL).astype(int) - 1,
      [1, 5, 8, 11, 15, 18, 21, 25])
  rng = np.random.default_rng(7)
  out = video_lib.train_transform(path, rng, num_frames=t, stride=99, crop_size=16,
                                  short_side_range=(16, 16), flip=False, sampling='segments')
  rng = np.random.default_rng(7)
  rng.integers(16, 17)  # the short-side draw comes first
  u = rng.random(t)
  np.testing.assert_array_equal(np.rint(out.reshape(t, -1).mean(1) / _LEVEL) - 1,
                                np.arange(t) * 3 + np.floor(u * 3))


def test_segment_sampling_short_video(tmp_path):
  path = _index_video(tmp_path / 's.mp4', 3)
  clip = D.decode_segments(path, 8, train=False)
  np.testing.assert_array_equal(_decoded_indices(clip), [0, 0, 0, 1, 1, 2, 2, 2])


def test_unknown_sampling_rejected(tmp_path):
  with pytest.raises(ValueError, match='sampling'):
    pipeline._sampling({'sampling': 'tsm'})
  assert pipeline._sampling({}) == 'dense'


# ------------------------------------------------------------------------------------------
# No-flip rule.
# ------------------------------------------------------------------------------------------


def test_no_flip_classes_whole_words():
  names = ['Pushing something from left to right', 'Pulling something from right to left',
           'Putting something upright on the table', 'Turning the camera Left while filming '
           'something', 'Holding something', 'moving_something_left', 'Lefty [something]']
  assert pipeline.no_flip_classes(names, ('left', 'right')) == {0, 1, 3, 5}
  assert pipeline.no_flip_classes(names, ()) == frozenset()


def test_no_flip_rule_in_training_loader(tmp_path):
  # left half dark, right half bright: a flipped clip has its bright half on the left
  frame = np.zeros((16, 16, 3), np.uint8)
  frame[:, 8:] = 200
  path = str(tmp_path / 'lr.mp4')
  D.write_video(path, np.stack([frame] * 4))
  opts = dict(num_frames=2, stride=1, crop_size=16, short_side_range=(16, 16), flip=True,
              sampling='segments')
  labels = np.array([0, 1], np.int32)
  no_flip = pipeline.no_flip_classes(['Pushing something from left to right', 'Holding it'],
                                     ('left', 'right'))
  load = pipeline._TrainLoad([path, path], labels, 0, opts, no_flip)
  flipped = {0: 0, 1: 0}
  for pos in range(40):
    for rec in (0, 1):
      v = load((0, pos, rec))['video']
      flipped[rec] += int(v[:, :, :8].mean() > v[:, :, 8:].mean())
  assert flipped[0] == 0
  assert 5 < flipped[1] < 35


def test_no_flip_keywords_need_class_names():
  cfg = {'num_frames': 2, 'frame_stride': 1, 'crop_size': 16, 'train_short_side': (16, 16),
         'no_flip_keywords': ('left',)}
  with pytest.raises(ValueError, match='no_flip_keywords'):
    pipeline.make_train_iterator(cfg, 1, records=[('a.mp4', 0)])


# ------------------------------------------------------------------------------------------
# Stochastic depth.
# ------------------------------------------------------------------------------------------


def test_drop_path_expectation_and_whole_samples():
  x = jnp.ones((4000, 2, 3, 3), jnp.float32) * 2.0
  y = np.asarray(regularizers.drop_path(x, 0.2, jax.random.PRNGKey(0), deterministic=False))
  per_sample = y.reshape(4000, -1)
  zero = np.all(per_sample == 0, axis=1)
  kept = np.all(np.isclose(per_sample, 2.0 / 0.8), axis=1)
  assert np.all(zero | kept)  # whole samples are dropped or kept (and scaled)
  assert abs(zero.mean() - 0.2) < 0.03
  assert abs(y.mean() - 2.0) < 0.1


def test_drop_path_identity_cases():
  x = jax.random.normal(jax.random.PRNGKey(1), (3, 4, 5))
  assert regularizers.drop_path(x, 0.5, jax.random.PRNGKey(0), deterministic=True) is x
  assert regularizers.drop_path(x, 0.0, None, deterministic=False) is x
  np.testing.assert_array_equal(regularizers.drop_path(x, 1.0, None, False), np.zeros_like(x))
  with pytest.raises(ValueError):
    regularizers.drop_path(x, 0.5, None, deterministic=False)


def test_drop_path_under_jit_and_grad():
  x = jnp.ones((8, 3))
  f = jax.jit(lambda x, k: regularizers.drop_path(x, 0.5, k, False).sum())
  g = jax.grad(f)(x, jax.random.PRNGKey(3))
  assert set(np.unique(np.asarray(g))) <= {0.0, 2.0}


def test_stochastic_depth_rates_linear():
  rates = regularizers.stochastic_depth_rates(0.2, 16)
  assert len(rates) == 16 and rates[0] == 0.0
  assert rates[-1] == pytest.approx(0.2)
  np.testing.assert_allclose(rates, np.linspace(0.0, 0.2, 16))
  # released ops/ResNet.py: keep prob 1 - i * (1 - 0.8) / (16 - 1)
  np.testing.assert_allclose([1 - r for r in rates], [1 - i * 0.2 / 15 for i in range(16)])
  assert regularizers.stochastic_depth_rates(0.2, 1) == (0.0,)
  assert regularizers.stochastic_depth_rates(0.0, 4) == (0.0,) * 4


def test_rsa_config_fields():
  from configs import ssv1_rsa_r50
  c = ssv1_rsa_r50.get_config()
  assert c.nesterov is True
  assert c.model.stochastic_depth == 0.2
  assert c.data.sampling == 'segments'
  assert tuple(c.data.no_flip_keywords) == ('left', 'right')
  assert (c.label_smoothing, c.model.dropout_rate, c.grad_clip_norm) == (0.1, 0.3, 100.0)
  assert (c.weight_decay, c.base_learning_rate, c.global_batch_size) == (5e-4, 0.02, 64)
  assert (c.schedule, c.warmup_epochs, c.num_epochs) == ('cosine', 5, 50)


def test_stochastic_depth_drops_whole_residual_branches_in_the_model():
  """model.stochastic_depth: in training some clips skip a block's branch entirely (the block
  is then ReLU(shortcut)); in eval nothing is dropped."""
  cfg = dict(name='resnet18', num_classes=3, width=4, stochastic_depth=0.9)
  model = build_model(ml_collections.ConfigDict(cfg))
  plain = build_model(ml_collections.ConfigDict({**cfg, 'stochastic_depth': 0.0}))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 16, 16, 3)), jnp.float32)
  variables = jax.jit(model.init)(jax.random.key(0), x)
  infer = lambda m: jax.jit(lambda v: m.apply(v, x))(variables)  # noqa: E731
  np.testing.assert_allclose(infer(model), infer(plain), rtol=1e-6)
  train = jax.jit(lambda key: model.apply(variables, x, train=True, rngs={'dropout': key},
                                          mutable=['batch_stats'])[0])
  outs = [train(jax.random.key(s)) for s in range(3)]
  ref, _ = jax.jit(lambda: plain.apply(variables, x, train=True, mutable=['batch_stats'],
                                       rngs={'dropout': jax.random.key(0)}))()
  assert all(not np.allclose(o, ref) for o in outs)
  assert not np.allclose(outs[0], outs[1])
