"""``--protocol=rsa`` (``rsa_neurips2021_supplementary.md`` §1 "Testing"): frames resized to a
fixed H x W (not the short side), centre crop, one or two clips, softmax averaged per video."""

import os

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import pytest
from PIL import Image

from bat_jax.data import decode
from bat_jax.data import mesh as mesh_lib
from bat_jax.data import something_something as ss
from bat_jax.evaluation import protocols
from tests import helpers_train
from tests.rsa_layouts import (NUM_FRAMES, SPLITS, SSV2_CLASSES, T, data_config, video_path,
                               write_layout)

# ------------------------------------------------------------------------------------------------
# Something-Something V1 frame folders and V2 webm files whose frames are linear ramps (a resize of
# a linear ramp is the same ramp, so a float64 NumPy bilinear resize is a reference to within the
# codec's and the resampler's rounding).

RH, RW = 40, 80  # source frames, 1:2
FRAME_SIZE = (48, 64)  # stands for RSA's 240 x 320 (3:4): the aspect ratio changes
RCROP = 32


def _ramp_frames(seed):
  """R = 20 + 4 y (row), G = 30 + 2 x (column), B = 20 + 20 t (frame)."""
  del seed
  f = np.empty((T, RH, RW, 3), np.uint8)
  f[..., 0] = (20 + 4 * np.arange(RH))[None, :, None]
  f[..., 1] = (30 + 2 * np.arange(RW))[None, None, :]
  f[..., 2] = (20 + 20 * np.arange(T))[:, None, None]
  return f


@pytest.fixture(scope='module')
def ramp_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('rsa_protocol'))
  write_layout(root, 'something_something_v2', _ramp_frames)
  return root


def _ramp_config(root):
  # mean 0, std 1/255: the pipeline's values are pixel values (whether normalised or uint8).
  return ml_collections.ConfigDict(data_config(
      'something_something_v2', root, crop_size=RCROP, train_short_side=(RCROP, RCROP),
      eval_short_side=RCROP, eval_frame_size=FRAME_SIZE, mean=(0., 0., 0.),
      std=(1 / 255,) * 3))


def _bilinear(frames, out_h, out_w):
  """float64 bilinear resize of (T, h, w, C) with pixel centres aligned (half-pixel rule)."""
  _, h, w, _ = frames.shape
  y = np.clip((np.arange(out_h) + 0.5) * h / out_h - 0.5, 0, h - 1)
  x = np.clip((np.arange(out_w) + 0.5) * w / out_w - 0.5, 0, w - 1)
  y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
  y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
  wy, wx = (y - y0)[None, :, None, None], (x - x0)[None, None, :, None]
  f = frames.astype(np.float64)
  rows = f[:, y0] * (1 - wy) + f[:, y1] * wy
  return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def _rsa_views(root, num_clips):
  it = ss.make_eval_iterator(_ramp_config(root), 4, num_clips=num_clips, frame_size=FRAME_SIZE)
  batches = list(it)
  it.close()
  cat = {k: np.concatenate([b[k] for b in batches]) for k in ('video', 'video_index', 'mask',
                                                               'label')}
  return cat


@pytest.fixture(scope='module')
def ramp_folders(tmp_path_factory):
  """Something-Something V1 layout (JPEG frame folders) of the same ramp videos."""
  root = str(tmp_path_factory.mktemp('rsa_protocol_v1'))
  names = [n for n, _, k in SPLITS['val'] if k == 'ok']
  for name in names:
    folder = os.path.join(root, ss.FRAMES_DIR, name)
    os.makedirs(folder)
    for i, f in enumerate(_ramp_frames(0)):
      Image.fromarray(f).save(os.path.join(folder, f'{i + 1:05d}.jpg'), quality=95,
                              subsampling=0)
  with open(os.path.join(root, 'something-something-v1-labels.csv'), 'w') as f:
    f.write('\n'.join(SSV2_CLASSES[i] for i in range(3)) + '\n')
  with open(os.path.join(root, 'something-something-v1-validation.csv'), 'w') as f:
    f.write(''.join(f'{n};{SSV2_CLASSES[0]}\n' for n in names))
  return root, names


def _view_errors(cfg, paths, num_clips):
  """|pipeline view - NumPy bilinear resize to FRAME_SIZE + centre crop of the decoded frames|,
  (views, T, crop, crop, 3), for every view of ``paths`` (all decodable)."""
  it = ss.make_eval_iterator(cfg, 4, num_clips=num_clips, frame_size=FRAME_SIZE)
  batches = list(it)
  it.close()
  video = np.concatenate([b['video'] for b in batches])
  index = np.concatenate([b['video_index'] for b in batches])
  mask = np.concatenate([b['mask'] for b in batches])
  top, left = (FRAME_SIZE[0] - RCROP) // 2, (FRAME_SIZE[1] - RCROP) // 2
  errors = []
  for row in np.flatnonzero(mask):
    native = decode.decode_segments(paths[index[row]], NUM_FRAMES, train=False,
                                    clip_index=row % num_clips, num_clips=num_clips)
    assert native.shape[1:3] == (RH, RW)
    want = _bilinear(native, *FRAME_SIZE)[:, top:top + RCROP, left:left + RCROP]
    errors.append(np.asarray(video[row], np.float64) - want)
  assert len(errors) == len(paths) * num_clips
  return np.stack(errors)


