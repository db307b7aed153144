"""Video decoding, transforms, Kinetics parsing and the grain pipeline, on real encoded files."""

import csv
import json
import os
import shutil

import av
import numpy as np
import pytest
from absl import flags
from PIL import Image

from bat_jax.data import kinetics, normalization, pipeline
from bat_jax.data import decode as D
from bat_jax.data import video as V

flags.FLAGS.mark_as_parsed()  # grain multiprocessing outside absl.app.run (grain#1355)

MEAN, STD = np.asarray(normalization.IMAGENET_MEAN), np.asarray(normalization.IMAGENET_STD)


# ----------------------------------------------------------------------------------------
# Helpers: videos whose pixels encode what they are.
# ----------------------------------------------------------------------------------------


def _index_video(path, n, h=32, w=48, gop=5):
  """Frame i is flat grey 16 + 6 i."""
  frames = np.stack([np.full((h, w, 3), 16 + 6 * i, np.uint8) for i in range(n)])
  D.write_video(path, frames, fps=8, gop_size=gop)
  return path


def _ids(clip):
  return np.round((clip.reshape(len(clip), -1).mean(1) - 16) / 6).astype(int)


def _expected_start(n, num_frames, stride, start):
  max_start = max(n - ((num_frames - 1) * stride + 1), 0)
  if isinstance(start, int):
    return min(max(start, 0), max_start)
  f = 0.5 if start == 'center' else start
  return int(np.floor(f * max_start + 0.5))


def _coded_frames(k, t=12, h=32, w=40):
  """Record k: R = 20 + 10 k (identity), G = ramp over x (crop / flip), B = 30 + 12 t (time)."""
  out = np.empty((t, h, w, 3), np.uint8)
  out[..., 0] = 20 + 10 * k
  out[..., 1] = np.linspace(40, 200, w).astype(np.uint8)[None, None, :]
  out[..., 2] = (30 + 12 * np.arange(t)).astype(np.uint8)[:, None, None]
  return out


def _pixels(x):
  """The workers' uint8 pixel values of a batch / clip, as float64."""
  assert np.asarray(x).dtype == np.uint8
  return np.asarray(x, np.float64)


def _record_id(video):
  """Record identity of each clip of a batch (B, T, H, W, 3)."""
  r = _pixels(video)[..., 0].reshape(len(video), -1).mean(1)
  return np.round((r - 20) / 10).astype(int)


def _frame_times(video):
  """Frame index of every frame of one clip (T, H, W, 3)."""
  b = _pixels(video)[..., 2].reshape(len(video), -1).mean(1)
  return np.round((b - 30) / 12).astype(int)


CLASSES = ('class a', 'class b', 'class c')
N_TRAIN, N_VAL = 14, 7


def _write_coded_set(root):
  """Kinetics layout: train/<class with spaces>/<yid>_000000_000001.mp4, flat val/."""
  for split, n, offset in (('train', N_TRAIN, 0), ('val', N_VAL, N_TRAIN)):
    rows = []
    for i in range(n):
      k = offset + i if split == 'train' else i  # val ids 0..6 in their own numbering
      label = CLASSES[i % 3]
      yid = f'{split[:2]}{i:03d}x'
      folder = os.path.join(root, split, label) if split == 'train' else os.path.join(root, split)
      os.makedirs(folder, exist_ok=True)
      D.write_video(os.path.join(folder, f'{yid}_000000_000001.mp4'), _coded_frames(k), fps=8,
                    gop_size=4)
      rows.append((label, yid, 0, 1, split, 0))
    with open(os.path.join(root, f'{split}.csv'), 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split', 'is_cc'])
      w.writerows(rows)


@pytest.fixture(scope='module')
def coded_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('coded'))
  _write_coded_set(root)
  return root


