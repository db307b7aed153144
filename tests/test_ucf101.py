"""UCF-101 (bat_jax/data/ucf101.py): the official ``UCF-101/`` + ``ucfTrainTestlist/`` layout
generated here (tiny MPEG-4 Part 2 ``.avi`` files written with PyAV, as UCF-101's Xvid ones; one
listed video absent, one not a video); split lists 1 and 2; batches equal the shared video
pipeline on the records built here from the layout; resume; broken files reported."""

import json
import os

import av
import ml_collections
import numpy as np
import pytest

from bat_jax.data import pipeline, registry, ucf101
from bat_jax.training import config_checks
from configs import chebysnl_ucf101_i3d

CLASSES = ('ApplyEyeMakeup', 'Archery', 'BabyCrawling')  # classInd order
GROUPS = (1, 2, 3)
TEST_GROUP = {1: 1, 2: 2}  # split id -> the group its test list holds (the rest: train)
ABSENT = 'Archery/v_Archery_g03_c01.avi'  # listed in trainlist01, no file
NOT_A_VIDEO = 'BabyCrawling/v_BabyCrawling_g01_c01.avi'  # listed in testlist01


def _write_avi(path, value, n=10, h=32, w=48):
  """``n`` flat frames of grey ``value + 6 i`` in an avi container (mpeg4 codec)."""
  with av.open(str(path), 'w', format='avi') as c:
    stream = c.add_stream('mpeg4', rate=8)
    stream.width, stream.height, stream.pix_fmt = w, h, 'yuv420p'
    for i in range(n):
      frame = av.VideoFrame.from_ndarray(np.full((h, w, 3), value + 6 * i, np.uint8),
                                         format='rgb24')
      c.mux(stream.encode(frame))
    c.mux(stream.encode())


def _rel(c, g):
  return f'{CLASSES[c]}/v_{CLASSES[c]}_g{g:02d}_c01.avi'


@pytest.fixture(scope='module')
def ucf_root(tmp_path_factory):
  root = tmp_path_factory.mktemp('ucf')
  lists = root / ucf101.LISTS_DIR
  os.makedirs(lists)
  for c in range(len(CLASSES)):
    os.makedirs(root / ucf101.VIDEOS_DIR / CLASSES[c])
    for g in GROUPS:
      path = root / ucf101.VIDEOS_DIR / _rel(c, g)
      if _rel(c, g) == NOT_A_VIDEO:
        path.write_text('not a video\n')
      elif _rel(c, g) != ABSENT:
        _write_avi(path, 16 + 40 * c + 10 * g)
  (lists / 'classInd.txt').write_text(''.join(f'{i} {c}\n' for i, c in enumerate(CLASSES, 1)))
  for k, test_group in TEST_GROUP.items():
    train = [f'{_rel(c, g)} {c + 1}\n' for c in range(3) for g in GROUPS if g != test_group]
    test = [f'{_rel(c, test_group)}\n' for c in range(3)]
    (lists / f'trainlist{k:02d}.txt').write_text(''.join(train))
    (lists / f'testlist{k:02d}.txt').write_text(''.join(test))
  return root


def _records(root, split, split_id=1):
  """The (path, label) records the layout above defines, in list order."""
  test_group = TEST_GROUP[split_id]
  pairs = [(c, g) for c in range(3) for g in GROUPS if (g == test_group) == (split == 'test')]
  return [(os.path.join(root, ucf101.VIDEOS_DIR, _rel(c, g)), c) for c, g in pairs]


def _cfg(root, **kw):
  cfg = dict(name='ucf101', root=str(root), split_id=1, train_split='train', eval_split='test',
             num_frames=4, frame_stride=2, crop_size=24, train_short_side=(32, 36),
             eval_short_side=32, num_workers=0, num_threads=1)
  cfg.update(kw)
  return cfg


def test_split_lists_give_records_and_zero_based_labels(ucf_root):
  for split_id in (1, 2):
    for split in ('train', 'test'):
      sp = ucf101.load_split(ucf_root, split, split_id)
      assert sp.class_names == list(CLASSES)
      assert sp.records == _records(str(ucf_root), split, split_id)
  assert len(ucf101.load_split(ucf_root, 'train', 1)) == 6
  with pytest.raises(ValueError, match='split_id=4'):
    ucf101.load_split(ucf_root, 'train', 4)
  with pytest.raises(ValueError, match="split 'val'"):
    ucf101.load_split(ucf_root, 'val', 1)
  with pytest.raises(FileNotFoundError, match='testlist03.txt'):
    ucf101.load_split(ucf_root, 'test', 3)