@pytest.mark.parametrize('num_clips', [1, 2])
def test_rsa_views_of_frame_folders_are_resize_then_centre_crop(ramp_folders, num_clips):
  """Frame folders (PIL bilinear resize): equal to the NumPy reference to within rounding (PIL's
  fixed-point weights, JPEG noise). A crop one pixel off would miss by 2.5 (columns) to 3.3
  (rows) everywhere, a short-side resize by up to 20."""
  root, names = ramp_folders
  cfg = _ramp_config(root)
  cfg.name = 'something_something_v1'
  err = _view_errors(cfg, [os.path.join(root, ss.FRAMES_DIR, n) for n in names], num_clips)
  assert np.abs(err).max() <= 1.5 and np.abs(err).mean() < 0.5, np.abs(err).max()


@pytest.mark.parametrize('num_clips', [1, 2])
def test_rsa_views_of_webm_videos_are_resize_then_centre_crop(ramp_root, num_clips):
  """webm (swscale resizes while converting from YUV): a colour offset of a few levels and a
  ripple against the reference, which converts first; the row and column profiles (the
  geometry) have the reference's slopes."""
  paths = [video_path('something_something_v2', ramp_root, n) for n, _, k in SPLITS['val']
           if k != 'missing']
  err = _view_errors(_ramp_config(ramp_root), paths[:2], num_clips)
  bias = err.mean(axis=(0, 1, 2, 3))
  assert np.abs(bias).max() <= 3.5, bias
  rows = err[..., 0].mean(axis=(0, 1, 3))  # R ramp along the rows
  cols = err[..., 1].mean(axis=(0, 1, 2))  # G ramp along the columns
  # The error's trend over the crop: a short-side resize (48 x 96) would give 0.8 per column.
  slopes = [np.polyfit(np.arange(RCROP), p, 1)[0] for p in (rows, cols)]
  assert np.abs(slopes).max() < 0.05, slopes
  assert np.abs(rows - bias[0]).mean() < 1.0 and np.abs(cols - bias[1]).mean() < 1.0


class _PixelClassifier(nn.Module):
  """Logits = a dense layer on the whole clip: every view gets its own scores."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train
    return nn.Dense(3)(x.reshape(x.shape[0], -1) / 255.0)


@pytest.fixture(scope='module')
def tiny_model():
  cfg = helpers_train.get_config('video')
  cfg.model.num_classes = 3
  model = _PixelClassifier()
  variables = model.init(jax.random.key(0), np.zeros((1, NUM_FRAMES, RCROP, RCROP, 3)))
  return cfg, model, variables, mesh_lib.make_mesh()


def test_rsa_protocol_averages_the_softmax_of_its_clips(ramp_root, tiny_model):
  cfg, model, variables, mesh = tiny_model
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.data = _ramp_config(ramp_root)
  cfg.eval_num_clips = 2
  cfg.eval_batch_size = 4
  spec = protocols.rsa_view_spec(cfg)
  assert (spec.num_clips, spec.num_crops, spec.frame_size) == (2, 1, FRAME_SIZE)
  acc, info = protocols.predict_views(cfg, model, variables, mesh, spec, label='rsa')
  assert info['frame_size'] == FRAME_SIZE and info['num_clips'] == 2

  views = _rsa_views(ramp_root, 2)
  apply = jax.jit(lambda x: model.apply(variables, x, train=False))
  logits = np.asarray(apply(np.asarray(views['video'][:4], np.float32)), np.float64)
  e = np.exp(logits - logits.max(1, keepdims=True))
  probs = e / e.sum(1, keepdims=True)
  hand = np.stack([probs[0:2].mean(0), probs[2:4].mean(0)])  # videos 0, 1: two clips each
  assert acc.video_ids().tolist() == [0, 1] and acc.view_counts().tolist() == [2, 2]
  np.testing.assert_allclose(acc.mean_probs(), hand, rtol=1e-4, atol=1e-6)

  result = protocols.PROTOCOLS['rsa'](cfg, model, variables, mesh)
  labels = views['label'][[0, 2]]
  assert result['top1'] == pytest.approx(np.mean(np.argmax(hand, 1) == labels))
  assert result['num_examples'] == 2 and result['num_views'] == 4
  assert result['num_videos_skipped'] == 1  # the broken webm


def test_rsa_protocol_config_errors(ramp_root, tiny_model):
  cfg = ml_collections.ConfigDict(tiny_model[0].to_dict())
  cfg.data = _ramp_config(ramp_root)
  cfg.eval_num_clips = 0
  with pytest.raises(protocols.ConfigError, match='config.eval_num_clips=0'):
    protocols.rsa_view_spec(cfg)
  cfg.eval_num_clips = 1
  cfg.data.eval_frame_size = (24, 320)
  with pytest.raises(protocols.ConfigError, match='config.data.eval_frame_size'):
    protocols.rsa_view_spec(cfg)
