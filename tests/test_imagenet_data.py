"""ImageNet input pipeline (bat_jax/data/imagenet.py): the tfds data source on tfds mock data (no
TensorFlow, no download), the JPEG-folder source on real JPEGs that scikit-learn ships
(``sklearn/datasets/images/china.jpg``, ``flower.jpg``) with broken files mixed in, the
RandomResizedCrop / resize + centre-crop transforms against hand computations, and a short
training run through the loop."""

import importlib.util
import json
import os
import shutil

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from bat_jax.data import imagenet, pipeline
from bat_jax.training import loop
from bat_jax.training import evaluate as evaluate_lib
from configs import base_imagenet
from tests import helpers_train as h
from tests import util

loop.mark_flags_parsed()

_SK = importlib.util.find_spec('sklearn')
SK_IMAGES = (os.path.join(_SK.submodule_search_locations[0], 'datasets', 'images')
             if _SK else None)
needs_sklearn = pytest.mark.skipif(
    SK_IMAGES is None or not os.path.isfile(os.path.join(SK_IMAGES or '', 'china.jpg')),
    reason='scikit-learn (its sample JPEGs) is not installed')
N = 24  # mock examples per split


def _cfg(**kw):
  cfg = dict(name='imagenet2012', data_dir='', image_size=32, eval_resize=36, num_workers=0,
             num_threads=1)
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


@pytest.fixture(scope='module')
def mock_sources():
  """tfds' mocked ``imagenet2012`` data sources (random images of random sizes and labels)."""
  with tfds.testing.mock_data(num_examples=N):
    return {s: tfds.data_source('imagenet2012', split=s) for s in ('train', 'validation')}


def _take(it, k):
  return [next(it) for _ in range(k)]


# ------------------------------------------------------------------------------------------------
# tfds data source (mock data).


def test_reads_through_tfds_data_source_without_tensorflow():
  assert importlib.util.find_spec('tensorflow') is None  # the point: no TF at training time
  with tfds.testing.mock_data(num_examples=N):
    it = imagenet.make_train_iterator(_cfg(), 8, seed=0)
    batch = next(it)
    ev = imagenet.make_eval_iterator(_cfg(), 10)
    batches = list(ev)
  assert set(batch) == {'image', 'label'} and batch['image'].shape == (8, 32, 32, 3)
  assert batch['image'].dtype == np.uint8 and batch['label'].dtype == np.int32
  assert np.all((batch['label'] >= 0) & (batch['label'] < 1000))
  assert (it.num_examples, it.steps_per_epoch, it.num_classes) == (N, 3, 1000)
  assert len(batches) == len(ev) == 3 and set(batches[0]) == {'image', 'label', 'mask'}
  assert [int(b['mask'].sum()) for b in batches] == [10, 10, 4]
  assert np.all(batches[-1]['image'][~batches[-1]['mask']] == 0)
  it.close()


def test_train_batches_are_augmented_records_in_shard_order(mock_sources):
  src = mock_sources['train']
  labels = np.asarray([int(src[i]['label']) for i in range(N)])
  for p in range(2):
    it = imagenet.make_train_iterator(_cfg(), 8, p, 2, seed=3, source=src)
    order = pipeline.train_position_order(N, 8, p, 2, 3, 5)
    for b, rows in zip(_take(it, 5), order):  # crosses into epoch 1
      np.testing.assert_array_equal(b['label'], labels[rows])
    it.close()


def test_state_resumes_exactly_and_worker_count_does_not_matter(mock_sources):
  src = mock_sources['train']
  it = imagenet.make_train_iterator(_cfg(), 8, seed=1, source=src)
  ref = _take(it, 5)
  it.close()
  mp = imagenet.make_train_iterator(_cfg(num_workers=2), 8, seed=1, source=src)
  got = _take(mp, 2)
  state = json.loads(json.dumps(mp.get_state()))
  got += _take(mp, 3)
  mp.close()
  fresh = imagenet.make_train_iterator(_cfg(), 8, seed=1, source=src)
  fresh.set_state(state)  # another worker count: restarts at the batch index
  got_after = _take(fresh, 3)
  fresh.close()
  for a, b in zip(got + got_after, ref + ref[2:]):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
  other = imagenet.make_train_iterator(_cfg(), 8, seed=2, source=src)
  with pytest.raises(ValueError, match='another pipeline'):
    other.set_state(state)
  other.close()


