"""CUB-200-2011 (bat_jax/data/cub200.py): the official ``CUB_200_2011/`` layout generated here
(JPEGs written by PIL, one truncated, one listed but absent), tfds' ``caltech_birds2011`` on
tfds mock data; batches equal the shared ImageNet transforms of the decoded images; resume."""

import json
import os

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from bat_jax import build_model
from bat_jax.data import core, cub200, imagenet, registry
from bat_jax.data import mesh as mesh_lib
from bat_jax.training import transfer
from bat_jax.training import state as state_lib
from bat_jax.training.checkpoint import flat_shapes
from configs import args
from configs import chebysnl_cub200_r50
from tests import util

CLASSES = ('001.Black_footed_Albatross', '002.Laysan_Albatross', '003.Sooty_Albatross')
# (class 1-based, train flag) per image id 1..; image 9 is truncated, image 10 is not on disk.
IMAGES = [(1, 1), (1, 1), (1, 0), (2, 1), (2, 0), (2, 1), (3, 1), (3, 0), (3, 1), (1, 0)]
TRUNCATED, ABSENT = 9, 10


def _cfg(**kw):
  cfg = dict(name='cub200_folder', image_size=32, eval_resize=36, train_split='train',
             eval_split='test', num_workers=0, num_threads=1)
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


def _write_table(path, rows):
  with open(path, 'w', encoding='utf-8') as f:
    f.writelines(f'{a} {b}\n' for a, b in rows)


