"""Multi-view evaluation (bat_jax/data/views.py, protocols.evaluate_views): the 30-view and
250-view samplers cover the video evenly, the pipeline produces exactly those views from real
encoded files, and the view-averaged prediction equals a hand computation on a tiny model."""

import csv
import os

import jax
import ml_collections
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bat_jax import build_model
from bat_jax.data import mesh as mesh_lib
from bat_jax.data import pipeline
from bat_jax.data import decode as D
from bat_jax.data import normalization
from bat_jax.data import views
from bat_jax.evaluation import metrics as metrics_lib
from bat_jax.evaluation import protocols
from bat_jax.training import config_checks
from bat_jax.training import evaluate as evaluate_lib
from bat_jax.training import loop
from bat_jax.training import state as state_lib
from tests import helpers_train as h

loop.mark_flags_parsed()

MEAN, STD = np.asarray(normalization.IMAGENET_MEAN), np.asarray(normalization.IMAGENET_STD)


# ------------------------------------------------------------------------------------------------
# Samplers.


def test_protocol_table():
  assert views.PROTOCOL_VIEWS['30view'] == views.ViewSpec(10, 3, 'eval_short_side')
  assert views.PROTOCOL_VIEWS['250view'] == views.ViewSpec(25, 10, 'crop_size')
  assert views.PROTOCOL_VIEWS['clip'].num_views == 1
  assert set(protocols.PROTOCOLS) == {'clip', '30view', '250view', 'imagenet', 'rsa',
                                      'charades'}


def test_kinetics_clip_starts():
  # A 10 s, 30 fps Kinetics video, 8 frames at stride 8 (a 57-frame window): 243 valid starts.
  np.testing.assert_array_equal(views.clip_starts(300, 8, 8, 10), np.arange(10) * 27)
  s25 = views.clip_starts(300, 8, 8, 25)
  assert s25[0] == 0 and s25[-1] == 243 and set(np.diff(s25)) == {10, 11}
  assert views.clip_starts(300, 8, 8, 1).tolist() == [122]  # round_half_up(243 / 2)
  assert views.clip_starts(40, 8, 8, 10).tolist() == [0] * 10  # shorter than the window: loops


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 600), num_frames=st.integers(1, 16), stride=st.integers(1, 8),
       num_clips=st.integers(1, 30))
def test_clip_starts_are_evenly_spread_over_the_whole_video(n, num_frames, stride, num_clips):
  starts = views.clip_starts(n, num_frames, stride, num_clips)
  window = views.clip_window(num_frames, stride)
  max_start = max(n - window, 0)
  assert len(starts) == num_clips and np.all((0 <= starts) & (starts <= max_start))
  if num_clips == 1:
    assert starts[0] == (max_start + 1) // 2
    return
  assert starts[0] == 0 and starts[-1] == max_start  # from the first frame to the last
  gaps = np.diff(starts)
  step = max_start / (num_clips - 1)
  assert np.all((gaps >= np.floor(step)) & (gaps <= np.ceil(step)))  # even spacing
  np.testing.assert_allclose(starts, np.arange(num_clips) * step, atol=0.5 + 1e-9)
  if n >= window and step <= window:  # the clips' windows cover every frame
    covered = np.zeros(n, bool)
    for s in starts:
      covered[s:s + window] = True
    assert covered.all()


def _coords(h, w):
  """(1, h, w, 2) frame whose pixel holds (y, x)."""
  yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  return np.stack([yy, xx], -1)[None]


