"""Data fields of the video recipes: the released BAT video code's augmentation and
normalisation (``main.py``: ``GroupMultiScaleCrop(224, [1, .875, .75, .66])``,
``GroupNormalize([103.939, 116.779, 123.68], [1])`` on RGB 0-255 frames), the Non-local paper's
scale jitter for its rows."""

import numpy as np
import pytest

from bat_jax.data import normalization
from configs import args

BAT_VIDEO = ('kinetics_c2d', 'kinetics_c2d_bat', 'kinetics_c2d_3dbat', 'kinetics_c2d_3dbat:frames=16',
             'kinetics_i3d', 'kinetics_i3d_bat', 'kinetics_r101_c2d_3dbat', 'mini_kinetics_c2d',
             'mini_kinetics_c2d_bat')
NON_LOCAL = ('kinetics_c2d_nl', 'kinetics_i3d_nl', 'mini_kinetics_c2d_nl',
             'mini_kinetics_c2d_nl_pretrained')


def _data(name):
  return args.load(name).data


@pytest.mark.parametrize('name', BAT_VIDEO)
def test_bat_video_recipes_crop_and_normalise_as_the_released_code(name):
  data = _data(name)
  assert data.train_augment == 'multiscale_crop' and tuple(data.train_short_side) == (256, 256)
  assert data.crop_size == 224 and data.eval_short_side == 256
  x = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 3), np.uint8)
  want = x.astype(np.float64) - np.asarray([103.939, 116.779, 123.68])  # R, G, B in that order
  got = normalization.normalize(x, normalization.input_stats(data))  # the steps' function
  np.testing.assert_allclose(np.asarray(got), want, atol=2e-4)


@pytest.mark.parametrize('name', NON_LOCAL)
def test_non_local_rows_keep_scale_jitter(name):
  data = _data(name)
  assert data.train_augment == 'scale_jitter' and tuple(data.train_short_side) == (256, 320)


@pytest.mark.parametrize('name', ('imagenet_r50', 'imagenet_r50_bat:k=8', 'ssv1_rsa_r50',
                                  'demo_toy_c2d_3dbat'))
def test_imagenet_normalisation_on_rgb_in_0_1(name):
  data = _data(name)
  np.testing.assert_allclose(data.mean, (0.485, 0.456, 0.406))
  np.testing.assert_allclose(data.std, (0.229, 0.224, 0.225))