def test_eval_covers_each_image_once_over_processes(mock_sources):
  src = mock_sources['validation']
  seen, counts = [], []
  for p in range(3):
    ev = imagenet.make_eval_iterator(_cfg(), 9, p, 3, source=src)
    batches = list(ev)
    counts.append(len(batches))
    for b in batches:
      assert b['image'].shape == (3, 32, 32, 3)
      seen += [int(x) for x in b['label'][b['mask']]]
  assert len(set(counts)) == 1 and len(seen) == N
  assert sorted(seen) == sorted(int(src[i]['label']) for i in range(N))


# ------------------------------------------------------------------------------------------------
# Transforms.


@pytest.mark.parametrize('hw', [(427, 640), (300, 300), (40, 900), (900, 40), (5, 7)])
def test_random_resized_crop_box_respects_scale_and_ratio(hw):
  hh, ww = hw
  rng = np.random.default_rng(0)
  fallback = 0
  for _ in range(300):
    top, left, ch, cw = imagenet.random_resized_crop_box(hh, ww, rng)
    assert 0 <= top and top + ch <= hh and 0 <= left and left + cw <= ww and ch > 0 and cw > 0
    area, ratio = ch * cw / (hh * ww), cw / ch
    in_range = (0.08 - 0.02 <= area <= 1.0 and 3 / 4 * 0.9 <= ratio <= 4 / 3 / 0.9)
    if not in_range and min(hh, ww) >= 40:  # (tiny images: rounding moves the ratio)
      # only the fallback (the whole image cut to the allowed ratio) may be outside
      fallback += 1
      assert (ch == hh or cw == ww) and (top, left) == ((hh - ch) // 2, (ww - cw) // 2)
  if hh * ww >= 300 * 300 and 0.75 <= ww / hh <= 4 / 3:
    assert fallback == 0
  if (hh, ww) == (40, 900):  # aspect 22.5: always the fallback, 40 x 53 centred
    assert imagenet.random_resized_crop_box(40, 900, rng) == (0, 423, 40, 53)


def test_crop_scale_above_one_redraws_like_torchvision():
  """The released SNL recipe's ``scale=(0.08, 1.25)``: an area fraction > 1 cannot fit, so the try
  is redrawn (torchvision) rather than clipped to the whole image: the accepted areas are
  distributed as with ``scale=(0.08, 1)``, with no pile-up at 1 (a clip would put ~20% there)."""
  rng = np.random.default_rng(1)

  def areas(scale):
    return np.array([ch * cw / 300**2 for _, _, ch, cw in (
        imagenet.random_resized_crop_box(300, 300, rng, scale=scale) for _ in range(3000))])

  wide, plain = areas((0.08, 1.25)), areas((0.08, 1.0))
  assert np.all(wide <= 1.0)
  assert np.mean(wide >= 0.99) < 0.03
  assert abs(np.mean(wide) - np.mean(plain)) < 0.02


def _sample(name):
  return np.asarray(Image.open(os.path.join(SK_IMAGES, name)).convert('RGB'))


@needs_sklearn
def test_eval_transform_is_resize_256_and_centre_crop_224_on_a_real_jpeg():
  img = _sample('china.jpg')
  assert img.shape == (427, 640, 3)
  out = imagenet.eval_image(img, size=224, resize=256)
  # torchvision Resize(256): (256, int(256 * 640 / 427) = 383); CenterCrop(224): top 16,
  # left round(159 / 2) = 80.
  ref = np.asarray(Image.fromarray(img).resize((383, 256), Image.BILINEAR))[16:240, 80:304]
  assert out.shape == (224, 224, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, ref)


@needs_sklearn
def test_train_transform_is_the_drawn_box_resized_and_flipped():
  img = _sample('flower.jpg')
  flips = set()
  for seed in range(12):
    out = imagenet.train_image(img, np.random.default_rng(seed), size=64)
    rng = np.random.default_rng(seed)
    top, left, ch, cw = imagenet.random_resized_crop_box(427, 640, rng)
    ref = np.asarray(Image.fromarray(img).crop((left, top, left + cw, top + ch))
                     .resize((64, 64), Image.BILINEAR), np.float64)
    flip = rng.random() < 0.5
    flips.add(flip)
    ref = ref[:, ::-1] if flip else ref
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref)
  assert flips == {True, False}


# ------------------------------------------------------------------------------------------------
# JPEG folders (imagenet_folder) with broken files, and a training run.

WNIDS = ('n01440764', 'n01443537')


