"""bat_jax/data/core.py: the grain core under every file-backed data set (order, substitution of
broken records, the checkpointable iterator and its state)."""

import numpy as np
import pytest

from bat_jax.data import core


class _Broken(Exception):

  def __init__(self, path, reason):
    super().__init__(path)
    self.path, self.reason = path, reason


def _load(item):
  epoch, pos, record = item
  return {'x': np.int64(record), 'epoch': np.int64(epoch), 'pos': np.int64(pos)}


def _iterator(n=10, global_batch=4, process_index=0, process_count=1, seed=3):
  source = core.train_source(n, global_batch, process_index, process_count, seed, None)
  fingerprint = {'kind': 'train', 'num_records': n, 'seed': seed,
                 'process_index': process_index, 'process_count': process_count}
  return core.GrainIterator(core.train_batches(_load, source), num_batches=None, num_workers=0,
                            num_threads=1, split='train', fingerprint=fingerprint,
                            info={'steps_per_epoch': source.steps})


def test_train_order_is_the_epoch_permutation_sharded_by_process():
  # n = 10, G = 4: 2 steps per epoch (positions 0..7 of each epoch's permutation), 2 processes.
  whole = _iterator()
  halves = [_iterator(process_index=p, process_count=2) for p in range(2)]
  for step in range(5):
    epoch, s = divmod(step, 2)
    want = np.random.default_rng([3, epoch]).permutation(10)[4 * s:4 * s + 4]
    batch = next(whole)
    np.testing.assert_array_equal(batch['x'], want)
    np.testing.assert_array_equal(batch['epoch'], [epoch] * 4)
    np.testing.assert_array_equal(np.concatenate([next(h)['x'] for h in halves]), want)


def test_too_small_split_names_the_records():
  with pytest.raises(ValueError, match='3 training videos < global batch 4'):
    core.train_source(3, 4, 0, 1, 0, None, 'videos')
  with pytest.raises(ValueError, match='not divisible by the 3 processes'):
    core.process_batch_size(4, 3)


@pytest.mark.parametrize('keep_grain_state', [True, False])
def test_state_resumes_exactly(keep_grain_state):
  it = _iterator()
  for _ in range(3):
    next(it)
  state = it.get_state()
  if not keep_grain_state:  # the CIFAR iterator's former state: batch index + fingerprint only
    state = {k: state[k] for k in ('version', 'next_batch', 'fingerprint')}
  fresh = _iterator()
  fresh.set_state(state)
  for _ in range(3):
    np.testing.assert_array_equal(next(fresh)['x'], next(it)['x'])
  other = _iterator(seed=4)
  with pytest.raises(ValueError, match='another pipeline'):
    other.set_state(state)


def test_first_readable_substitutes_the_next_records_and_reports_them():
  bad = {2, 3}

  def read(r):
    if r in bad:
      raise _Broken(f'f{r}', 'damaged')
    return r * 10

  assert core.first_readable(read, 2, 5, _Broken) == (40, (('f2', 'damaged'), ('f3', 'damaged')))
  assert core.first_readable(read, 0, 5, _Broken) == (0, ())
  bad = set(range(5))
  with pytest.raises(RuntimeError, match=f'{core.MAX_SUBSTITUTES} consecutive broken things'):
    core.first_readable(read, 1, 5, _Broken, 'broken things')


def test_broken_entries_of_the_batches_reach_the_report():
  core.reset_broken_files()
  core.record_broken([('a.mp4', 'zero-byte file'), ('a.mp4', 'zero-byte file')], 'train')
  core.record_missing([('vid_000001_000011', 'abseiling')], 'val', '/data/val')
  report = core.broken_files()
  core.reset_broken_files()
  assert report == [
      {'path': 'a.mp4', 'reason': 'zero-byte file', 'count': 2, 'split': 'train'},
      {'path': 'vid_000001_000011', 'reason': 'annotated but no video file under /data/val',
       'count': 1, 'split': 'val', 'label': 'abseiling'}]
  batch = core.collate([{'x': np.int32(1), '_broken': (('p', 'r'),)},
                        {'x': np.int32(2), '_broken': ()}])
  np.testing.assert_array_equal(batch['x'], [1, 2])
  assert batch['_broken'] == (('p', 'r'),)