def _cfg(root, **kw):
  cfg = dict(root=root, num_frames=4, frame_stride=2, crop_size=24, train_short_side=(32, 36),
             eval_short_side=32, num_workers=0, num_threads=1, mean=tuple(MEAN), std=tuple(STD))
  cfg.update(kw)
  return cfg


def _take(it, n):
  out = [next(it) for _ in range(n)]
  return out


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


# ----------------------------------------------------------------------------------------
# decode_clip
# ----------------------------------------------------------------------------------------


@pytest.fixture(scope='module')
def vid40(tmp_path_factory):
  return _index_video(str(tmp_path_factory.mktemp('v') / 'v40.mp4'), 40)


@pytest.mark.parametrize('num_frames,stride,start', [
    (8, 3, 0), (8, 3, 'center'), (8, 3, 1.0), (8, 3, 17), (8, 3, 100), (4, 5, 0.5),
    (4, 5, 0.3), (1, 1, 'center'), (5, 1, 35), (10, 4, 'center')])
def test_decode_clip_takes_strided_frames_from_start(vid40, num_frames, stride, start):
  clip = D.decode_clip(vid40, num_frames, stride, start)
  assert clip.shape == (num_frames, 32, 48, 3) and clip.dtype == np.uint8
  s = _expected_start(40, num_frames, stride, start)
  np.testing.assert_array_equal(_ids(clip), s + stride * np.arange(num_frames))


def test_decode_clip_random_start_is_uniform_over_valid_starts(vid40):
  rng = np.random.default_rng(0)
  starts = []
  for _ in range(150):
    ids = _ids(D.decode_clip(vid40, 4, 4, None, rng))
    np.testing.assert_array_equal(np.diff(ids), 4)
    starts.append(ids[0])
  assert set(starts) == set(range(40 - 13 + 1))  # window 13 -> starts 0..27
  again = [_ids(D.decode_clip(vid40, 4, 4, None, np.random.default_rng(0)))[0]]
  assert again[0] == starts[0]  # seeded -> reproducible


def test_short_video_loops_its_frames(tmp_path):
  p = _index_video(str(tmp_path / 'v3.mp4'), 3)
  np.testing.assert_array_equal(_ids(D.decode_clip(p, 8, 1, None, np.random.default_rng(1))),
                                [0, 1, 2, 0, 1, 2, 0, 1])
  np.testing.assert_array_equal(_ids(D.decode_clip(p, 5, 2, 'center')), [0, 2, 1, 0, 2])
  np.testing.assert_array_equal(_ids(D.decode_clip(p, 3, 1, 0.9)), [0, 1, 2])  # exactly fits