@pytest.fixture(scope='module')
def folder_root(tmp_path_factory):
  if SK_IMAGES is None:
    pytest.skip('scikit-learn is not installed')
  root = str(tmp_path_factory.mktemp('imagenet_jpeg'))
  china, flower = _sample('china.jpg'), _sample('flower.jpg')
  for split, n in (('train', 4), ('val', 2)):
    for c, wnid in enumerate(WNIDS):
      d = os.path.join(root, split, wnid)
      os.makedirs(d)
      base = (china, flower)[c]
      for i in range(n):
        im = Image.fromarray(np.ascontiguousarray(np.roll(base, 37 * i, axis=1)))
        if i == 1:
          im = im.convert('L')  # greyscale JPEG
        if i == 2:
          im = im.convert('CMYK')  # CMYK JPEG (ImageNet has a few)
        im.save(os.path.join(d, f'{wnid}_{i}.JPEG'), quality=90)
  shutil.copy(os.path.join(SK_IMAGES, 'china.jpg'), os.path.join(root, 'train', WNIDS[0], 'x.jpg'))
  bad = os.path.join(root, 'train', WNIDS[1])
  open(os.path.join(bad, 'zero.JPEG'), 'wb').close()
  data = open(os.path.join(SK_IMAGES, 'flower.jpg'), 'rb').read()
  open(os.path.join(bad, 'truncated.JPEG'), 'wb').write(data[:len(data) // 3])
  open(os.path.join(bad, 'text.JPEG'), 'w').write('not an image\n')
  open(os.path.join(root, 'val', WNIDS[0], 'zero.JPEG'), 'wb').close()
  return root


def test_folder_source_labels_decodes_and_reports_broken_files(folder_root):
  cfg = _cfg(name='imagenet_folder', root=folder_root)
  src = imagenet.FolderSource(folder_root, 'train')
  assert src.class_names == list(WNIDS) and len(src) == 4 + 1 + 4 + 3
  ex = src[1]
  assert ex['image'].shape == (427, 640, 3) and ex['label'] == 0  # greyscale -> RGB
  with pytest.raises(imagenet.ImageDecodeError, match='truncated|broken|image file'):
    src[[os.path.basename(p) for p, _ in src.records].index('truncated.JPEG')]
  imagenet.reset_broken_files()
  it = imagenet.make_train_iterator(cfg, 4, seed=0)
  batches = _take(it, 2 * it.steps_per_epoch)  # two epochs: every record is drawn
  it.close()
  assert all(np.isfinite(b['image']).all() for b in batches)
  report = {os.path.basename(e['path']): e for e in imagenet.broken_files()}
  assert set(report) == {'zero.JPEG', 'truncated.JPEG', 'text.JPEG'}
  assert all(e['split'] == 'train' and e['count'] >= 1 for e in report.values())
  imagenet.reset_broken_files()
  ev = imagenet.make_eval_iterator(cfg, 4)
  rows = [(int(l), bool(m)) for b in ev for l, m in zip(b['label'], b['mask'])]
  assert sum(m for _, m in rows) == 4 and len(rows) == 8  # 5 files, 1 broken, 3 padding
  assert [os.path.basename(e['path']) for e in imagenet.broken_files()] == ['zero.JPEG']
  imagenet.reset_broken_files()


def test_config_validation_for_both_sources(folder_root):
  util.assert_tfds_or_folder_source_validated(base_imagenet.get_config(), 'imagenet_folder',
                                              folder_root)


def test_short_training_run_on_jpeg_folders(folder_root, tmp_path):
  cfg = h.get_config('image')  # width-4 ResNet-18 at 32 x 32
  cfg.model.num_classes = 2
  cfg.data = _cfg(name='imagenet_folder', root=folder_root, eval_split='val')
  cfg.global_batch_size = 4
  cfg.num_train_steps = 4
  cfg.checkpoint_every_steps = 4
  imagenet.reset_broken_files()
  result = loop.train_and_evaluate(cfg, str(tmp_path))
  assert result['step'] == 4 and np.isfinite(result['train_loss'])
  with open(tmp_path / 'broken_files_process0.json') as f:
    names = {os.path.basename(e['path']) for e in json.load(f)}
  assert {'zero.JPEG'} <= names <= {'zero.JPEG', 'truncated.JPEG', 'text.JPEG'}
  out = evaluate_lib.evaluate_checkpoint(cfg, str(tmp_path), 'imagenet', progress=False)
  assert out['num_examples'] == 4 and 0 <= out['top1'] <= out['top5'] <= 1
