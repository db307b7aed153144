"""The synthetic Kinetics-layout video set: determinism, layout, classes by construction."""

import csv
import filecmp
import os

import numpy as np
import pytest

from bat_jax.data import kinetics, toy_video
from bat_jax.data.decode import decode_clip

FRAMES, FPS, SIZE = 24, 8, 64


def _gen(out, seed=0, n_train=2, n_val=1, workers=1):
  return toy_video.generate(str(out), num_per_class=n_train, num_val_per_class=n_val, seed=seed,
                            size=SIZE, frames=FRAMES, fps=FPS, workers=workers, progress=None)


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
  out = tmp_path_factory.mktemp('toy')
  _gen(out)
  return str(out)


def _all_files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, fs in os.walk(root) for f in fs)


def test_same_seed_gives_identical_files_and_other_seed_differs(toy, tmp_path):
  again = tmp_path / 'again'
  _gen(again, workers=2)  # other worker count: clips are seeded individually
  files = _all_files(toy)
  assert files == _all_files(str(again))
  assert len(files) == len(toy_video.CLASS_NAMES) * 3 + 2
  match, mismatch, errors = filecmp.cmpfiles(toy, str(again), files, shallow=False)
  assert not mismatch and not errors and len(match) == len(files)

  other = tmp_path / 'other'
  _gen(other, seed=1, n_train=1, n_val=0)
  a = os.path.join(toy, 'train', 'red_up', toy_video.video_id('train', 'red_up', 0) + '.mp4')
  b = os.path.join(str(other), 'train', 'red_up', toy_video.video_id('train', 'red_up', 0) + '.mp4')
  assert not filecmp.cmp(a, b, shallow=False)


def test_kinetics_csv_layout_resolves(toy):
  for split, n in (('train', 2), ('val', 1)):
    with open(os.path.join(toy, f'{split}.csv'), newline='') as f:
      rows = list(csv.reader(f))
    assert rows[0] == ['label', 'youtube_id', 'time_start', 'time_end', 'split']
    assert len(rows) - 1 == n * len(toy_video.CLASS_NAMES)
    for label, yid, t0, t1, sp in rows[1:]:
      assert sp == split and t0 == '0' and int(t1) == FRAMES // FPS
      assert os.path.isfile(os.path.join(toy, split, label, yid + '.mp4'))
    s = kinetics.load_split(toy, split)
    assert s.class_names == sorted(toy_video.CLASS_NAMES) and not s.missing
    assert len(s.records) == n * len(toy_video.CLASS_NAMES)
    for path, label in s.records:  # label index <-> folder name
      assert os.path.basename(os.path.dirname(path)) == s.class_names[label]


def _target_stats(clip, colour):
  """Per-frame (centroid y, area) of the pixels of the target colour."""
  c = clip.astype(np.int32)
  r, g, b = c[..., 0], c[..., 1], c[..., 2]
  if colour == 'red':
    mask = (r - np.maximum(g, b)) > 90
  else:
    mask = (b - np.maximum(r, g)) > 90
  area = mask.sum(axis=(1, 2))
  ys = np.arange(clip.shape[1])[None, :, None]
  cy = (mask * ys).sum(axis=(1, 2)) / np.maximum(area, 1)
  return cy, area


def test_classes_are_defined_by_colour_and_temporal_motion(toy):
  t = np.arange(FRAMES)
  for path, label in kinetics.load_split(toy, 'train').records:
    name = toy_video.CLASS_NAMES[label]
    colour, motion = name.split('_')
    other = 'blue' if colour == 'red' else 'red'
    clip = decode_clip(path, FRAMES, 1, 0)
    cy, area = _target_stats(clip, colour)
    _, other_area = _target_stats(clip, other)
    assert area.min() >= 4, (name, area)  # the target is visible in every frame
    assert other_area.max() < 3, (name, other_area)  # and no object of the other colour
    slope_y = np.polyfit(t, cy, 1)[0]
    slope_a = np.polyfit(t, area, 1)[0] / area.mean()
    if motion in ('up', 'down'):
      assert (slope_y < -0.5) if motion == 'up' else (slope_y > 0.5), (name, slope_y)
      assert abs(slope_a) < 0.01, (name, slope_a)
    else:
      assert (slope_a > 0.03) if motion == 'grow' else (slope_a < -0.03), (name, slope_a)
      assert abs(slope_y) < 0.3, (name, slope_y)
    # Played backwards, the clip shows the paired class's motion.
    cy_rev, area_rev = _target_stats(clip[::-1], colour)
    if motion in ('up', 'down'):
      assert np.sign(np.polyfit(t, cy_rev, 1)[0]) == -np.sign(slope_y)
    else:
      assert np.sign(np.polyfit(t, area_rev, 1)[0]) == -np.sign(slope_a)


def test_render_track_matches_decoded_video():
  rng = np.random.default_rng(toy_video.clip_seed(3, 'train', 'blue_down', 5))
  video, track = toy_video.render_clip('blue_down', rng, SIZE, FRAMES)
  assert video.shape == (FRAMES, SIZE, SIZE, 3) and video.dtype == np.uint8
  cy, area = _target_stats(video, 'blue')
  np.testing.assert_allclose(cy, track[:, 0], atol=1.0)
  np.testing.assert_allclose(area, np.pi * track[:, 2] ** 2, rtol=0.25)
  assert np.all(np.diff(track[:, 0]) > 0)  # 'down': y grows frame by frame


def test_cli_writes_dataset_and_reports_progress(tmp_path, capsys):
  out = tmp_path / 'cli'
  toy_video.main(['--out', str(out), '--num-per-class', '1', '--num-val-per-class', '1',
                  '--frames', '16', '--size', '48', '--workers', '1'])
  printed = capsys.readouterr().out
  assert 'wrote 8 train + 8 val clips' in printed
  s = kinetics.load_split(str(out), 'val')
  assert len(s.records) == 8
  clip = decode_clip(s.records[0][0], 16, 1, 0)
  assert clip.shape == (16, 48, 48, 3)
  with pytest.raises(ValueError):
    toy_video.generate(str(tmp_path / 'odd'), size=63, progress=None)
