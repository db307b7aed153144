"""uint8 out of the workers, the recipe's mean / std applied on the device by the jitted steps
(``bat_jax/data/normalization.py``; issue 15 item 1).

"Before" is the host formula the workers used, ``float32 (x / 255 - mean) / std``, written here
from the equation and applied to the same uint8 data; the reference is float64."""

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from absl import flags

from bat_jax.data import cifar, imagenet, pipeline
from bat_jax.data import decode as D
from bat_jax.data import mesh as mesh_lib
from bat_jax.data import normalization as N
from bat_jax.data import video as V
from bat_jax.evaluation import steps as eval_steps
from bat_jax.training import state as state_lib
from bat_jax.training import steps as train_steps
from configs import base_kinetics

flags.FLAGS.mark_as_parsed()  # grain outside absl.app.run

KINETICS = base_kinetics.get_config().data  # caffe-style: mean_255 / 255, std 1 / 255


def _old_host_formula(x: np.ndarray, mean, std) -> np.ndarray:
  """What the workers returned before: float32 ``(x / 255 - mean) / std``."""
  return (np.asarray(x, np.float32) / np.float32(255.0) - np.asarray(mean, np.float32)) \
      / np.asarray(std, np.float32)


def _reference(x: np.ndarray, stats: N.InputStats) -> np.ndarray:
  return (np.asarray(x, np.float64) / 255.0 - np.asarray(stats.mean)) / np.asarray(stats.std)


def _check(x_uint8: np.ndarray, stats: N.InputStats) -> None:
  assert x_uint8.dtype == np.uint8
  got = np.asarray(jax.jit(lambda v: N.normalize(v, stats))(x_uint8))
  assert got.dtype == np.float32 and got.shape == x_uint8.shape
  old = _old_host_formula(x_uint8, stats.mean, stats.std)
  scale = np.abs(old).max()
  np.testing.assert_allclose(got, old, rtol=0, atol=4e-7 * scale)  # float32 rounding
  np.testing.assert_allclose(got, _reference(x_uint8, stats), rtol=0, atol=4e-7 * scale)


@pytest.fixture(scope='module')
def clip_path(tmp_path_factory):
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (10, 40, 48, 3), np.uint8)
  path = str(tmp_path_factory.mktemp('norm') / 'v.mp4')
  D.write_video(path, frames, fps=8)
  return path


@pytest.mark.parametrize('mean, std', [(N.IMAGENET_MEAN, N.IMAGENET_STD),
                                       (KINETICS.mean, KINETICS.std)])
def test_video_batches_are_uint8_and_normalise_to_the_old_values(clip_path, mean, std):
  cfg = dict(root='.', num_frames=4, frame_stride=2, crop_size=32, train_short_side=(32, 40),
             eval_short_side=32, num_workers=0, num_threads=1, mean=mean, std=std)
  stats = N.input_stats(cfg)
  it = pipeline.make_eval_iterator(cfg, 2, records=[(clip_path, 0)])
  batch = next(iter(it))
  it.close()
  assert batch['video'].dtype == np.uint8 and not batch['mask'][1]
  assert not batch['video'][1].any()  # the padding row: uint8 zeros
  # bytes per clip: 1 per value, a quarter of the float32 clip the workers sent before
  clip = batch['video'][0]
  assert clip.nbytes == np.prod(clip.shape) == np.zeros(clip.shape, np.float32).nbytes // 4
  _check(batch['video'], stats)
  train = V.train_transform(clip_path, np.random.default_rng(1), num_frames=4, stride=2,
                            crop_size=32, short_side_range=(32, 40))
  _check(train, stats)


def test_imagenet_and_cifar_images_normalise_to_the_old_values():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (50, 60, 3), np.uint8)
  stats = N.input_stats({'name': 'imagenet2012'})
  assert stats == (N.IMAGENET_MEAN, N.IMAGENET_STD)
  _check(imagenet.train_image(image, np.random.default_rng(1), size=32), stats)
  _check(imagenet.eval_image(image, size=32, resize=40), stats)
  stats = N.input_stats({'name': 'cifar100'})  # the CIFAR default is CIFAR's statistics
  assert stats == (cifar.CIFAR_MEAN, cifar.CIFAR_STD)
  _check(cifar.augment(image[:32, :32], np.random.default_rng(2)), stats)


def test_float_inputs_pass_through_and_bad_stats_name_the_field():
  x = np.random.default_rng(0).normal(size=(2, 4, 4, 3)).astype(np.float32)
  assert N.normalize(x, None) is x  # the synthetic set's float features
  with pytest.raises(ValueError, match='input_stats'):
    N.normalize(x.astype(np.uint8), None)
  with pytest.raises(ValueError, match=r'config.data.mean'):
    N.input_stats({'mean': (0.5, 0.5)})
  with pytest.raises(ValueError, match=r'config.data.std'):
    N.input_stats({'std': (0.2, 0.0, 0.2)})
  with pytest.raises(ValueError, match=r'config.data.std'):
    N.input_stats({'std': 'abc'})


class _ConvBN(nn.Module):
  """conv -> BatchNorm -> ReLU -> mean -> dense: BN batch statistics and a gradient step are
  sensitive to any difference in the input."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3))(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train)(x))
    return nn.Dense(4)(x.mean(axis=(1, 2)))


def test_steps_on_uint8_equal_the_steps_on_the_old_float32_batch():
  model = _ConvBN()
  mesh = mesh_lib.make_mesh()
  tx = optax.sgd(0.1, momentum=0.9)
  shape = (1, 32, 32, 3)
  stats = N.InputStats(N.IMAGENET_MEAN, N.IMAGENET_STD)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (4, 32, 32, 3), np.uint8)
  labels = rng.integers(0, 4, 4).astype(np.int32)
  old = _old_host_formula(x, stats.mean, stats.std)

  outs = []
  for images, s in ((x, stats), (old, None)):
    state = state_lib.create_train_state(model, tx, 0, shape, mesh)
    batch = mesh_lib.global_batch({'image': images, 'label': labels}, mesh)
    state, metrics = train_steps.make_train_step(model, tx, mesh, input_stats=s)(state, batch)
    sums = eval_steps.make_eval_step(model, mesh, 4, input_stats=s)(state.variables(), batch)
    logits = eval_steps.make_predict_step(model, mesh, input_stats=s)(state.variables(), batch)
    outs.append(jax.device_get((state.params, metrics['loss'], sums['loss'], logits)))
  (p_u, *rest_u), (p_f, *rest_f) = outs
  assert rest_u[0] > 0 and np.abs(rest_u[2]).max() > 0  # a real step
  for a, b in zip(jax.tree.leaves(p_u) + rest_u, jax.tree.leaves(p_f) + rest_f):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)
