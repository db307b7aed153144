"""Charades v1 data source (bat_jax.data.charades) on a tiny official layout."""

import csv
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from bat_jax.data import charades, decode, pipeline, video
from bat_jax.data import mesh as mesh_lib
from bat_jax.data.registry import data_module
from bat_jax.evaluation import protocols
from tests import helpers_train as h

K = 157
H, W = 32, 48
STEP = 10  # red channel of frame i = i * STEP (frame identity)
# id -> (frames, actions, source); 24 fps frame folders 'rgb' or mp4 'mp4' (written at 24 fps).
TRAIN = {'AAA01': (30, 'c005 0.00 0.50;c010 1.00 1.20', 'rgb'),
         'AAA02': (24, '', 'rgb'),
         'AAA03': (20, 'c156 0.10 0.30', 'rgb'),
         'AAA04': (24, 'c001 0.00 5.00', 'rgb'),
         'ZZZ99': (0, 'c002 0.00 1.00', 'rgb')}  # listed, no folder
TEST = {'BBB01': (16, 'c003 0.00 0.40;c004 0.20 0.60', 'mp4'),
        'BBB02': (16, 'c007 0.00 0.60', 'mp4'),
        'BBB03': (16, 'c008 0.00 0.60', 'mp4')}  # its mp4 is truncated garbage
COLUMNS = ['id', 'subject', 'scene', 'quality', 'relevance', 'verified', 'script', 'objects',
           'descriptions', 'actions', 'length']


def _frames(n):
  f = np.zeros((n, H, W, 3), np.uint8)
  f[..., 0] = (np.arange(n) * STEP)[:, None, None]
  f[..., 1] = np.linspace(0, 250, W).astype(np.uint8)[None, None, :]
  return f


def _write_csv(path, rows):
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(COLUMNS)
    for vid, (n, actions, _) in rows.items():
      w.writerow([vid, 'S1', 'Kitchen', 6, 7, 'Yes', 'A person, holding clothes, walks.',
                  'clothes;door', 'A person walks.', actions, n / 24.0])


def _layout(root, mp4_dir='Charades_v1_480'):
  with open(os.path.join(root, 'Charades_v1_classes.txt'), 'w') as f:
    f.write(''.join(f'c{i:03d} Class number {i}\n' for i in range(K)))
  _write_csv(os.path.join(root, 'Charades_v1_train.csv'), TRAIN)
  _write_csv(os.path.join(root, 'Charades_v1_test.csv'), TEST)
  for vid, (n, _, kind) in TRAIN.items():
    if n:
      folder = os.path.join(root, 'Charades_v1_rgb', vid)
      os.makedirs(folder)
      for i, frame in enumerate(_frames(n)):
        Image.fromarray(frame).save(os.path.join(folder, f'{vid}-{i + 1:06d}.jpg'), quality=95,
                                    subsampling=0)
  os.makedirs(os.path.join(root, mp4_dir))
  for vid, (n, _, _) in TEST.items():
    path = os.path.join(root, mp4_dir, f'{vid}.mp4')
    decode.write_video(path, _frames(n), fps=24)
  with open(os.path.join(root, mp4_dir, 'BBB03.mp4'), 'wb') as f:
    f.write(b'\x00\x00\x00\x18ftypmp42' + bytes(200))


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('charades'))
  _layout(root)
  return root


def _config(root, **kw):
  cfg = dict(name='charades', root=root, num_frames=4, frame_stride=2, crop_size=32,
             train_short_side=(32, 32), eval_short_side=32, num_workers=0, num_threads=1,
             videos=os.path.join(root, 'Charades_v1_rgb'))
  cfg.update(kw)
  return cfg


def test_records_and_labels_parsed(root):
  sp = charades.load_split(root, 'train')
  assert sp.ids == list(TRAIN) and sp.num_classes == K
  assert sp.class_names[0] == 'Class number 0'
  assert sp.actions[0] == (charades.Action(5, 0.0, 0.5), charades.Action(10, 1.0, 1.2))
  assert sp.actions[1] == ()
  assert sp.paths[0] == os.path.join(root, 'Charades_v1_rgb', 'AAA01')
  labels = np.stack([l for _, l in sp.records()])
  assert labels.dtype == np.float32 and labels.shape == (5, K)
  assert [np.flatnonzero(l).tolist() for l in labels] == [[5, 10], [], [156], [1], [2]]
  test = charades.load_split(root, 'test')  # default folder: Charades_v1_rgb is tried first
  assert test.paths[0] == os.path.join(root, 'Charades_v1_rgb', 'BBB01')
  mp4 = charades.load_split(root, 'val', videos=os.path.join(root, 'Charades_v1_480'))
  assert mp4.paths[1] == os.path.join(root, 'Charades_v1_480', 'BBB02.mp4')
  with pytest.raises(FileNotFoundError, match='config.data.videos'):
    charades.load_split(root, 'train', videos=os.path.join(root, 'nowhere'))
  with pytest.raises(ValueError, match='allowed'):
    charades.load_split(root, 'validation')