@pytest.fixture(scope='module')
def cub_root(tmp_path_factory):
  root = tmp_path_factory.mktemp('cub') / 'CUB_200_2011'
  rng = np.random.default_rng(0)
  rel = []
  for image_id, (cls, _) in enumerate(IMAGES, 1):
    name = f'{CLASSES[cls - 1]}/{CLASSES[cls - 1][4:]}_{image_id:04d}_{image_id}.jpg'
    rel.append((image_id, name))
    os.makedirs(root / 'images' / CLASSES[cls - 1], exist_ok=True)
    if image_id == ABSENT:
      continue
    h, w = (int(x) for x in rng.integers(40, 70, size=2))
    pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / 'images' / name, quality=90)
    if image_id == TRUNCATED:
      data = (root / 'images' / name).read_bytes()
      (root / 'images' / name).write_bytes(data[:len(data) // 3])
  _write_table(root / 'images.txt', rel)
  _write_table(root / 'train_test_split.txt', [(i, f) for i, (_, f) in enumerate(IMAGES, 1)])
  _write_table(root / 'image_class_labels.txt', [(i, c) for i, (c, _) in enumerate(IMAGES, 1)])
  _write_table(root / 'classes.txt', [(i, c) for i, c in enumerate(CLASSES, 1)])
  return root


def _ids(split):
  return [i for i, (_, f) in enumerate(IMAGES, 1) if f == cub200.SPLITS[split]]


def test_folder_layout_parses_into_splits_with_zero_based_labels(cub_root):
  for split in ('train', 'test'):
    src = cub200.FolderSource(cub_root, split)
    ids = _ids(split)
    assert src.class_names == list(CLASSES) and len(src) == len(ids)
    assert [label for _, label in src.records] == [IMAGES[i - 1][0] - 1 for i in ids]
    assert all(os.path.basename(p).endswith(f'_{i}.jpg') for (p, _), i in zip(src.records, ids))
  ex = cub200.FolderSource(cub_root, 'train')[0]
  assert ex['image'].dtype == np.uint8 and ex['image'].ndim == 3 and ex['label'] == 0
  with pytest.raises(imagenet.ImageDecodeError):
    cub200.FolderSource(cub_root, 'train')[_ids('train').index(TRUNCATED)]
  with pytest.raises(ValueError, match='split'):
    cub200.FolderSource(cub_root, 'val')


def test_bad_annotations_name_the_file_and_line(cub_root, tmp_path):
  for name in ('images.txt', 'train_test_split.txt', 'image_class_labels.txt', 'classes.txt'):
    (tmp_path / name).write_text((cub_root / name).read_text())
  (tmp_path / 'train_test_split.txt').write_text('1 1\n2 2\n')
  with pytest.raises(ValueError, match='train_test_split.txt.*flag'):
    cub200.FolderSource(tmp_path, 'train')
  (tmp_path / 'train_test_split.txt').write_text('1 1\n1 0\n')
  with pytest.raises(ValueError, match=r'train_test_split.txt:2: id 1 listed twice'):
    cub200.FolderSource(tmp_path, 'train')
  (tmp_path / 'train_test_split.txt').write_text('1\n')
  with pytest.raises(ValueError, match=r'train_test_split.txt:1: expected'):
    cub200.FolderSource(tmp_path, 'train')
  (tmp_path / 'train_test_split.txt').write_text((cub_root / 'train_test_split.txt').read_text())
  os.remove(tmp_path / 'classes.txt')
  with pytest.raises(FileNotFoundError, match='classes.txt'):
    cub200.FolderSource(tmp_path, 'train')


def _decoded(src, record):
  """The image the pipeline uses for ``record``: the next readable one when it is broken."""
  for k in range(len(src)):
    try:
      return src[(record + k) % len(src)]['image']
    except imagenet.ImageDecodeError:
      continue
  raise AssertionError('no readable image')


def test_train_and_eval_batches_are_the_imagenet_transforms(cub_root):
  cfg, seed, gb = _cfg(root=str(cub_root)), 5, 2
  src = cub200.FolderSource(cub_root, 'train')
  imagenet.reset_broken_files()
  it = cub200.make_train_iterator(cfg, gb, seed=seed)
  assert (it.num_examples, it.steps_per_epoch, it.num_classes) == (6, 3, 3)
  order = core.TrainSource(len(src), it.steps_per_epoch, gb, 0, 1, seed, None)
  for step in range(2 * it.steps_per_epoch):  # two epochs: every record is drawn
    batch = next(it)
    for row in range(gb):
      epoch, pos, rec = order[step * gb + row]
      want = imagenet.train_image(_decoded(src, rec), np.random.default_rng([seed, epoch, pos]),
                                  size=32)
      np.testing.assert_array_equal(batch['image'][row], want)
  it.close()
  assert [os.path.basename(e['path']) for e in cub200.broken_files()] == [
      os.path.basename(src.records[_ids('train').index(TRUNCATED)][0])]
  imagenet.reset_broken_files()
  test_src = cub200.FolderSource(cub_root, 'test')
  batches = list(cub200.make_eval_iterator(cfg, 4))
  rows = [(b['image'][r], int(b['label'][r]), bool(b['mask'][r]))
          for b in batches for r in range(4)]
  assert len(rows) == 4 and [m for _, _, m in rows] == [True, True, True, False]  # absent image
  for k, (image, label, _) in enumerate(rows[:3]):
    np.testing.assert_array_equal(image, imagenet.eval_image(test_src[k]['image'], size=32,
                                                             resize=36))
    assert label == test_src.records[k][1]
  assert [e['reason'] for e in cub200.broken_files()] == ['file does not exist']
  imagenet.reset_broken_files()


def test_train_iterator_resumes_from_its_state(cub_root):
  cfg = _cfg(root=str(cub_root))
  it = cub200.make_train_iterator(cfg, 2, seed=1)
  ref = [next(it) for _ in range(5)]
  it.close()
  it = cub200.make_train_iterator(cfg, 2, seed=1)
  _ = [next(it) for _ in range(2)]
  state = json.loads(json.dumps(it.get_state()))
  it.close()
  fresh = cub200.make_train_iterator(cfg, 2, seed=1)
  fresh.set_state(state)
  for want in ref[2:]:
    got = next(fresh)
    np.testing.assert_array_equal(got['image'], want['image'])
    np.testing.assert_array_equal(got['label'], want['label'])
  fresh.close()
  imagenet.reset_broken_files()


def test_tfds_source_reads_caltech_birds2011_splits():
  with tfds.testing.mock_data(num_examples=6):
    it = cub200.make_train_iterator(_cfg(name='cub200', data_dir=''), 2, seed=0)
    batch = next(it)
    it.close()
    ev = list(cub200.make_eval_iterator(_cfg(name='cub200', data_dir=''), 4))
    raw = tfds.data_source(cub200.TFDS_NAME, split='test')
    labels = [int(raw[i]['label']) for i in range(len(raw))]
  assert batch['image'].shape[1:] == (32, 32, 3) and it.num_classes == cub200.NUM_CLASSES
  got = [int(l) for b in ev for l, m in zip(b['label'], b['mask']) if m]
  assert got == labels


def test_registry_and_config_checks_know_both_sources(cub_root):
  for name in ('cub200', 'cub200_folder'):
    assert registry.data_module(_cfg(name=name)) is cub200
  with pytest.raises(ValueError, match="config.data.name='cub'; allowed"):
    cub200.make_source(_cfg(name='cub'), 'train')
  util.assert_tfds_or_folder_source_validated(chebysnl_cub200_r50.get_config(), 'cub200_folder',
                                              str(cub_root))


def _shapes(name):
  config = args.load(name)
  return flat_shapes(state_lib.abstract_variables(
      build_model(config.model), state_lib.init_input_shape(config.model), mesh_lib.make_mesh()))


@pytest.mark.parametrize('row', ['', '_snl'])
def test_imagenet_resnet50_initialises_the_cub_rows(row):
  """chebysnl §3.2 "ResNet50 pre-trained on ImageNet": every backbone array of imagenet_r50
  loads into the 448-input model; the 200-way fc and the block stay at init."""
  target = _shapes(f'chebysnl_cub200_r50{row}')
  plan = transfer.plan_transfer(_shapes('imagenet_r50'), target)
  assert not plan.unexpected and not plan.ignored and not plan.inflate, plan.describe()
  assert {n for n, *_ in plan.mismatched} == {'params/fc/kernel', 'params/fc/bias'}
  assert all('_snl4/' in n for n in plan.missing) and bool(plan.missing) == bool(row)
  assert len(plan.load) == len(target) - len(plan.missing) - 2
