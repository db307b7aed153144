"""Something-Something V1 frame-folder data set (bat_jax.data.something_something)."""

import os

import numpy as np
import pytest
from PIL import Image

from bat_jax.data import decode, pipeline, something_something as ss

CLASSES = ['Pushing something from right to left', 'Holding something',
           'Pushing something from left to right']  # labels CSV order (not sorted)
T, H, W = 12, 48, 64
STEP = 20  # red channel of frame i = i * STEP; green = left-to-right ramp (flip detector)


def _write_folder(folder, num_frames=T):
  os.makedirs(folder)
  ramp = np.linspace(0, 250, W).astype(np.uint8)
  for i in range(num_frames):
    f = np.zeros((H, W, 3), np.uint8)
    f[..., 0] = i * STEP
    f[..., 1] = ramp[None, :]
    Image.fromarray(f).save(os.path.join(folder, f'{i + 1:05d}.jpg'), quality=95, subsampling=0)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('ssv1'))
  frames = os.path.join(root, ss.FRAMES_DIR)
  train, val = [], []
  for c, name in enumerate(CLASSES):
    for k in range(2):
      vid = str(100 + 10 * c + k)
      _write_folder(os.path.join(frames, vid))
      train.append(f'{vid};{name}')
    val.append(f'{100 + 10 * c};{name}')
  train.append(f'999;{CLASSES[1]}')  # listed, no folder
  val.append(f'998;{CLASSES[0]}')
  with open(os.path.join(root, 'something-something-v1-labels.csv'), 'w') as f:
    f.write('\n'.join(CLASSES) + '\n')
  for split, lines in (('train', train), ('validation', val)):
    with open(os.path.join(root, f'something-something-v1-{split}.csv'), 'w') as f:
      f.write('\n'.join(lines) + '\n')
  return root


def _config(root, **kw):
  cfg = dict(root=root, num_frames=4, frame_stride=1, crop_size=32, train_short_side=(48, 48),
             eval_short_side=48, num_workers=0, num_threads=1, sampling='segments',
             no_flip_keywords=('left', 'right'), mean=(0., 0., 0.), std=(1., 1., 1.))
  cfg.update(kw)
  return cfg


def _frame_index(clips):
  """(..., T, h, w, 3) uint8 clips -> frame index per frame from the red channel."""
  assert np.asarray(clips).dtype == np.uint8
  return np.rint(clips[..., 0].mean(axis=(-2, -1)) / STEP).astype(int)


def _flipped(clips):
  g = clips[..., 1].mean(axis=(-3, -2))  # (..., w): mean green per column
  return g[..., 0] > g[..., -1]


def test_load_split_labels_from_csv_order(root):
  sp = ss.load_split(root, 'train')
  assert sp.class_names == CLASSES
  labels = {os.path.basename(p): l for p, l in sp.records}
  assert labels == {'100': 0, '101': 0, '110': 1, '111': 1, '120': 2, '121': 2, '999': 1}
  assert all(os.path.dirname(p) == os.path.join(root, ss.FRAMES_DIR) for p, _ in sp.records)
  assert [l for _, l in ss.load_split(root, 'val').records] == [0, 1, 2, 0]


def test_frame_folder_segment_and_dense_indices(root):
  folder = os.path.join(root, ss.FRAMES_DIR, '100')
  clip = decode.decode_segments(folder, 4, train=False)
  assert clip.shape == (4, H, W, 3)
  assert _frame_index(clip).tolist() == [1, 4, 7, 10]  # segment centres of 12 frames
  expected = decode.segment_indices(T, 4, decode.segment_offsets(4, np.random.default_rng(3)))
  clip = decode.decode_segments(folder, 4, np.random.default_rng(3), train=True, short_side=24)
  assert clip.shape == (4, 24, 32, 3)
  assert _frame_index(clip).tolist() == expected.tolist()
  clip = decode.decode_clip(folder, 4, 2, 'center')
  assert _frame_index(clip).tolist() == [3, 5, 7, 9]  # window 7, start ceil(5 / 2)
  for bad in (os.path.join(root, 'nope'), os.path.join(root, 'empty')):
    os.makedirs(os.path.join(root, 'empty'), exist_ok=True)
    with pytest.raises(decode.VideoDecodeError):
      decode.decode_segments(bad, 4, train=False)
    with pytest.raises(decode.VideoDecodeError):
      decode.decode_clip(bad, 4, 1)


def test_train_iterator_no_flip_and_missing_folder(root):
  pipeline.reset_broken_files()
  it = ss.make_train_iterator(_config(root), 7, seed=0)
  assert it.class_names == CLASSES and it.num_classes == 3 and it.steps_per_epoch == 1
  assert it.no_flip_labels == (0, 2)
  flips = {0: [], 1: [], 2: []}
  for _ in range(3):
    batch = next(it)
    assert batch['video'].shape == (7, 4, 32, 32, 3)
    idx = _frame_index(batch['video'])
    for i in range(4):  # one frame per segment of 3 frames
      assert np.all((idx[:, i] >= 3 * i) & (idx[:, i] < 3 * i + 3)), idx
    for label, f in zip(batch['label'], _flipped(batch['video'])):
      flips[int(label)].append(bool(f))
  assert not any(flips[0]) and not any(flips[2])
  assert any(flips[1]) and not all(flips[1])
  broken = pipeline.broken_files()
  assert [b['path'] for b in broken] == [os.path.join(root, ss.FRAMES_DIR, '999')]
  assert ss.broken_files() == broken
  it.close()


def test_eval_iterator_masks_missing_folder(root):
  pipeline.reset_broken_files()
  it = ss.make_eval_iterator(_config(root), 2)
  assert it.class_names == CLASSES and len(it) == 2
  batches = list(it)
  mask = np.concatenate([b['mask'] for b in batches])
  labels = np.concatenate([b['label'] for b in batches])
  videos = np.concatenate([b['video'] for b in batches])
  assert mask.tolist() == [True, True, True, False] and labels.tolist() == [0, 1, 2, 0]
  assert np.all(_frame_index(videos[mask]) == [1, 4, 7, 10])
  assert [b['path'] for b in pipeline.broken_files()] == [
      os.path.join(root, ss.FRAMES_DIR, '998')]
  it.close()