@pytest.mark.parametrize('bad, match', [
    ('c000 Holding\nc002 Other\n', 'c001'),  # a code out of order
    ('c000\n', 'c000 <name>'),  # no name
])
def test_bad_classes_file(tmp_path, bad, match):
  p = tmp_path / 'classes.txt'
  p.write_text(bad)
  with pytest.raises(ValueError, match=match):
    charades.read_classes(str(p))


def test_bad_action_named(tmp_path):
  p = tmp_path / 'a.csv'
  p.write_text('id,actions\nX,c200 0 1\n')
  with pytest.raises(ValueError, match='c200'):
    charades.read_annotations(str(p))
  p.write_text('id,actions\nX,c001 0\n')
  with pytest.raises(ValueError, match='c### start end'):
    charades.read_annotations(str(p))


def test_window_label_overlap_at_24fps():
  acts = (charades.Action(5, 0.0, 0.5), charades.Action(10, 1.0, 1.2),
          charades.Action(3, 0.51, 0.52))  # lies between frames 12 (0.5 s) and 13
  lab = lambda a, b: np.flatnonzero(charades.window_label(acts, a, b, 24.0, K)).tolist()
  assert lab(0, 12) == [5]          # frame 12 = 0.5 s is the action's last frame
  assert lab(13, 23) == []          # 0.54 .. 0.96 s
  assert lab(13, 24) == [10]        # frame 24 = 1.0 s
  assert lab(0, 29) == [5, 10]      # c003 covers no frame at 24 fps


def test_video_length(root):
  assert charades.video_length(os.path.join(root, 'Charades_v1_rgb', 'AAA01')) == (30, 24.0)
  n, fps = charades.video_length(os.path.join(root, 'Charades_v1_480', 'BBB01.mp4'))
  assert (n, fps) == (16, 24.0)


def test_train_batches_are_the_shared_transform_of_the_window(root):
  """Each row equals train_transform at the start WindowLabels drew (same rng stream), and its
  label is the window's actions."""
  cfg = _config(root)
  assert data_module(type('C', (), {'name': 'charades'})) is charades
  it = charades.make_train_iterator(cfg, 2, seed=3)
  sp = charades.load_split(root, 'train', videos=cfg['videos'])
  assert it.steps_per_epoch == 2 and it.num_classes == K
  order = pipeline.train_position_order(len(sp), 2, 0, 1, 3, 2)
  batches = [next(it) for _ in range(2)]
  it.close()
  for s, batch in enumerate(batches):
    assert batch['label'].shape == (2, K) and batch['label'].dtype == np.float32
    for row in range(2):
      rec, pos = int(order[s, row]), s * 2 + row
      if rec == 4:  # the missing folder is replaced by the next record (0)
        rec = 0
      rng = np.random.default_rng([3, 0, pos])
      n = TRAIN[sp.ids[rec]][0]
      start = decode.pick_start(float(rng.random()), n - 7, True)
      want = video.train_transform(sp.paths[rec], rng, num_frames=4, stride=2, crop_size=32,
                                   short_side_range=(32, 32), start=start)
      np.testing.assert_array_equal(batch['video'][row], want)
      np.testing.assert_array_equal(
          batch['label'][row],
          charades.window_label(sp.actions[rec], start, min(start + 7, n) - 1, 24.0, K))


def test_missing_folder_reported_and_skipped(root):
  charades.reset_broken_files()
  it = charades.make_train_iterator(_config(root), 5, seed=0)
  batch = next(it)
  it.close()
  assert batch['video'].shape == (5, 4, 32, 32, 3)
  report = charades.broken_files()
  assert [e['path'] for e in report] == [os.path.join(root, 'Charades_v1_rgb', 'ZZZ99')]
  assert report[0]['split'] == 'train'