def test_seeking_decode_equals_sequential_decode(tmp_path):
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (30, 32, 32, 3), np.uint8)
  frames = np.cumsum(frames // 64, axis=0, dtype=np.uint8) * 8  # some temporal structure
  path = str(tmp_path / 'tex.mp4')
  D.write_video(path, frames, fps=10, gop_size=4)
  with av.open(path) as c:
    all_frames = np.stack([f.to_ndarray(format='rgb24') for f in c.decode(video=0)])
  assert len(all_frames) == 30
  for start, stride in ((0, 1), (5, 2), (9, 3), (13, 2), (21, 1)):
    clip = D.decode_clip(path, 4, stride, start)
    np.testing.assert_array_equal(clip, all_frames[start + stride * np.arange(4)])


def test_decode_short_side_resizes_like_numpy_path(vid40, tmp_path):
  rng = np.random.default_rng(0)
  frames = np.clip(rng.normal(128, 40, (6, 40, 60, 3)), 0, 255).astype(np.uint8)
  frames = np.stack([np.asarray(Image.fromarray(f).resize((60, 40), Image.BILINEAR))
                     for f in np.repeat(frames[:, ::4, ::4], 4, 1).repeat(4, 2)[:, :40, :60]])
  path = str(tmp_path / 'r.mp4')
  D.write_video(path, frames, fps=8)
  small = D.decode_clip(path, 3, 2, 0, short_side=20)
  assert small.shape == (3, 20, 30, 3)
  ref = V.resize_short_side(D.decode_clip(path, 3, 2, 0), 20)
  assert np.abs(small.astype(float) - ref).mean() < 6.0


def test_damaged_tail_uses_the_frames_that_decode(tmp_path):
  """A faststart file cut short: the header promises 40 frames, fewer decode."""
  noise = np.random.default_rng(0).integers(-8, 9, (40, 32, 48, 3))  # every packet has data
  frames = (np.arange(40)[:, None, None, None] * 6 + 16 + noise).astype(np.uint8)
  full = str(tmp_path / 'fs.mp4')
  D.write_video(full, frames, fps=8, gop_size=5, faststart=True)
  data = open(full, 'rb').read()
  cut = str(tmp_path / 'cut.mp4')
  open(cut, 'wb').write(data[:int(len(data) * 0.5)])
  with av.open(cut) as c:  # reference: decode packet by packet up to the damage, then drain
    stream = c.streams.video[0]
    assert stream.frames == 40
    n_ok = 0
    for packet in c.demux(stream):
      try:
        n_ok += len(stream.codec_context.decode(packet))
      except av.FFmpegError:
        break
    n_ok += len(stream.codec_context.decode(None))
  assert 5 < n_ok < 40
  for start in (1.0, 'center', 0):
    ids = _ids(D.decode_clip(cut, 4, 2, start))
    s = _expected_start(n_ok, 4, 2, start)
    np.testing.assert_array_equal(ids, s + 2 * np.arange(4))
  header_only = str(tmp_path / 'header.mp4')
  open(header_only, 'wb').write(data[:data.index(b'mdat') + 4])
  with pytest.raises(D.VideoDecodeError):
    D.decode_clip(header_only, 4, 2, 'center')


def _aac_only(path):
  with av.open(path, 'w', format='mp4') as c:
    s = c.add_stream('aac', rate=16000)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format='fltp',
                                       layout='mono')
    frame.sample_rate = 16000
    for _ in range(4):
      c.mux(s.encode(frame))
    c.mux(s.encode())


@pytest.mark.parametrize('kind', ['missing', 'zero', 'truncated', 'text', 'directory',
                                  'audio_only'])
def test_broken_files_raise_video_decode_error(vid40, tmp_path, kind):
  path = str(tmp_path / f'{kind}.mp4')
  if kind == 'zero':
    open(path, 'wb').close()
  elif kind == 'truncated':
    data = open(vid40, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])
  elif kind == 'text':
    open(path, 'w').write('this is not a video\n' * 50)
  elif kind == 'directory':
    os.mkdir(path)
  elif kind == 'audio_only':
    _aac_only(path)
  with pytest.raises(D.VideoDecodeError) as e:
    D.decode_clip(path, 4, 2, 'center')
  assert e.value.path == path and e.value.reason and path in str(e.value)


# ----------------------------------------------------------------------------------------
# Transforms
# ----------------------------------------------------------------------------------------


def _coord_frames(t=3, h=20, w=30):
  """Pixel (t, y, x) holds (y, x, t)."""
  f = np.zeros((t, h, w, 3), np.uint8)
  f[..., 0] = np.arange(h)[None, :, None]
  f[..., 1] = np.arange(w)[None, None, :]
  f[..., 2] = np.arange(t)[:, None, None]
  return f


def test_resize_short_side_keeps_aspect_and_matches_pil():
  rng = np.random.default_rng(0)
  land = rng.integers(0, 256, (2, 30, 50, 3), np.uint8)
  out = V.resize_short_side(land, 20)
  assert out.shape == (2, 20, 33, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out[1], np.asarray(Image.fromarray(land[1]).resize((33, 20),
                                                                                 Image.BILINEAR)))
  assert V.resize_short_side(land.transpose(0, 2, 1, 3), 20).shape == (2, 33, 20, 3)
  assert V.resize_short_side(land, 30) is land
  flat = np.full((1, 24, 36, 3), 77, np.uint8)
  assert np.all(V.resize_short_side(flat, 50) == 77)


