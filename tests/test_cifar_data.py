"""CIFAR input pipeline (bat_jax/data/cifar.py) on tfds mock data (no download, no TensorFlow)."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from bat_jax.data import cifar

N = 40  # mock train / test examples


@pytest.fixture(scope='module')
def sources():
  """The mocked tfds data sources (deterministic random images and labels), kept after the
  mock context closes."""
  with tfds.testing.mock_data(num_examples=N):
    return {name: {s: tfds.data_source(name, split=s) for s in ('train', 'test')}
            for name in ('cifar10', 'cifar100')}


def denormalize(x):
  """A batch row (the workers' uint8) in 0-1 units."""
  assert np.asarray(x).dtype == np.uint8
  return np.asarray(x) / 255.0


def window_of(image, original, padding=4):
  """(top, left, flipped) such that ``image`` is that window of the zero-padded ``original``."""
  padded = np.pad(original / 255.0, ((padding, padding), (padding, padding), (0, 0)))
  size = image.shape[0]
  for top in range(2 * padding + 1):
    for left in range(2 * padding + 1):
      crop = padded[top:top + size, left:left + size]
      for flipped in (False, True):
        if np.allclose(crop[:, ::-1] if flipped else crop, image, atol=1e-5):
          return top, left, flipped
  return None


def take(it, k):
  return [next(it) for _ in range(k)]


def test_config_reads_through_tfds_data_source():
  cfg = cifar.get_config(name='cifar100')
  with tfds.testing.mock_data(num_examples=N):
    it = cifar.make_train_iterator(cfg, 8, seed=0)
    batch = next(it)
    ev = cifar.make_eval_iterator(cfg, 16)
  assert batch['image'].shape == (8, 32, 32, 3) and batch['image'].dtype == np.uint8
  assert batch['label'].dtype == np.int32 and np.all((0 <= batch['label']) & (batch['label'] < 100))
  assert (it.num_examples, it.steps_per_epoch, it.num_classes) == (N, 5, 100)
  assert len(ev) == 3
  with pytest.raises(ValueError, match="config.data.name='cifar1000'"):
    cifar.make_train_iterator(cifar.get_config(name='cifar1000'), 8)


def test_augment_is_padded_random_crop_and_flip():
  image = np.random.default_rng(0).integers(1, 256, size=(32, 32, 3)).astype(np.uint8)
  seen = set()
  rng = np.random.default_rng(1)
  for _ in range(1500):
    out = cifar.augment(image, rng)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    found = window_of(out / 255.0, image)
    assert found is not None
    seen.add(found)
    top, left, _ = found  # zeros exactly where the window leaves the image
    rows = np.arange(top, top + 32)
    cols = np.arange(left, left + 32)
    outside = ((rows[:, None] < 4) | (rows[:, None] >= 36) | (cols[None] < 4) | (cols[None] >= 36))
    if found[2]:
      outside = outside[:, ::-1]
    assert np.all(out[outside] == 0) and np.all(out[~outside] > 0)
  assert {(t, l) for t, l, _ in seen} == {(t, l) for t in range(9) for l in range(9)}
  assert {f for _, _, f in seen} == {False, True}
  np.testing.assert_array_equal(cifar.augment(image, rng, padding=0, flip=False), image)


def test_train_batches_are_augmented_records_and_epochs_are_permutations(sources):
  cfg = cifar.get_config(name='cifar10')
  it = cifar.make_train_iterator(cfg, 8, seed=3, source=sources['cifar10']['train'])
  labels = {i: int(sources['cifar10']['train'][i]['label']) for i in range(N)}
  for epoch in range(2):
    records = []
    for batch in take(it, it.steps_per_epoch):
      for image, label in zip(batch['image'], batch['label']):
        matches = [r for r in range(N) if labels[r] == label and
                   window_of(denormalize(image), np.asarray(
                       sources['cifar10']['train'][r]['image'])) is not None]
        assert len(matches) == 1
        records.append(matches[0])
    assert sorted(records) == list(range(N)), epoch  # every record once per epoch


def test_batches_depend_only_on_seed_and_index(sources):
  src = sources['cifar100']['train']
  cfg = cifar.get_config()
  a = take(cifar.make_train_iterator(cfg, 8, seed=0, source=src), 7)
  b = take(cifar.make_train_iterator(cfg, 8, seed=0, source=src), 7)
  c = take(cifar.make_train_iterator(cfg, 8, seed=1, source=src), 7)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['image'], y['image'])
    np.testing.assert_array_equal(x['label'], y['label'])
  assert any(not np.array_equal(x['image'], z['image']) for x, z in zip(a, c))
  # Two processes read disjoint halves of the same global batches.
  halves = [take(cifar.make_train_iterator(cfg, 8, p, 2, seed=0, source=src), 7) for p in (0, 1)]
  for k, whole in enumerate(a):
    np.testing.assert_array_equal(
        np.concatenate([halves[0][k]['image'], halves[1][k]['image']]), whole['image'])
    np.testing.assert_array_equal(
        np.concatenate([halves[0][k]['label'], halves[1][k]['label']]), whole['label'])


def test_state_resumes_exactly_and_rejects_another_pipeline(sources):
  src = sources['cifar100']['train']
  cfg = cifar.get_config()
  it = cifar.make_train_iterator(cfg, 8, seed=0, source=src)
  take(it, 3)
  state = it.get_state()
  want = take(it, 4)
  fresh = cifar.make_train_iterator(cfg, 8, seed=0, source=src)
  fresh.set_state(state)
  for x, y in zip(take(fresh, 4), want):
    np.testing.assert_array_equal(x['image'], y['image'])
  # A 2-process run resumes from the 1-process state: its rows of the same batches.
  half = cifar.make_train_iterator(cfg, 8, 1, 2, seed=0, source=src)
  half.set_state(state)
  np.testing.assert_array_equal(next(half)['image'], want[0]['image'][4:])
  other = cifar.make_train_iterator(cfg, 8, seed=5, source=src)
  with pytest.raises(ValueError, match='another pipeline'):
    other.set_state(state)


def test_eval_is_every_example_once_unaugmented_and_padded(sources):
  src = sources['cifar100']['test']
  cfg = cifar.get_config()
  for processes in (1, 2):
    seen = []
    for p in range(processes):
      batches = list(cifar.make_eval_iterator(cfg, 16, p, processes, source=src))
      assert len(batches) == 3
      for batch in batches:
        assert batch['image'].shape == (16 // processes, 32, 32, 3)
        for image, label, valid in zip(batch['image'], batch['label'], batch['mask']):
          if not valid:
            assert not image.any()
            continue
          index = next(i for i in range(N) if np.allclose(
              denormalize(image), np.asarray(src[i]['image']) / 255.0, atol=1e-5))
          assert label == src[index]['label']
          seen.append(index)
    assert sorted(seen) == list(range(N)), processes


def test_worker_processes_give_the_same_batches(sources):
  src = sources['cifar10']['train']
  want = take(cifar.make_train_iterator(cifar.get_config(name='cifar10'), 8, seed=0, source=src),
              3)
  it = cifar.make_train_iterator(cifar.get_config(name='cifar10', num_workers=2), 8, seed=0,
                                 source=src)
  for x, y in zip(take(it, 3), want):
    np.testing.assert_array_equal(x['image'], y['image'])
