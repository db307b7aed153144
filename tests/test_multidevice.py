"""Data parallelism: the same run on 1 device, 8 simulated devices, 1 process x 4 devices and
2 processes x 2 devices (``jax.distributed`` over gloo) gives the same losses; each process reads
only its own rows of every global batch. All runs are ``train.py`` subprocesses (the device count
of a JAX process is fixed at start-up)."""

import json
import os
import subprocess

import numpy as np
import pytest

from tests import helpers_train as h

OPTS = ['--config.num_train_steps=3', '--config.log_every_steps=1',
        '--config.eval_every_steps=0', '--config.eval_every_epochs=0',
        '--config.checkpoint_every_steps=0']


def _losses(workdir):
  lines = h.metrics_lines(workdir)
  assert [m['step'] for m in lines] == [1, 2, 3]
  return np.array([m['train_loss'] for m in lines])


def test_eight_devices_match_one_device(tmp_path, cache_dir):
  """Width-4 ResNet-18 + a BAT block (channel dropout on), 16 images of 32x32, 3 SGD steps."""
  runs = {}
  for devices in (1, 8):
    workdir = str(tmp_path / f'd{devices}')
    proc = h.run_ok(h.train_cmd(workdir, 'image_bat', OPTS), h.env_for(devices, cache_dir))
    assert f'{devices} devices (1 processes)' in proc.stderr
    runs[devices] = workdir
  one, eight = _losses(runs[1]), _losses(runs[8])
  assert not np.allclose(one[0], one[1:])  # the steps did change the model
  np.testing.assert_allclose(eight, one, rtol=0, atol=1e-5)
  final = {d: h.metrics_lines(w)[-1] for d, w in runs.items()}
  assert final[8]['eval_loss'] == pytest.approx(final[1]['eval_loss'], abs=1e-4)
  a, b = h.flat(h.load_params(runs[1], 3)), h.flat(h.load_params(runs[8], 3))
  for name in a:
    np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-5, err_msg=name)


def _reads(trace_dir, process):
  with open(os.path.join(trace_dir, f'reads_process{process}.jsonl')) as f:
    return [json.loads(line) for line in f]


def test_two_processes_match_one_process_and_read_their_own_shards(tmp_path, cache_dir):
  # 2 processes x 2 CPU devices, coordinator on a free local port.
  multi, multi_trace = str(tmp_path / 'multi'), tmp_path / 'multi_trace'
  multi_trace.mkdir()
  port = h.free_port()
  procs, logs = [], []
  for pid in range(2):
    env = h.env_for(2, cache_dir, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
                    JAX_NUM_PROCESSES='2', JAX_PROCESS_ID=str(pid))
    logs.append(str(tmp_path / f'p{pid}.log'))
    procs.append(h.start(h.train_cmd(multi, overrides=OPTS + [
        f'--config.data.trace_dir={multi_trace}']), env, logs[-1]))
  try:
    codes = [p.wait(timeout=240) for p in procs]
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    raise
  for code, log in zip(codes, logs):
    assert code == 0, open(log).read()[-5000:]
  assert 'process 1 of 2, 2 local / 4 global devices' in open(logs[1]).read()

  # 1 process x 4 devices.
  single, single_trace = str(tmp_path / 'single'), tmp_path / 'single_trace'
  single_trace.mkdir()
  h.run_ok(h.train_cmd(single, overrides=OPTS + [f'--config.data.trace_dir={single_trace}']),
           h.env_for(4, cache_dir))

  np.testing.assert_allclose(_losses(multi), _losses(single), rtol=0, atol=1e-5)
  assert h.metrics_lines(multi)[-1]['eval_top1'] == h.metrics_lines(single)[-1]['eval_top1']

  # Shards: process p generated exactly rows [8p, 8p + 8) of each global train batch of 16,
  # and its part of each eval batch; nothing else.
  whole = _reads(single_trace, 0)
  parts = [_reads(multi_trace, p) for p in range(2)]
  for split in ('train', 'eval'):
    full = [r for r in whole if r['split'] == split]
    mine = [[r for r in part if r['split'] == split] for part in parts]
    assert len(mine[0]) == len(mine[1]) == len(full) > 0
    for b, rows in enumerate(full):
      if split == 'train':
        assert mine[0][b]['indices'] == rows['indices'][:8]
        assert mine[1][b]['indices'] == rows['indices'][8:]
      assert set(mine[0][b]['indices']).isdisjoint(mine[1][b]['indices'])
      assert sorted(mine[0][b]['indices'] + mine[1][b]['indices']) == sorted(rows['indices'])
  evals = [i for part in parts for r in part if r['split'] == 'eval' for i in r['indices']]
  assert sorted(evals) == list(range(20))  # the eval set once, padding excluded

  # Each process checkpointed its own data-iterator state.
  data_dir = os.path.join(multi, 'checkpoints', '3', 'data')
  for pid in range(2):
    with open(os.path.join(data_dir, f'process_{pid}-of-2.json')) as f:
      assert json.load(f)['next_batch'] == 3