def test_random_crop_is_shared_by_frames_and_covers_offsets():
  f = _coord_frames()
  offsets = set()
  for seed in range(200):
    c = V.random_crop(f, 8, np.random.default_rng(seed))
    assert c.shape == (3, 8, 8, 3)
    y0, x0 = int(c[0, 0, 0, 0]), int(c[0, 0, 0, 1])
    np.testing.assert_array_equal(c[..., 0], np.broadcast_to(y0 + np.arange(8)[:, None], (3, 8, 8)))
    np.testing.assert_array_equal(c[..., 1], np.broadcast_to(x0 + np.arange(8)[None], (3, 8, 8)))
    offsets.add((y0, x0))
  assert {y for y, _ in offsets} == set(range(13)) and {x for _, x in offsets} == set(range(23))
  with pytest.raises(ValueError):
    V.random_crop(f, 21, np.random.default_rng(0))


def test_center_spatial_crops_and_flip():
  f = _coord_frames()
  c = V.center_crop(f, 8)
  assert (c[0, 0, 0, 0], c[0, 0, 0, 1]) == (6, 11)
  xs = [int(V.spatial_crop(f, 20, i, 3)[0, 0, 0, 1]) for i in range(3)]
  assert xs == [0, 5, 10]
  portrait = f.transpose(0, 2, 1, 3)  # 30 x 20, rows hold the old x (channel 1)
  ys = [int(V.spatial_crop(portrait, 20, i, 3)[0, 0, 0, 1]) for i in range(3)]
  assert ys == [0, 5, 10]
  np.testing.assert_array_equal(V.spatial_crop(f, 8, 0, 1), c)
  flipped = V.horizontal_flip(f)
  np.testing.assert_array_equal(flipped[..., 1], f[..., 1][:, :, ::-1])


def _tsn_multiscale_reference(image_h, image_w, input_size, scales, max_distort):
  """Written from TSN's ``GroupMultiScaleCrop`` (``_sample_crop_size``, ``fill_fix_offset`` with
  ``more_fix_crop``): returns (pairs, offsets of each pair) in TSN's own (w, h) / (x, y) terms."""
  base_size = min(image_w, image_h)
  crop_sizes = [int(base_size * x) for x in scales]
  crop_h = [input_size if abs(x - input_size) < 3 else x for x in crop_sizes]
  crop_w = [input_size if abs(x - input_size) < 3 else x for x in crop_sizes]
  pairs = [(w, h) for i, h in enumerate(crop_h) for j, w in enumerate(crop_w)
           if abs(i - j) <= max_distort]
  offsets = []
  for w, h in pairs:
    w_step, h_step = (image_w - w) // 4, (image_h - h) // 4
    named = {'upper left': (0, 0), 'upper right': (4 * w_step, 0), 'lower left': (0, 4 * h_step),
             'lower right': (4 * w_step, 4 * h_step), 'center': (2 * w_step, 2 * h_step),
             'center left': (0, 2 * h_step), 'center right': (4 * w_step, 2 * h_step),
             'lower center': (2 * w_step, 4 * h_step), 'upper center': (2 * w_step, 0),
             'upper left quarter': (w_step, h_step), 'upper right quarter': (3 * w_step, h_step),
             'lower left quarter': (w_step, 3 * h_step),
             'lower right quarter': (3 * w_step, 3 * h_step)}
    offsets.append(list(named.values()))
  return pairs, offsets


