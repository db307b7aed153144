"""bat_jax.data.prepare_videos: re-encoding keeps the layout, resumes, skips broken inputs."""

import csv
import json
import os

import av
import numpy as np
import pytest

from bat_jax.data import kinetics, prepare_videos, toy_video
from bat_jax.data import decode as D


@pytest.fixture(scope='module')
def src(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('pv_src'))
  toy_video.generate(root, num_per_class=1, num_val_per_class=1, seed=1, size=48, frames=20,
                     fps=8, workers=1, progress=None)
  # a broken input, annotated in train.csv, and a non-square one (short side = height 40)
  with open(os.path.join(root, 'train', 'red_up', 'broken01.mp4'), 'w') as f:
    f.write('not a video')
  rng = np.random.default_rng(0)
  D.write_video(os.path.join(root, 'val', 'red_up', 'wide0001.mkv'),
                rng.integers(0, 255, (10, 40, 64, 3), dtype=np.uint8), fps=10)
  with open(os.path.join(root, 'train.csv'), 'a', newline='') as f:
    csv.writer(f).writerow(['red_up', 'broken01', 0, 2, 'train'])
  return root


def _keyframes(path):
  with av.open(path) as c:
    return [i for i, p in enumerate(c.demux(c.streams.video[0])) if p.size and p.is_keyframe]


def test_converts_tree_resumes_and_reports_broken(src, tmp_path, capsys):
  dst = str(tmp_path / 'dst')
  assert prepare_videos.main(['--src', src, '--dst', dst, '--short-side', '32',
                              '--keyframe-interval', '4', '--workers', '2']) == 0
  out = capsys.readouterr().out
  assert 'videos/s, ETA' in out and 'broken: train/red_up/broken01.mp4' in out
  report = json.load(open(os.path.join(dst, prepare_videos.REPORT_NAME)))
  n = len(prepare_videos.find_videos(src))
  assert report['converted'] == n - 1 and report['skipped'] == 0
  assert [b['path'] for b in report['broken']] == ['train/red_up/broken01.mp4']
  # layout and stems kept (.mkv -> .mp4), no temporary file left, reader resolves every video
  rels = prepare_videos.find_videos(dst)
  assert len(rels) == n - 1 and 'val/red_up/wide0001.mp4' in rels
  assert not [f for _, _, fs in os.walk(dst) for f in fs if f.endswith('.partial')]
  for split in ('train', 'val'):
    a, b = kinetics.load_split(src, split), kinetics.load_split(dst, split)
    assert b.class_names == a.class_names and not b.missing
    assert len(b) == len(a) - (split == 'train')  # the broken video's row is dropped
  # H.264 at the short side (even sizes), fixed keyframe interval, no audio, all frames kept
  with av.open(os.path.join(dst, 'val', 'red_up', 'wide0001.mp4')) as c:
    s = c.streams.video[0]
    assert (s.codec_context.name, s.height, s.width) == ('h264', 32, 52)
    assert not c.streams.audio and s.frames == 10
  sq = os.path.join(dst, 'train', 'red_up', 'red_up_train_0000.mp4')
  assert _keyframes(sq) == [0, 4, 8, 12, 16]
  clip = D.decode_clip(sq, 4, 2, 'center')
  assert clip.shape == (4, 32, 32, 3)
  # resume: done files are skipped (not rewritten), a deleted one is redone
  mtime = os.path.getmtime(sq)
  os.remove(os.path.join(dst, 'val', 'red_up', 'wide0001.mp4'))
  report = prepare_videos.prepare(src, dst, 32, 4, workers=1, progress=None)
  assert (report['converted'], report['skipped'], len(report['broken'])) == (1, n - 2, 1)
  assert os.path.getmtime(sq) == mtime


def test_failed_conversion_leaves_no_output(tmp_path):
  # index (moov) first, then the data cut off: the container opens, no frame decodes, so the
  # temporary output was already open when the conversion failed
  good, cut = str(tmp_path / 'good.mp4'), str(tmp_path / 'cut.mp4')
  D.write_video(good, np.zeros((10, 32, 32, 3), np.uint8), faststart=True)
  data = open(good, 'rb').read()
  with open(cut, 'wb') as f:
    f.write(data[:data.find(b'mdat') + 8])
  out = tmp_path / 'out'
  with pytest.raises(D.VideoDecodeError, match='no decodable frames'):
    prepare_videos.convert_video(cut, str(out / 'x.mp4'), 32, 4)
  assert os.listdir(out) == []


@pytest.mark.parametrize('kwargs, match', [({'short_side': 31}, 'short-side'),
                                           ({'keyframe_interval': 0}, 'keyframe-interval'),
                                           ({'workers': 0}, 'workers')])
def test_bad_arguments_name_the_flag(src, tmp_path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    prepare_videos.prepare(src, str(tmp_path), progress=None, **kwargs)
