"""Device prefetch (``bat_jax/data/prefetch.py``) and the stall figure ``data_wait_fraction``
(``bat_jax/training/metrics.py``; issue 15 item 5). Resume exactness with prefetch on (the
default) is ``tests/test_checkpoint.py``'s SIGKILL / SIGTERM runs and the reference layout's
per-checkpoint iterator positions."""

import time

import numpy as np
import pytest

from bat_jax.data import mesh as mesh_lib
from bat_jax.data.prefetch import DevicePrefetch
from bat_jax.training import metrics as metrics_lib


class _Counting:
  """Batch ``i`` is ``{'x': [i, i]}``; ``get_state`` is the number of batches drawn."""

  def __init__(self, n=None, sleep=0.0):
    self.drawn, self.n, self.sleep = 0, n, sleep

  def __iter__(self):
    return self

  def __next__(self):
    if self.n is not None and self.drawn >= self.n:
      raise StopIteration
    time.sleep(self.sleep)
    self.drawn += 1
    return {'x': np.full((2,), self.drawn - 1, np.int32)}

  def get_state(self):
    return {'position': self.drawn}


@pytest.mark.parametrize('depth', [0, 1, 2])
def test_same_batches_in_order_state_counts_consumed_batches(depth):
  mesh = mesh_lib.make_mesh()
  source = _Counting()
  it = DevicePrefetch(source, mesh, depth=depth, limit=7)
  assert it.get_state() == {'position': 0}
  for k in range(7):
    device, host = next(it)
    assert int(host['x'][0]) == k and np.asarray(device['x']).tolist() == [k, k]
    assert device['x'].sharding == mesh_lib.batch_sharding(mesh)
    assert source.drawn == min(k + 1 + depth, 7)  # drawn ahead, never past the limit
    assert it.get_state() == {'position': k + 1}  # what a checkpoint after step k + 1 saves
  with pytest.raises(StopIteration):
    next(it)
  assert source.drawn == 7


def test_finite_iterator_ends_and_bad_depth_names_the_field():
  mesh = mesh_lib.make_mesh()
  got = [int(h['x'][0]) for _, h in DevicePrefetch(_Counting(n=3), mesh, depth=2)]
  assert got == [0, 1, 2]
  with pytest.raises(ValueError, match='config.device_prefetch'):
    DevicePrefetch(_Counting(), mesh, depth=-1)


def test_data_wait_fraction_is_the_share_of_time_blocked_on_data():
  data_s, step_s, steps = 0.05, 0.15, 8
  it = DevicePrefetch(_Counting(sleep=data_s), mesh_lib.make_mesh(), depth=2)
  writer = metrics_lib.MetricsWriter('.', enabled=False, resume_step=0, num_train_steps=steps,
                                     global_batch_size=2)
  next(it)
  writer.start_timer(1)
  it.take_wait_seconds()
  for _ in range(steps - 1):
    next(it)
    time.sleep(step_s)  # the step
  timing = writer.write(steps, {}, 0.0, it.take_wait_seconds())
  want = data_s / (data_s + step_s)  # 0.25
  assert abs(timing['data_wait_fraction'] - want) < 0.08, timing


def test_warning_once_only_above_the_threshold_after_the_first_interval(monkeypatch):
  clock = [0.0]
  monkeypatch.setattr(metrics_lib.time, 'perf_counter', lambda: clock[0])
  warnings = []
  monkeypatch.setattr(metrics_lib.logging, 'warning', lambda msg, *a: warnings.append(msg % a))
  writer = metrics_lib.MetricsWriter('.', enabled=False, resume_step=0, num_train_steps=10,
                                     global_batch_size=2)
  writer.start_timer(1)
  fractions = []
  # (wait seconds in a 1 s interval): the first interval (start-up) is high but not warned on;
  # 10% exactly is not above; 50% warns; 90% later does not warn again.
  for step, wait in zip(range(2, 7), (0.8, 0.05, 0.1, 0.5, 0.9)):
    clock[0] += 1.0
    fractions.append(writer.write(step, {}, 0.0, wait)['data_wait_fraction'])
    assert len(warnings) == (1 if step >= 5 else 0), (step, warnings)
  np.testing.assert_allclose(fractions, [0.8, 0.05, 0.1, 0.5, 0.9])
  assert 'data.num_workers' in warnings[0] and 'prepare_videos' in warnings[0]
  assert 'steps up to 5' in warnings[0]
  # evaluation time is left out of the interval
  clock[0] += 3.0
  assert writer.write(7, {}, 2.0, 0.25)['data_wait_fraction'] == pytest.approx(0.25)