@pytest.mark.parametrize('h,w,crop,scales,distort', [
    (256, 340, 224, (1, .875, .75, .66), 1),  # Kinetics at short side 256
    (226, 300, 224, (1, .875, .75, .66), 1),  # 226 snaps to 224 (within 3 pixels)
    (320, 256, 224, (1, .875, .75, .66), 2),  # portrait, wider distortion
    (64, 64, 64, (1, .875, .75, .66), 1),  # square: steps 0 on one axis for square crops
])
def test_multiscale_crop_candidates_match_tsn(h, w, crop, scales, distort):
  got = V.multiscale_crop_candidates(h, w, crop, scales, distort)
  pairs, offsets = _tsn_multiscale_reference(h, w, crop, scales, distort)
  want = [(y, x, ph, pw) for (pw, ph), offs in zip(pairs, offsets) for x, y in offs]
  assert got == want
  assert len(got) == 13 * len(pairs)
  n = len(scales)
  assert len(pairs) == sum(abs(i - j) <= distort for i in range(n) for j in range(n))
  for y, x, ch, cw in got:
    assert 0 <= y and y + ch <= h and 0 <= x and x + cw <= w


def test_multiscale_crop_same_crop_for_every_frame_resized_bilinear():
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (3, 40, 56, 3), np.uint8)
  frames[1] = frames[0]  # two equal frames must stay equal
  candidates = V.multiscale_crop_candidates(40, 56, 32)
  seen = set()
  for seed in range(40):
    pick = candidates[int(np.random.default_rng(seed).integers(len(candidates)))]
    out = V.multiscale_crop(frames, 32, np.random.default_rng(seed))
    assert out.shape == (3, 32, 32, 3) and out.dtype == np.uint8
    y, x, ch, cw = pick
    for t in range(3):
      want = np.asarray(Image.fromarray(frames[t, y:y + ch, x:x + cw]).resize((32, 32),
                                                                            Image.BILINEAR))
      np.testing.assert_array_equal(out[t], want)
    np.testing.assert_array_equal(out[0], out[1])
    seen.add(pick)
  assert len(seen) > 20  # many different crops are drawn


def test_train_augment_field_is_checked():
  with pytest.raises(ValueError, match='config.data.train_augment=.random_resized.'):
    V.check_train_augment('random_resized', (256, 256))
  with pytest.raises(ValueError, match=r'config.data.train_short_side=\(256, 320\)'):
    V.check_train_augment('multiscale_crop', (256, 320))
  V.check_train_augment('multiscale_crop', (256, 256))
  V.check_train_augment('scale_jitter', (256, 320))
  with pytest.raises(ValueError, match='config.data.train_short_side'):
    pipeline.make_train_iterator(_cfg('.', train_augment='multiscale_crop'), 2,
                                 records=[('a.mp4', 0)] * 4)


# ----------------------------------------------------------------------------------------
# Kinetics annotations
# ----------------------------------------------------------------------------------------


