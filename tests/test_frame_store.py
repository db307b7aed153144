"""Frame stores (``prepare_videos --format=frames``, bat_jax.data.frame_store): written, resumed,
broken inputs reported, and read by the Kinetics pipeline with the video path's clips."""

import csv
import fractions
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from bat_jax.data import core, frame_store, kinetics, multiview, pipeline, prepare_videos
from bat_jax.data import decode as D
from bat_jax.data import video as V

H, W, T_VIDEO = 64, 80, 40  # the index-coded test videos (short side 64)
JPEG_BOUND = 3.0  # mean |store - video| on 0-255 at quality 95 (the brief's bound)
# Transformed clips (whatever dtype / scale the shared transforms emit): mean |store - video| as a
# fraction of the clip's mean absolute deviation. The JPEG error gives ~0.03 here; a different
# crop, flip or frame gives ~1.
RELATIVE_BOUND = 0.1


def _relative_error(a: np.ndarray, b: np.ndarray) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).mean() / np.abs(a - a.mean()).mean())


def _coded_frames(n: int, seed: int) -> np.ndarray:
  """Smooth moving content with camera-like colour (a luma wave plus weaker chroma waves);
  rows 0-15 of frame t are the flat grey ``6 t`` (reads back t)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
  phase = rng.uniform(0, 2 * np.pi, 3)
  out = np.empty((n, H, W, 3), np.uint8)
  for t in range(n):
    luma = 128 + 70 * np.sin(xx / 9 + yy / 13 + 0.3 * t)
    for c in range(3):
      out[t, ..., c] = np.clip(luma + 30 * np.sin(xx / 17 - yy / 11 + 0.2 * t + phase[c]), 0, 255)
    out[t, :16] = 6 * t
  return out


def _frame_ids(clip: np.ndarray) -> np.ndarray:
  """The frame index each frame of a clip (at the store's size) carries in its top band."""
  return np.rint(clip[:, 4:12, 8:-8].astype(np.float64).mean(axis=(1, 2, 3)) / 6).astype(int)


@pytest.fixture(scope='module')
def trees(tmp_path_factory):
  """(source tree, store, prepare report): index-coded videos of two classes (3 train + 2 val
  each; ``<class>NNN.mp4`` under ``<split>/<class>/``, annotated in ``train.csv`` / ``val.csv``)
  and a broken input annotated in train.csv; the store at short side 64, the videos' own size (no
  resize)."""
  src = str(tmp_path_factory.mktemp('fs_src'))
  rows = []
  for split, per_class in (('train', 3), ('val', 2)):
    for c, cls in enumerate(('left', 'right')):
      os.makedirs(os.path.join(src, split, cls))
      for k in range(per_class):
        vid = f'{cls}{k + 10 * (split == "val"):03d}'
        D.write_video(os.path.join(src, split, cls, vid + '.mp4'),
                      _coded_frames(T_VIDEO, 100 * c + k + 10 * (split == 'val')), fps=10,
                      gop_size=12)
        rows.append([cls, vid, 0, 4, split])
  with open(os.path.join(src, 'train', 'left', 'broken01.mp4'), 'w') as f:
    f.write('not a video')
  rows.append(['left', 'broken01', 0, 2, 'train'])
  for split in ('train', 'val'):
    with open(os.path.join(src, f'{split}.csv'), 'w', newline='') as f:
      w = csv.writer(f)
      w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split'])
      w.writerows(r for r in rows if r[-1] == split)
  dst = str(tmp_path_factory.mktemp('fs_dst') / 'store')
  report = prepare_videos.prepare(src, dst, 64, workers=1, progress=None, fmt='frames')
  return src, dst, report


CODED0, CODED1 = 'train/left/left000.mp4', 'val/right/right010.mp4'
BROKEN = 'train/left/broken01.mp4'


def _shard(dst, rel):
  return prepare_videos.output_path(dst, rel, 'frames')


def test_prepare_writes_store_index_and_annotations(trees, capsys):
  src, dst, report = trees
  n = len(prepare_videos.find_videos(src))
  assert report['format'] == 'frames' and report['jpeg_quality'] == prepare_videos.JPEG_QUALITY
  assert report['converted'] == n - 1 and report['skipped'] == 0
  assert [b['path'] for b in report['broken']] == [BROKEN]
  assert not [f for _, _, fs in os.walk(dst) for f in fs if f.endswith('.partial')]
  index = {r['video']: r for r in frame_store.read_index(dst)}
  assert len(index) == n - 1 and BROKEN not in index
  row = index[CODED0]
  assert row == {'video': CODED0, 'split': 'train', 'label': 'left',
                 'shard': 'train/left/left000.array_record', 'first_record': 0,
                 'frames': T_VIDEO, 'fps': 10.0, 'height': 64, 'width': 80}
  assert report['frames'] == sum(r['frames'] for r in index.values())
  head = frame_store.read_header(os.path.join(dst, row['shard']))
  assert (head['frames'], head['height'], head['width']) == (T_VIDEO, 64, 80)
  # the Kinetics reader lists the same videos with the same labels from the store's root
  for split in ('train', 'val'):
    a, b = kinetics.load_split(src, split), kinetics.load_split(dst, split)
    assert b.class_names == a.class_names and not b.missing
    assert [l for _, l in b.records] == [l for p, l in a.records if 'broken' not in p]
    assert all(frame_store.is_shard(p) for p, _ in b.records)


def test_prepare_resumes_and_rebuilds_the_index(trees, tmp_path):
  src, store, _ = trees
  dst = str(tmp_path / 'store')
  shutil.copytree(store, dst)
  n = len(prepare_videos.find_videos(src))
  index = frame_store.read_index(dst)
  keep, redo = _shard(dst, CODED0), _shard(dst, CODED1)
  mtime = os.path.getmtime(keep)
  os.remove(redo)
  os.remove(os.path.join(dst, frame_store.INDEX_NAME))  # rows come back from shard headers
  assert prepare_videos.main(['--src', src, '--dst', dst, '--format=frames',
                              '--short-side', '64', '--workers', '1']) == 0
  report = json.load(open(os.path.join(dst, prepare_videos.REPORT_NAME)))
  assert (report['converted'], report['skipped'], len(report['broken'])) == (1, n - 2, 1)
  assert os.path.getmtime(keep) == mtime
  assert frame_store.read_index(dst) == index


def test_store_of_a_tree_without_annotations(tmp_path):
  """class_name/video.mp4 folders, no CSV: the store keeps the folders, the reader lists its
  shards with the folder classes and the index names them."""
  src = tmp_path / 'src'
  for cls in ('jump', 'run'):
    os.makedirs(src / 'train' / cls)
    D.write_video(str(src / 'train' / cls / f'{cls}1.mp4'), _coded_frames(6, 0), fps=10)
  dst = str(tmp_path / 'store')
  prepare_videos.prepare(str(src), dst, 64, progress=None, fmt='frames')
  sp = kinetics.load_split(dst, 'train')
  assert sp.class_names == ['jump', 'run'] and [l for _, l in sp.records] == [0, 1]
  assert all(frame_store.is_shard(p) for p, _ in sp.records)
  assert [(r['label'], r['frames']) for r in frame_store.read_index(dst)] == [('jump', 6),
                                                                              ('run', 6)]


def test_interrupted_or_failed_write_leaves_no_shard(tmp_path):
  path = str(tmp_path / 'x' / 'v.array_record')

  def frames():
    yield b'jpeg0'
    raise KeyboardInterrupt  # killed mid-video

  with pytest.raises(KeyboardInterrupt):
    frame_store.write_shard(path, frames(), {})
  assert os.listdir(tmp_path / 'x') == []
  # a container that opens but has no decodable frame: reported, nothing written
  good, cut = str(tmp_path / 'good.mp4'), str(tmp_path / 'cut.mp4')
  D.write_video(good, np.zeros((10, 32, 32, 3), np.uint8), faststart=True)
  data = open(good, 'rb').read()
  with open(cut, 'wb') as f:
    f.write(data[:data.find(b'mdat') + 8])
  with pytest.raises(D.VideoDecodeError, match='no decodable frames'):
    prepare_videos.extract_frames(cut, path, 32)
  assert os.listdir(tmp_path / 'x') == []


@pytest.mark.parametrize('seed', range(4))
def test_store_clip_matches_the_video_clip(trees, seed):
  src, dst, _ = trees
  video, shard = os.path.join(src, CODED0), _shard(dst, CODED0)
  a = D.decode_clip(video, 8, 4, None, np.random.default_rng(seed), short_side=64)
  b = D.decode_clip(shard, 8, 4, None, np.random.default_rng(seed), short_side=64)
  start = D.pick_start(float(np.random.default_rng(seed).random()), T_VIDEO - 29, True)
  want = D.clip_indices(T_VIDEO, 8, 4, start)
  np.testing.assert_array_equal(_frame_ids(a), want)
  np.testing.assert_array_equal(_frame_ids(b), want)
  assert a.shape == b.shape == (8, 64, 80, 3)
  assert np.abs(a.astype(np.float64) - b).mean() < JPEG_BOUND
  # the full training transform, same draws: same crop and flip, within the JPEG error
  opts = dict(num_frames=8, stride=4, crop_size=48, short_side_range=(64, 64))
  x = V.train_transform(video, np.random.default_rng(seed), **opts)
  y = V.train_transform(shard, np.random.default_rng(seed), **opts)
  assert x.dtype == y.dtype and _relative_error(x, y) < RELATIVE_BOUND
  # TSN segments: the same frames
  s = D.decode_segments(shard, 5, np.random.default_rng(seed), train=True, short_side=64)
  offsets = D.segment_offsets(5, np.random.default_rng(seed))
  np.testing.assert_array_equal(_frame_ids(s), D.segment_indices(T_VIDEO, 5, offsets))


def test_store_eval_clips_match_video_and_per_view(trees):
  src, dst, _ = trees
  video, shard = os.path.join(src, CODED1), _shard(dst, CODED1)
  kw = dict(num_frames=4, stride=3, num_clips=5, short_side=64)
  a, b = multiview.decode_eval_clips(video, **kw), multiview.decode_eval_clips(shard, **kw)
  assert a.shape == b.shape == (5, 4, 64, 80, 3)
  for k, want in enumerate(multiview.eval_clip_indices(T_VIDEO, num_frames=4, stride=3,
                                                       num_clips=5)):
    np.testing.assert_array_equal(_frame_ids(b[k]), want)
    np.testing.assert_array_equal(_frame_ids(a[k]), want)
    # one read of the union = the per-view read of the store, exactly
    np.testing.assert_array_equal(
        b[k], D.decode_clip(shard, 4, 3, fractions.Fraction(k, 4), short_side=64))
  assert np.abs(a.astype(np.float64) - b).mean() < JPEG_BOUND
  # a resize on read (short side 48) is the frame-folder reader's (PIL bilinear)
  small = multiview.decode_eval_clips(shard, **dict(kw, short_side=48))
  assert small.shape == (5, 4, 48, 60, 3)


def _bilinear_reference(frames: np.ndarray, out_hw, box=None) -> np.ndarray:
  """PIL's bilinear resampling from its definition, float64, per axis: output ``i`` of ``m`` from
  the source span ``[a, a + e)`` of ``n`` inputs (``box`` ``(y, x, height, width)`` in source
  pixels; the whole frame by default) is centred at ``c = a + (i + 1/2) e / m``; with
  ``f = max(e / m, 1)`` (the triangle widened when shrinking: antialiasing) input ``j`` weighs
  ``max(0, 1 - |j + 1/2 - c| / f)``, the weights over ``j`` in ``[0, n)`` normalised to sum 1."""
  out = frames.astype(np.float64)
  spans = ((0, out.shape[1]), (0, out.shape[2])) if box is None else ((box[0], box[2]),
                                                                       (box[1], box[3]))
  for axis, m, (a, e) in zip((1, 2), out_hw, spans):
    n = out.shape[axis]
    f = max(e / m, 1.0)
    c = a + (np.arange(m) + 0.5) * e / m
    w = np.maximum(0.0, 1 - np.abs(np.arange(n)[None, :] + 0.5 - c[:, None]) / f)
    out = np.moveaxis(np.tensordot(w / w.sum(1, keepdims=True), out, axes=([1], [axis])), 0, axis)
  return out


@pytest.fixture(scope='module')
def sources(trees, tmp_path_factory):
  """{'store': a shard of CODED0, 'folder': its frames as a frame folder (JPEG quality 95)}."""
  src, dst, _ = trees
  folder = str(tmp_path_factory.mktemp('fs_folder') / 'left000')
  os.makedirs(folder)
  for i, f in enumerate(D.decode_clip(os.path.join(src, CODED0), T_VIDEO, 1, 0)):
    Image.fromarray(f).save(os.path.join(folder, f'{i + 1:05d}.jpg'), quality=95)
  return {'store': _shard(dst, CODED0), 'folder': folder}


def _recording(monkeypatch):
  """Records every clip's frame indices and crop box (the draws of the transform under test)."""
  log = {'indices': [], 'boxes': []}

  def wrap(module, name, key):
    fn = getattr(module, name)

    def call(*args, **kwargs):
      out = fn(*args, **kwargs)
      log[key].append(out if key == 'boxes' else list(out))
      return out

    monkeypatch.setattr(module, name, call)

  wrap(D, 'clip_indices', 'indices')
  wrap(V, 'random_crop_box', 'boxes')
  wrap(V, 'multiscale_crop_box', 'boxes')
  return log


@pytest.mark.parametrize('kind', ['store', 'folder'])
@pytest.mark.parametrize('jitter,crop', [((72, 100), 64), ((40, 56), 40)])
def test_train_clip_resizes_only_the_crop_box(sources, monkeypatch, kind, jitter, crop):
  """A scale-jittered training clip of a frame store or folder (PIL resizes only the crop's box):
  the frames, crop offsets and flips of the old composition (every frame resized, then
  ``random_crop``, then the flip, from an rng seeded alike), within 2 levels (the filter taps at
  the box's edges) and a mean under 0.5; enlarged (72-100 from 64) and shrunk (40-56)."""
  path, log = sources[kind], _recording(monkeypatch)
  for seed in range(6):
    new_rng, old_rng = np.random.default_rng(seed), np.random.default_rng(seed)
    new = V.train_transform(path, new_rng, num_frames=8, stride=4, crop_size=crop,
                            short_side_range=jitter)
    short = int(old_rng.integers(jitter[0], jitter[1] + 1))
    old = V.random_crop(D.decode_clip(path, 8, 4, None, old_rng, short_side=short), crop,
                        old_rng)
    if old_rng.random() < 0.5:
      old = V.horizontal_flip(old)
    assert new_rng.random() == old_rng.random()  # the same number of draws
    assert log['indices'][-2] == log['indices'][-1] and log['boxes'][-2] == log['boxes'][-1]
    assert new.shape == old.shape == (8, crop, crop, 3) and new.dtype == np.uint8
    diff = np.abs(new.astype(np.int64) - old)
    assert diff.max() <= 2 and diff.mean() < 0.5
  assert len({b for b in log['boxes']}) > 1  # the offsets vary with the seed


@pytest.mark.parametrize('short_side', [48, 90])
def test_multiscale_train_clip_is_one_resize_of_the_box(sources, monkeypatch, short_side):
  """``multiscale_crop`` from a store: the crop (drawn as before, on the frames resized to the
  short side) resized once from the stored pixels to ``crop x crop``: PIL's bilinear filter over
  the box mapped to source pixels, within PIL's two 8-bit roundings."""
  path, log = sources['store'], _recording(monkeypatch)
  stored = D.decode_clip(path, T_VIDEO, 1, 0).astype(np.float64)
  rh, rw = D.short_side_shape(H, W, short_side)
  for seed in range(4):
    rng = np.random.default_rng(seed)
    clip = V.train_transform(path, rng, num_frames=4, stride=5, crop_size=40,
                             short_side_range=(short_side, short_side), flip=False,
                             augment='multiscale_crop')
    b = log['boxes'][-1]
    assert b in [D.CropBox(*c, 40) for c in V.multiscale_crop_candidates(rh, rw, 40)]
    sy, sx = H / rh, W / rw
    want = _bilinear_reference(stored[log['indices'][-1]], (40, 40),
                               (b.y * sy, b.x * sx, b.height * sy, b.width * sx))
    assert clip.shape == (4, 40, 40, 3)
    assert np.abs(clip - want).max() <= 1 + 1e-9


@pytest.mark.parametrize('short_side', [48, 80])
def test_store_resize_is_bilinear_and_close_to_the_video(trees, short_side):
  """A clip read at another short side than the stored one (shrunk: 48, enlarged: 80): PIL's
  bilinear filter on the stored frames, and within the JPEG bound of the video path's clip
  (swscale from the decoded video) at the same size."""
  src, dst, _ = trees
  shard = _shard(dst, CODED0)
  stored = D.decode_clip(shard, 4, 5, 'center')
  got = D.decode_clip(shard, 4, 5, 'center', short_side=short_side)
  out_hw = D.short_side_shape(H, W, short_side)
  assert got.shape == (4,) + out_hw + (3,)
  # PIL rounds after each of its two passes (to 8 bits): at most 1/2 + 1/2 off the exact value
  assert np.abs(got - _bilinear_reference(stored, out_hw)).max() <= 1 + 1e-9
  video = D.decode_clip(os.path.join(src, CODED0), 4, 5, 'center', short_side=short_side)
  assert np.abs(got.astype(np.float64) - video).mean() < JPEG_BOUND


def _config(root, **kw):
  return dict(root=root, num_frames=4, frame_stride=2, crop_size=48, train_short_side=(64, 64),
              eval_short_side=64, num_workers=0, num_threads=1, **kw)


def test_pipeline_reads_store_like_the_videos(trees):
  src, dst, _ = trees
  # training: the store's records (root = the store) against their source videos, same seed
  shards = kinetics.load_split(dst, 'train')
  video_of = {os.path.join(dst, r['shard']): os.path.join(src, r['video'])
              for r in frame_store.read_index(dst)}
  videos = [(video_of[p], l) for p, l in shards.records]
  a = next(pipeline.make_train_iterator(_config(''), 4, seed=5, records=videos))
  b = next(pipeline.make_train_iterator(_config(dst), 4, seed=5))
  assert a['video'].shape == b['video'].shape == (4, 4, 48, 48, 3)
  assert a['video'].dtype == b['video'].dtype
  np.testing.assert_array_equal(a['label'], b['label'])
  assert _relative_error(a['video'], b['video']) < RELATIVE_BOUND
  # 3-crop evaluation: every view, same labels and masks
  ev_a = list(pipeline.make_eval_iterator(_config(src), 6, num_clips=2, num_crops=3))
  ev_b = list(pipeline.make_eval_iterator(_config(dst), 6, num_clips=2, num_crops=3))
  assert len(ev_a) == len(ev_b)
  for x, y in zip(ev_a, ev_b):
    for k in ('label', 'mask', 'video_index'):
      np.testing.assert_array_equal(x[k], y[k])
    assert _relative_error(x['video'], y['video']) < RELATIVE_BOUND


def test_broken_shards_and_records_are_reported(trees, tmp_path):
  _, dst, _ = trees
  good = _shard(dst, CODED0)
  truncated = str(tmp_path / 'cut.array_record')
  data = open(good, 'rb').read()
  with open(truncated, 'wb') as f:
    f.write(data[:len(data) // 2])
  bad_jpeg = str(tmp_path / 'bad.array_record')
  frame_store.write_shard(bad_jpeg, [b'not a jpeg'] * 3, {})
  empty = str(tmp_path / 'empty.array_record')
  frame_store.write_shard(empty, [], {})
  for path, match in ((truncated, 'cannot read frame store shard'),
                      (bad_jpeg, 'cannot decode frame record'),
                      (empty, 'no frames'),
                      (str(tmp_path / 'gone.array_record'), 'does not exist')):
    with pytest.raises(D.VideoDecodeError, match=match):
      D.decode_clip(path, 2, 1, 'center')
  # in the pipeline: substituted in training, masked in evaluation, both in the report
  core.reset_broken_files()
  records = [(truncated, 0), (good, 1)]
  batch = next(pipeline.make_train_iterator(_config(''), 2, seed=0, records=records,
                                            class_names=['a', 'b']))
  np.testing.assert_array_equal(batch['label'], [1, 1])
  ev = next(iter(pipeline.make_eval_iterator(_config(''), 2, records=records)))
  np.testing.assert_array_equal(ev['mask'], [False, True])
  assert [b['path'] for b in core.broken_files()] == [truncated]
  assert 'cannot read frame store shard' in core.broken_files()[0]['reason']


@pytest.mark.parametrize('kwargs, match', [({'fmt': 'png'}, '--format'),
                                           ({'fmt': 'frames', 'jpeg_quality': 0},
                                            '--jpeg-quality')])
def test_bad_arguments_name_the_flag(trees, tmp_path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    prepare_videos.prepare(trees[0], str(tmp_path), progress=None, **kwargs)