def test_bad_list_lines_name_the_file_and_line(ucf_root, tmp_path):
  names = list(CLASSES)
  (tmp_path / 'a.txt').write_text(f'{_rel(0, 1)} 1\n{_rel(1, 1)} 3\n')
  with pytest.raises(ValueError, match=r'a.txt:2: label .3. is not that of class .Archery.'):
    ucf101.read_list(str(tmp_path / 'a.txt'), names)
  (tmp_path / 'b.txt').write_text('Boxing/v_Boxing_g01_c01.avi\n')
  with pytest.raises(ValueError, match=r'b.txt:1: expected'):
    ucf101.read_list(str(tmp_path / 'b.txt'), names)
  (tmp_path / 'classInd.txt').write_text('1 A\n3 B\n')
  with pytest.raises(ValueError, match='labels are not 1..2'):
    ucf101.read_class_index(str(tmp_path / 'classInd.txt'))


def _same_batches(got, want):
  for a, b in zip(got, want):
    assert set(a) == set(b)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_train_batches_are_the_shared_pipeline_and_resume(ucf_root):
  cfg = _cfg(ucf_root)
  records = _records(str(ucf_root), 'train')
  pipeline.reset_broken_files()
  it = ucf101.make_train_iterator(cfg, 3, seed=2)
  assert (it.num_examples, it.num_classes, it.class_names) == (6, 3, list(CLASSES))
  got = [next(it) for _ in range(4)]  # two epochs: every record is drawn
  state = json.loads(json.dumps(it.get_state()))
  after = [next(it) for _ in range(2)]
  it.close()
  ref = pipeline.make_train_iterator(cfg, 3, seed=2, records=records, class_names=CLASSES)
  _same_batches(got + after, [next(ref) for _ in range(6)])
  ref.close()
  assert [e['path'] for e in ucf101.broken_files()] == [
      os.path.join(str(ucf_root), ucf101.VIDEOS_DIR, ABSENT)]
  fresh = ucf101.make_train_iterator(cfg, 3, seed=2)
  fresh.set_state(state)
  _same_batches([next(fresh) for _ in range(2)], after)
  fresh.close()
  pipeline.reset_broken_files()


def test_eval_batches_are_the_shared_pipeline_with_the_broken_video_masked(ucf_root):
  cfg = _cfg(ucf_root)
  pipeline.reset_broken_files()
  it = ucf101.make_eval_iterator(cfg, 2)
  assert it.class_names == list(CLASSES) and it.num_classes == 3
  got = list(it)
  ref = pipeline.make_eval_iterator(cfg, 2, records=_records(str(ucf_root), 'test'))
  _same_batches(got, list(ref))
  mask = np.concatenate([b['mask'] for b in got])
  labels = np.concatenate([b['label'] for b in got])
  assert mask.tolist() == [True, True, False, False] and labels[:3].tolist() == [0, 1, 2]
  assert [e['path'] for e in ucf101.broken_files()] == [
      os.path.join(str(ucf_root), ucf101.VIDEOS_DIR, NOT_A_VIDEO)]
  pipeline.reset_broken_files()


def test_registry_serves_ucf101(ucf_root):
  assert registry.data_module(ml_collections.ConfigDict(_cfg(ucf_root))) is ucf101


def test_recipe_validates_on_the_layout(ucf_root):
  """chebysnl_ucf101_i3d's data fields read the generated layout; a video recipe still needs
  ``init_from`` (the paper starts from a Kinetics model)."""
  cfg = chebysnl_ucf101_i3d.get_config()
  with pytest.raises(config_checks.ConfigError, match='config.data.root is empty'):
    config_checks.validate_config(cfg)
  cfg.data.root = str(ucf_root)
  with pytest.raises(config_checks.ConfigError, match='config.init_from is empty'):
    config_checks.validate_config(cfg)
  cfg.init_from = config_checks.INIT_FROM_SCRATCH
  config_checks.validate_config(cfg)
  data = dict(cfg.data, num_workers=0, num_threads=1)
  it = ucf101.make_train_iterator(data, 2, seed=0)
  assert it.num_examples == 6 and it.num_classes == 3
  it.close()
