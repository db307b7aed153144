"""Mini-Kinetics-200 split builder (bat_jax/data/mini_kinetics.py) on synthetic annotation CSVs."""

import collections
import csv
import json
import os

import pytest

from bat_jax.data import kinetics, mini_kinetics


def _write_csv(path, rows):
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['label', 'youtube_id', 'time_start', 'time_end', 'split', 'is_cc'])
    w.writerows(rows)


@pytest.fixture(scope='module')
def annotations(tmp_path_factory):
  """230 classes: class c has 420 + c % 40 training rows and 30 + c % 7 validation rows, except
  that classes 0-9 have only 20 validation rows and classes 10-14 only 390 training rows (not
  eligible). Labels contain spaces, parentheses and quotes as in the real file."""
  d = tmp_path_factory.mktemp('k400')
  train, val = [], []
  for c in range(230):
    label = f'class {c:03d} (with "quotes", commas)'
    n_train = 390 if 10 <= c < 15 else 420 + c % 40
    n_val = 20 if c < 10 else 30 + c % 7
    train += [(label, f't{c:03d}x{i:04d}', 10 * (i % 5), 10 * (i % 5) + 10, 'train', 0)
              for i in range(n_train)]
    val += [(label, f'v{c:03d}x{i:04d}', 0, 10, 'validate', 0) for i in range(n_val)]
  _write_csv(str(d / 'train.csv'), train)
  _write_csv(str(d / 'validate.csv'), val)
  return str(d)


def _rows(path):
  with open(path, newline='') as f:
    return list(csv.DictReader(f))


def test_builds_200_classes_400_train_25_val_per_class(annotations, tmp_path):
  out = str(tmp_path / 'mini')
  code = mini_kinetics.main(['--annotations', os.path.join(annotations, 'train.csv'),
                             '--val-annotations', os.path.join(annotations, 'validate.csv'),
                             '--out', out, '--seed', '0'])
  assert code == 0
  train, val = _rows(os.path.join(out, 'train.csv')), _rows(os.path.join(out, 'val.csv'))
  assert list(train[0]) == ['label', 'youtube_id', 'time_start', 'time_end', 'split']
  classes = sorted({r['label'] for r in train})
  assert len(classes) == 200 and sorted({r['label'] for r in val}) == classes
  assert set(collections.Counter(r['label'] for r in train).values()) == {400}
  assert set(collections.Counter(r['label'] for r in val).values()) == {25}
  # The most frequent eligible classes (Xie et al.): 420 + c % 40 training rows, so the 30
  # eligible classes with the fewest (c % 40 small) are left out, never one of 0-14.
  ids = sorted(int(c.split()[1]) for c in classes)
  assert not set(ids) & set(range(15))
  assert min((c % 40) for c in ids) >= max(c % 40 for c in set(range(15, 230)) - set(ids))
  assert all(r['split'] == 'train' for r in train) and all(r['split'] == 'val' for r in val)
  assert len({r['youtube_id'] for r in train}) == 80000 and all(r['youtube_id'][0] == 'v'
                                                                for r in val)
  with open(os.path.join(out, 'classes.txt')) as f:
    assert f.read().splitlines() == classes
  with open(os.path.join(out, 'mini_kinetics.json')) as f:
    summary = json.load(f)
  assert (summary['num_classes'], summary['num_train'], summary['num_val']) == (200, 80000, 5000)
  # The kinetics reader takes the files as they are (time fields as in the source rows).
  rows = kinetics.read_annotations(os.path.join(out, 'train.csv'))
  src = {r['youtube_id']: r for r in kinetics.read_annotations(
      os.path.join(annotations, 'train.csv'))}
  assert all(r == src[r['youtube_id']] for r in rows[:500])


def test_seeded_and_deterministic(annotations, tmp_path):
  args = ['--annotations', os.path.join(annotations, 'train.csv'), '--val-annotations',
          os.path.join(annotations, 'validate.csv')]
  outs = []
  for name, seed in (('a', 1), ('b', 1), ('c', 2)):
    out = str(tmp_path / name)
    assert mini_kinetics.main(args + ['--out', out, '--seed', str(seed)]) == 0
    with open(os.path.join(out, 'train.csv')) as f:
      outs.append(f.read())
  assert outs[0] == outs[1] and outs[0] != outs[2]


def test_val_from_training_leftovers_is_disjoint_and_links_videos(annotations, tmp_path):
  """Without validation annotations, 25 of each class's remaining training rows; --videos links
  the video folders so that the kinetics reader resolves the split."""
  videos = tmp_path / 'k400'
  rows = kinetics.read_annotations(os.path.join(annotations, 'train.csv'))
  for r in rows[::7]:  # a partial download: every 7th video, in class folders
    d = videos / 'train' / r['label']
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{r['youtube_id']}_{r['time_start']:06d}_{r['time_end']:06d}.mp4").touch()
  out = str(tmp_path / 'mini')
  summary = mini_kinetics.build(os.path.join(annotations, 'train.csv'), out, videos=str(videos),
                                seed=0, num_classes=20, train_per_class=40, val_per_class=5,
                                require_files=True)
  assert summary['val_from'] == 'training leftovers'
  assert summary['dropped_without_file']['train'] == len(rows) - len(rows[::7])
  train, val = _rows(os.path.join(out, 'train.csv')), _rows(os.path.join(out, 'val.csv'))
  assert len(train) == 20 * 40 and len(val) == 20 * 5
  assert not {r['youtube_id'] for r in train} & {r['youtube_id'] for r in val}
  assert os.path.islink(os.path.join(out, 'train')) and os.path.islink(os.path.join(out, 'val'))
  tr, va = kinetics.load_split(out, 'train'), kinetics.load_split(out, 'val')
  assert len(tr.records) == 800 and not tr.missing and len(va.records) == 100
  assert tr.num_classes == 20 and va.class_names == tr.class_names


def test_id_lists_and_errors(annotations, tmp_path):
  rows = kinetics.read_annotations(os.path.join(annotations, 'train.csv'))
  vrows = kinetics.read_annotations(os.path.join(annotations, 'validate.csv'))
  (tmp_path / 'tr.txt').write_text('\n'.join(r['youtube_id'] for r in rows[:30]) + '\n')
  (tmp_path / 'va.txt').write_text('# official list\n' + vrows[0]['youtube_id'] + '\n')
  out = str(tmp_path / 'lists')
  assert mini_kinetics.main([
      '--annotations', os.path.join(annotations, 'train.csv'), '--val-annotations',
      os.path.join(annotations, 'validate.csv'), '--out', out, '--train-ids',
      str(tmp_path / 'tr.txt'), '--val-ids', str(tmp_path / 'va.txt')]) == 0
  assert [r['youtube_id'] for r in _rows(os.path.join(out, 'train.csv'))] == [
      r['youtube_id'] for r in rows[:30]]
  assert len(_rows(os.path.join(out, 'val.csv'))) == 1
  with pytest.raises(ValueError, match='only 0 classes'):
    mini_kinetics.select(rows[:1000], None)