def _touch(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  open(path, 'wb').close()


def test_kinetics_official_names_layouts_and_missing_report(tmp_path):
  root = str(tmp_path)
  os.makedirs(os.path.join(root, 'annotations'))
  train_rows = [('zumba', 'aaa', 10, 20), ('abseiling', 'bbb', 0, 10),
                ('air drumming', 'ccc', 5, 15), ('zumba', 'ddd', 1, 11)]
  with open(os.path.join(root, 'annotations', 'train.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split'])
    w.writerows([r + ('train',) for r in train_rows])
  _touch(os.path.join(root, 'train', 'zumba', 'aaa_000010_000020.mp4'))
  _touch(os.path.join(root, 'train', 'abseiling', 'bbb_000000_000010.mp4'))
  _touch(os.path.join(root, 'train', 'air_drumming', 'ccc_000005_000015.mp4'))  # underscores
  # ddd is not downloaded
  with open(os.path.join(root, 'annotations', 'validate.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split'])
    w.writerows([('zumba', 'eee', 0, 10, 'val'), ('air drumming', 'fff', 3, 13, 'val')])
  _touch(os.path.join(root, 'val', 'eee_000000_000010.mp4'))  # flat split folder
  _touch(os.path.join(root, 'val', 'fff.mp4'))  # plain youtube id

  tr = kinetics.load_split(root, 'train')
  assert tr.class_names == ['abseiling', 'air drumming', 'zumba']
  assert [(os.path.basename(p), l) for p, l in tr.records] == [
      ('aaa_000010_000020.mp4', 2), ('bbb_000000_000010.mp4', 0), ('ccc_000005_000015.mp4', 1)]
  assert [m['youtube_id'] for m in tr.missing] == ['ddd']
  va = kinetics.load_split(root, 'val')
  assert va.class_names == tr.class_names  # labels from the training classes
  assert [(os.path.basename(p), l) for p, l in va.records] == [
      ('eee_000000_000010.mp4', 2), ('fff.mp4', 1)]


def test_kinetics_plain_folder_layout(tmp_path):
  root = str(tmp_path)
  for split in ('train', 'val'):
    for c, n in (('b_class', 2), ('a_class', 1)):
      for i in range(n):
        _touch(os.path.join(root, split, c, f'{c}{i}.mp4'))
  _touch(os.path.join(root, 'train', 'a_class', 'notes.txt'))
  tr = kinetics.load_split(root, 'train')
  assert tr.class_names == ['a_class', 'b_class'] and tr.annotation is None
  assert [(os.path.basename(p), l) for p, l in tr.records] == [
      ('a_class0.mp4', 0), ('b_class0.mp4', 1), ('b_class1.mp4', 1)]
  assert len(kinetics.load_split(root, 'val').records) == 3


# ----------------------------------------------------------------------------------------
# Pipeline
# ----------------------------------------------------------------------------------------


def test_train_shards_are_disjoint_cover_each_global_batch_and_ignore_process_count():
  n, G, seed = 23, 8, 3
  steps = n // G
  per_p = {}
  for P in (1, 2, 4):
    orders = [pipeline.train_position_order(n, G, p, P, seed, 6 * steps) for p in range(P)]
    step_sets = []
    for s in range(6 * steps):
      parts = [set(o[s]) for o in orders]
      union = set().union(*parts)
      assert sum(len(x) for x in parts) == len(union) == G  # disjoint, full global batch
      step_sets.append(union)
    per_p[P] = step_sets
    single = pipeline.train_position_order(n, G, 0, 1, seed, 6 * steps)
    np.testing.assert_array_equal(np.concatenate(orders, axis=1), single)  # row for row
    for e in range(6):  # no repeats inside an epoch
      epoch = set().union(*step_sets[e * steps:(e + 1) * steps])
      assert len(epoch) == steps * G
    assert set().union(*step_sets) == set(range(n))  # left-overs differ per epoch
  assert per_p[1] == per_p[2] == per_p[4]
  other_seed = pipeline.train_position_order(n, G, 0, 1, seed + 1, steps)
  assert [set(x) for x in other_seed] != per_p[1][:steps]


def test_train_batches_follow_the_shard_order(coded_root):
  cfg = _cfg(coded_root)
  labels = [CLASSES.index(r[0]) for r in csv.reader(open(os.path.join(coded_root, 'train.csv')))
            if r[0] != 'label']
  seen, videos = [], []
  for p in range(2):
    it = pipeline.make_train_iterator(cfg, 4, p, 2, seed=5)
    assert it.steps_per_epoch == N_TRAIN // 4 and it.num_classes == 3
    expected = pipeline.train_position_order(N_TRAIN, 4, p, 2, 5, 4)
    batches = _take(it, 4)  # crosses into epoch 1
    for b, exp in zip(batches, expected):
      assert b['video'].shape == (2, 4, 24, 24, 3) and b['video'].dtype == np.uint8
      assert b['label'].dtype == np.int32 and set(b) == {'video', 'label'}
      np.testing.assert_array_equal(_record_id(b['video']), exp)
      np.testing.assert_array_equal(b['label'], np.asarray(labels)[exp])
      for clip in b['video']:  # a contiguous strided window in time
        np.testing.assert_array_equal(np.diff(_frame_times(clip)), 2)
    seen.append([_record_id(b['video']) for b in batches])
    videos.append([b['video'] for b in batches])
    it.close()
  single = pipeline.make_train_iterator(cfg, 4, 0, 1, seed=5)
  for s, b in enumerate(_take(single, 4)):
    assert not set(seen[0][s]) & set(seen[1][s])
    np.testing.assert_array_equal(np.concatenate([seen[0][s], seen[1][s]]),
                                  _record_id(b['video']))  # the same global batch, row for row
    np.testing.assert_allclose(np.concatenate([videos[0][s], videos[1][s]]), b['video'])
  single.close()


@pytest.mark.parametrize('augment', [
    dict(),  # scale jitter
    dict(train_augment='multiscale_crop', train_short_side=(32, 32))])
def test_train_augmentation_jitters_crops_and_flips(coded_root, augment):
  it = pipeline.make_train_iterator(_cfg(coded_root, **augment), 14, seed=0)
  g = _pixels(np.concatenate([b['video'] for b in _take(it, 3)]))[..., 1]
  it.close()
  slope = np.sign(g[:, 0, :, -1].mean(1) - g[:, 0, :, 0].mean(1))  # G ramp direction
  assert (slope > 0).sum() >= 5 and (slope < 0).sum() >= 5  # both flip states occur
  left = g[:, 0, :, 0].mean(1) * np.where(slope > 0, 1, 0) + g[:, 0, :, -1].mean(1) * (slope < 0)
  assert len(np.unique(np.round(left / 4))) >= 4  # crop offsets / scales vary


def test_iterator_state_restores_exactly(coded_root):
  cfg = _cfg(coded_root)
  it = pipeline.make_train_iterator(cfg, 4, 0, 1, seed=1)
  _take(it, 3)
  state = json.loads(json.dumps(it.get_state()))
  after = _take(it, 2)  # crosses the epoch boundary (3 steps per epoch)
  it.close()
  fresh = pipeline.make_train_iterator(cfg, 4, 0, 1, seed=1)
  fresh.set_state(state)
  _assert_batches_equal(_take(fresh, 2), after)
  fresh.close()
  other = pipeline.make_train_iterator(cfg, 4, 0, 1, seed=2)
  with pytest.raises(ValueError):
    other.set_state(state)
  other.close()


def test_worker_count_does_not_change_batches_and_state_moves_between_them(coded_root):
  inproc = pipeline.make_train_iterator(_cfg(coded_root, num_workers=0), 4, 0, 1, seed=7)
  ref = _take(inproc, 5)
  inproc.close()
  mp = pipeline.make_train_iterator(_cfg(coded_root, num_workers=2), 4, 0, 1, seed=7)
  got = _take(mp, 3)
  state = json.loads(json.dumps(mp.get_state()))
  got += _take(mp, 2)
  mp.close()
  _assert_batches_equal(got, ref)
  mp2 = pipeline.make_train_iterator(_cfg(coded_root, num_workers=2), 4, 0, 1, seed=7)
  mp2.set_state(state)  # grain's own multiprocessing state
  _assert_batches_equal(_take(mp2, 2), ref[3:])
  mp2.close()
  single = pipeline.make_train_iterator(_cfg(coded_root, num_workers=0), 4, 0, 1, seed=7)
  single.set_state(state)  # other worker count: restart at the batch index
  _assert_batches_equal(_take(single, 2), ref[3:])
  single.close()


@pytest.mark.parametrize('P,G', [(1, 4), (2, 4), (3, 6)])
def test_eval_shards_pad_and_mask(coded_root, P, G):
  cfg = _cfg(coded_root)
  seen, counts = [], []
  for p in range(P):
    it = pipeline.make_eval_iterator(cfg, G, p, P)
    batches = list(it)
    counts.append(len(batches))
    assert len(batches) == len(it)
    for b in batches:
      assert b['video'].shape == (G // P, 4, 24, 24, 3) and b['mask'].dtype == np.bool_
      m = b['mask']
      np.testing.assert_array_equal(m, b['video_index'] >= 0)
      if m.any():
        np.testing.assert_array_equal(_record_id(b['video'][m]), b['video_index'][m])
      np.testing.assert_array_equal(b['label'][m], b['video_index'][m] % 3)
      assert np.all(b['video'][~m] == 0)
      for clip in b['video'][m]:  # centre clip: window 7 of 12 frames -> start 3
        np.testing.assert_array_equal(_frame_times(clip), [3, 5, 7, 9])
      seen += list(b['video_index'][m])
  assert len(set(counts)) == 1
  assert sorted(seen) == list(range(N_VAL))


def test_multiview_eval_clips_and_crops(coded_root):
  it = pipeline.make_eval_iterator(_cfg(coded_root), 9, num_clips=3, num_crops=3, crop_size=32)
  batches = list(it)
  assert it.num_views == 9 and len(batches) == N_VAL
  for v, b in enumerate(batches):
    np.testing.assert_array_equal(b['video_index'], v)
    starts = [_frame_times(c)[0] for c in b['video']]
    assert starts == [0, 0, 0, 3, 3, 3, 5, 5, 5]  # 12 frames, window 7: 0, 2.5 -> 3, 5
    g_left = _pixels(b['video'])[:, 0, :, 0, 1].mean(1)
    assert g_left[0] < g_left[1] < g_left[2]  # left, centre, right crops of a 32 x 40 frame


def test_broken_videos_are_substituted_in_training_and_masked_in_eval(coded_root, tmp_path):
  root = str(tmp_path / 'broken')
  shutil.copytree(coded_root, root)
  tr = kinetics.load_split(root, 'train')
  paths = [p for p, _ in tr.records]
  open(paths[2], 'wb').close()  # zero bytes
  data = open(paths[5], 'rb').read()
  open(paths[5], 'wb').write(data[:len(data) // 3])  # truncated
  open(paths[6], 'w').write('not a video')  # text (6 and 5 consecutive)
  broken = {2, 5, 6}
  pipeline.reset_broken_files()
  it = pipeline.make_train_iterator(_cfg(root), 2, 0, 1, seed=4)
  os.remove(paths[9])  # disappears after the records were listed
  broken.add(9)
  planned = pipeline.train_position_order(N_TRAIN, 2, 0, 1, 4, 14)
  times_hit = {r: 0 for r in broken}
  for b, plan in zip(_take(it, 14), planned):  # two epochs
    got = _record_id(b['video'])
    for r, g in zip(plan, got):
      sub = r
      while sub in broken:
        times_hit[sub] += 1
        sub = (sub + 1) % N_TRAIN
      assert g == sub
  it.close()
  report = {os.path.basename(e['path']): e for e in pipeline.broken_files()}
  assert set(report) == {os.path.basename(paths[r]) for r in broken}
  for r in broken:
    e = report[os.path.basename(paths[r])]
    assert e['count'] == times_hit[r] > 0 and e['reason'] and e['split'] == 'train'

  pipeline.reset_broken_files()
  va = kinetics.load_split(root, 'val')
  open(va.records[3][0], 'wb').close()
  ev = pipeline.make_eval_iterator(_cfg(root), 4)
  rows = [(i, m) for b in ev for i, m in zip(b['video_index'], b['mask']) if i >= 0]
  assert sorted(i for i, m in rows if m) == [0, 1, 2, 4, 5, 6] and (3, False) in rows
  assert [e['path'] for e in pipeline.broken_files()] == [va.records[3][0]]
  pipeline.reset_broken_files()