@pytest.mark.parametrize('h,w', [(256, 340), (256, 455), (340, 256), (256, 256), (64, 85)])
def test_three_crops_tile_the_long_side(h, w):
  s = min(h, w)  # 30-view: crops of the full short side
  crops = [views.apply_crop(_coords(h, w), s, c, 3)[0] for c in range(3)]
  covered = np.zeros((h, w), bool)
  for crop in crops:
    assert crop.shape == (s, s, 2)
    covered[crop[..., 0], crop[..., 1]] = True
  assert covered.all()  # together they see the whole frame
  firsts = [tuple(c[0, 0]) for c in crops]
  long_side = max(h, w)
  offsets = [f[1] if w >= h else f[0] for f in firsts]
  assert offsets == [0, (long_side - s) // 2, long_side - s]  # left / centre / right
  # 224 crops at short side 256: centred on the short side.
  box = views.crop_boxes(256, 340, 224, 3)
  assert box == [(16, 0, False), (16, 58, False), (16, 116, False)]


def test_ten_crops_are_corners_centre_and_their_flips():
  h, w, s = 256, 340, 224
  frame = _coords(h, w)
  crops = [views.apply_crop(frame, s, c, 10)[0] for c in range(10)]
  assert [tuple(c[0, 0]) for c in crops[:5]] == [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s),
                                                 (16, 58)]
  for c in range(5):
    np.testing.assert_array_equal(crops[c + 5], crops[c][:, ::-1])  # flipped views
  for c in range(4):  # each corner crop touches its two borders
    ys, xs = crops[c][..., 0], crops[c][..., 1]
    assert (ys.min() == 0 or ys.max() == h - 1) and (xs.min() == 0 or xs.max() == w - 1)
  # The same set as torchvision's TenCrop (five crops of the image, then of its mirror).
  mirror = frame[:, :, ::-1]
  tv = [views.apply_crop(frame, s, c, 10)[0] for c in range(5)]
  tv += [mirror[0, y:y + s, x:x + s] for y, x, _ in views.crop_boxes(h, w, s, 10)[:5]]
  key = lambda a: a.tobytes()  # noqa: E731
  assert sorted(map(key, tv)) == sorted(map(key, crops))
  with pytest.raises(ValueError):
    views.crop_box(200, 300, 224, 0, 10)


# ------------------------------------------------------------------------------------------------
# The pipeline's views on real encoded files.


def _coded_video(path, t, h, w):
  """Frame i: B = 20 + 6 i (time), G = 40 + 4 x (column), R = 20 + 5 y (row)."""
  f = np.empty((t, h, w, 3), np.uint8)
  f[..., 0] = (20 + 5 * np.arange(h))[None, :, None]
  f[..., 1] = (40 + 4 * np.arange(w))[None, None, :]
  f[..., 2] = (20 + 6 * np.arange(t))[:, None, None]
  D.write_video(path, f, fps=10, gop_size=6)


def _write_set(root, specs):
  """Kinetics layout, val only: specs = [(label, t, h, w)]."""
  os.makedirs(os.path.join(root, 'val'))
  rows = []
  for i, (label, t, hh, ww) in enumerate(specs):
    yid = f'vid{i:03d}'
    _coded_video(os.path.join(root, 'val', f'{yid}_000000_000010.mp4'), t, hh, ww)
    rows.append((label, yid, 0, 10, 'val'))
  for split in ('train', 'val'):
    with open(os.path.join(root, f'{split}.csv'), 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split'])
      w.writerows(rows)


@pytest.fixture(scope='module')
def coded_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('views'))
  # 34 frames of 32x48 (landscape), 28 of 40x32 (portrait), 40 of 32x32 and a 5-frame clip.
  _write_set(root, [('a', 34, 32, 48), ('b', 28, 40, 32), ('c', 40, 32, 32), ('a', 5, 32, 44)])
  return root


def _data_cfg(root, **kw):
  cfg = dict(name='kinetics400', root=root, num_frames=4, frame_stride=3, crop_size=24,
             train_short_side=(32, 40), eval_short_side=32, num_workers=0, num_threads=1)
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


def _pixels(x):
  """The workers' uint8 pixel values of a batch / clip, as float64."""
  assert np.asarray(x).dtype == np.uint8
  return np.asarray(x, np.float64)