def test_eval_mp4_views_broken_masked(root):
  charades.reset_broken_files()
  cfg = _config(root, videos=os.path.join(root, 'Charades_v1_480'))
  it = charades.make_eval_iterator(cfg, 4, num_clips=2, num_crops=3, crop_size=32)
  batches = list(it)
  it.close()
  mask = np.concatenate([b['mask'] for b in batches])
  vids = np.concatenate([b['video_index'] for b in batches])
  labels = np.concatenate([b['label'] for b in batches])
  assert mask.tolist() == [True] * 12 + [False] * 8  # BBB03's 6 views + 2 padding rows
  assert [np.flatnonzero(labels[6 * v]).tolist() for v in range(3)] == [[3, 4], [7], [8]]
  assert [e['path'] for e in charades.broken_files()] == [
      os.path.join(root, 'Charades_v1_480', 'BBB03.mp4')]
  rows = np.concatenate([b['video'] for b in batches])
  path = os.path.join(root, 'Charades_v1_480', 'BBB02.mp4')
  for view in range(6):
    want = video.eval_transform(path, num_frames=4, stride=2, crop_size=32, short_side=32,
                                clip_index=view // 3, num_clips=2, crop_index=view % 3,
                                num_crops=3)
    np.testing.assert_allclose(rows[6 + view], want, atol=1e-6)
  assert vids[:12].tolist() == [0] * 6 + [1] * 6


def test_iterator_state_resumes_exactly(root):
  cfg = _config(root)
  it = charades.make_train_iterator(cfg, 2, seed=1)
  next(it)
  state = it.get_state()
  rest = [next(it) for _ in range(3)]
  it.close()
  it2 = charades.make_train_iterator(cfg, 2, seed=1)
  it2.set_state(state)
  again = [next(it2) for _ in range(3)]
  it2.close()
  for a, b in zip(rest, again):
    np.testing.assert_array_equal(a['video'], b['video'])
    np.testing.assert_array_equal(a['label'], b['label'])


class _TinyVideoModel(nn.Module):
  """A 3-D conv, global mean and a 157-way linear layer: a video classifier that compiles in
  seconds (a ResNet-50 of any width takes minutes to initialise on a busy 2-core machine)."""

  @nn.compact
  def __call__(self, x, train=False):
    x = nn.relu(nn.Conv(4, (3, 3, 3), strides=(1, 2, 2))(x))
    return nn.Dense(K)(jnp.mean(x, axis=(1, 2, 3)))


def test_charades_protocol_max_of_sigmoid_and_map(root):
  """evaluate.py --protocol=charades on the tiny layout with a tiny model: per video the maximum
  over its 30 views of the sigmoid, mAP over the classes with a positive (BBB03 is broken)."""
  cfg = h.get_config('video')
  cfg.model.num_classes = K
  cfg.loss = 'sigmoid_binary_cross_entropy'
  cfg.data = ml_collections.ConfigDict(_config(root, videos=os.path.join(root, 'Charades_v1_480')))
  cfg.eval_batch_size = 16
  model = _TinyVideoModel()
  mesh = mesh_lib.make_mesh()
  variables = model.init(jax.random.key(0), jnp.zeros((1, 4, 32, 32, 3)))
  result = protocols.PROTOCOLS['charades'](cfg, model, variables, mesh)
  apply = jax.jit(lambda x: model.apply(variables, x, train=False))
  scores = []
  for vid in ('BBB01', 'BBB02'):
    path = os.path.join(root, 'Charades_v1_480', f'{vid}.mp4')
    x = np.stack([video.eval_transform(path, num_frames=4, stride=2, crop_size=32, short_side=32,
                                       clip_index=v // 3, num_clips=10, crop_index=v % 3,
                                       num_crops=3) for v in range(30)])
    logits = np.asarray(apply(x), np.float64)
    scores.append((1 / (1 + np.exp(-logits))).max(0))
  # classes 3, 4 (BBB01) and 7 (BBB02): AP 1 when the positive video scores higher, else 1/2
  ap = [1.0 if scores[0][c] >= scores[1][c] else 0.5 for c in (3, 4)]
  ap.append(1.0 if scores[1][7] > scores[0][7] else 0.5)
  assert result['mAP'] == pytest.approx(np.mean(ap), rel=1e-9)
  assert result['num_classes_scored'] == 3 and result['num_examples'] == 2
  assert result['num_videos_skipped'] == 1 and result['num_views'] == 60