@pytest.mark.parametrize('protocol', ['30view', '250view'])
def test_pipeline_views_are_the_sampled_clips_and_crops(coded_root, protocol):
  spec = views.PROTOCOL_VIEWS[protocol]
  cfg = _data_cfg(coded_root)
  crop = int(cfg[spec.crop])
  it = pipeline.make_eval_iterator(cfg, 20, num_clips=spec.num_clips, num_crops=spec.num_crops,
                                   crop_size=crop)
  batches = list(it)
  video = np.concatenate([b['video'] for b in batches])
  vid = np.concatenate([b['video_index'] for b in batches])
  assert it.num_views == spec.num_views
  lengths, shapes = [34, 28, 40, 5], [(32, 48), (40, 32), (32, 32), (32, 44)]
  for v, (n, (hh, ww)) in enumerate(zip(lengths, shapes)):
    rows = np.flatnonzero(vid == v)
    assert len(rows) == spec.num_views
    starts = views.clip_starts(n, 4, 3, spec.num_clips)
    for r, view in zip(rows, range(spec.num_views)):
      k, c = divmod(view, spec.num_crops)
      x = _pixels(video[r])
      times = np.round((x[..., 2].mean((1, 2)) - 20) / 6).astype(int)
      np.testing.assert_array_equal(times, (starts[k] + 3 * np.arange(4)) % n)
      top, left, flip = views.crop_box(hh, ww, crop, c, spec.num_crops)
      # yuv420p halves the colour resolution: positions are read to within a chroma block.
      cols = (x[0, crop // 2, :, 1] - 40) / 4
      want_cols = left + np.arange(crop)
      err = cols - (want_cols[::-1] if flip else want_cols)
      assert np.abs(err).max() <= 2.5 and abs(err.mean()) < 1.0
      rows_y = (x[0, :, crop // 2, 0] - 20) / 5
      err = rows_y - (top + np.arange(crop))
      assert np.abs(err).max() <= 2.5 and abs(err.mean()) < 1.0


# ------------------------------------------------------------------------------------------------
# View aggregation against a hand computation.


def test_accumulator_averages_softmax_per_video_and_ignores_padding():
  logits = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 0.0], [9.0, 9.0, 9.0],
                     [0.0, 0.0, 3.0]])
  acc = metrics_lib.ViewAccumulator(3)
  acc.add(logits[:3], np.array([0, 0, 1]), np.array([4, 4, 7]), np.array([True, True, True]))
  acc.add(logits[3:], np.array([1, 1]), np.array([-1, 7]), np.array([False, True]))
  e = np.exp(logits - logits.max(1, keepdims=True))
  p = e / e.sum(1, keepdims=True)
  np.testing.assert_allclose(acc.mean_probs(), [(p[0] + p[1]) / 2, (p[2] + p[4]) / 2])
  np.testing.assert_allclose(acc.mean_logits(), [(logits[0] + logits[1]) / 2,
                                                 (logits[2] + logits[4]) / 2])
  assert acc.video_ids().tolist() == [4, 7] and acc.view_counts().tolist() == [2, 2]
  sums = metrics_lib.video_metric_sums(acc.mean_probs(), acc.labels(), 3)
  m = metrics_lib.metrics_from_sums(sums)
  # video 4 -> class 0 (correct); video 7: p = (0.5, 0.5, 0) and (0.05, 0.05, 0.9) -> class 2
  assert m['top1'] == 0.5 and m['top5'] == 1.0 and m['mean_class_accuracy'] == 0.5


@pytest.fixture(scope='module')
def tiny_model():
  cfg = h.get_config('video')  # width-4 C2D-ResNet-50, 4 x 32 x 32 inputs, 4 classes
  cfg.model.num_classes = 3
  model = build_model(cfg.model)
  mesh = mesh_lib.make_mesh()
  state = state_lib.create_train_state(model, optax.identity(), 0,
                                       state_lib.init_input_shape(cfg.model), mesh)
  return cfg, model, state.variables(), mesh


@pytest.mark.parametrize('protocol', ['30view', '250view'])
def test_view_averaged_prediction_equals_hand_computation(coded_root, tiny_model, protocol):
  cfg, model, variables, mesh = tiny_model
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.data = _data_cfg(coded_root, crop_size=24 if protocol == '250view' else 32)
  cfg.eval_batch_size = 14  # views of a video straddle batches; the last batch is padded
  spec = views.PROTOCOL_VIEWS[protocol]
  acc, info = protocols.predict_views(cfg, model, variables, mesh, spec, label=protocol)

  apply = jax.jit(lambda x: model.apply(variables, x, train=False))
  paths = sorted(os.path.join(coded_root, 'val', f) for f in os.listdir(
      os.path.join(coded_root, 'val')))
  lengths, labels = [34, 28, 40, 5], np.array([0, 1, 2, 0])
  crop, short = int(cfg.data[spec.crop]), int(cfg.data.eval_short_side)
  hand = []
  for path, n in zip(paths, lengths):
    probs = []
    for k in range(spec.num_clips):
      # Clip k of K starts at round_half_up(k (n - window) / (K - 1)); window (4 - 1) 3 + 1 = 10.
      start = int(np.floor(k * max(n - 10, 0) / (spec.num_clips - 1) + 0.5))
      frames = D.decode_clip(path, 4, 3, start, short_side=short)
      hh, ww = frames.shape[1:3]
      cy, cx = (hh - crop) // 2, (ww - crop) // 2
      if spec.num_crops == 3:
        boxes = ([(cy, 0), (cy, cx), (cy, ww - crop)] if ww >= hh else
                 [(0, cx), (cy, cx), (hh - crop, cx)])
        boxes = [(y, x, False) for y, x in boxes]
      else:
        corners = [(0, 0), (0, ww - crop), (hh - crop, 0), (hh - crop, ww - crop), (cy, cx)]
        boxes = [(y, x, False) for y, x in corners] + [(y, x, True) for y, x in corners]
      clips = []
      for y, x, flip in boxes:
        c = frames[:, y:y + crop, x:x + crop]
        clips.append((np.asarray(c[:, :, ::-1] if flip else c, np.float32) / 255.0 - MEAN) / STD)
      logits = np.asarray(apply(np.stack(clips).astype(np.float32)), np.float64)
      e = np.exp(logits - logits.max(1, keepdims=True))
      probs.append(e / e.sum(1, keepdims=True))
    hand.append(np.concatenate(probs).mean(0))
  hand = np.stack(hand)
  assert acc.video_ids().tolist() == [0, 1, 2, 3]
  assert acc.view_counts().tolist() == [spec.num_views] * 4
  np.testing.assert_allclose(acc.mean_probs(), hand, rtol=1e-4, atol=1e-6)
  assert (info['crop_size'], info['short_side']) == (crop, 32)
  if protocol == '30view':  # the metrics of evaluate_views are those of the averaged softmax
    result = protocols.evaluate_views(cfg, model, variables, mesh, protocol=protocol)
    hits = np.argmax(hand, 1) == labels
    assert result['top1'] == pytest.approx(hits.mean())
    assert result['mean_class_accuracy'] == pytest.approx(
        np.mean([hits[labels == c].mean() for c in range(3)]))
    assert result['top5'] == 1.0  # 3 classes
    assert result['num_examples'] == 4 and result['num_views'] == 4 * spec.num_views
    assert (result['crop_size'], result['short_side']) == (crop, 32)


def test_protocol_errors(tiny_model, coded_root):
  cfg, model, variables, mesh = tiny_model
  with pytest.raises(config_checks.ConfigError, match='needs a video data set'):
    protocols.evaluate_views(cfg, model, variables, mesh, protocol='30view')  # synthetic data
  with pytest.raises(config_checks.ConfigError, match='imagenet2012 or imagenet_folder'):
    protocols.evaluate_imagenet(cfg, model, variables, mesh)
  with pytest.raises(config_checks.ConfigError,
                     match="allowed: \\['250view', '30view', 'charades', 'clip'"):
    evaluate_lib.evaluate_checkpoint(cfg, '/nonexistent', protocol='10view')
