"""The console of a CPU run: jax's note about the TPU backend it could not start is hidden, the
run's own lines and every warning are kept."""

import logging

from bat_jax.training import metrics
from tests import helpers_train as h


def _record(name: str, level: int, msg: str) -> logging.LogRecord:
  return logging.LogRecord(name, level, '/x/jax/_src/xla_bridge.py', 1, msg, None, None)


def test_filter_drops_only_the_missing_backend_info():
  keep = metrics._DropLibraryInfo().filter  # pylint: disable=protected-access
  tpu = "Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so"
  assert not keep(_record('jax._src.xla_bridge', logging.INFO, tpu))
  assert keep(_record('jax._src.xla_bridge', logging.WARNING, tpu))
  assert keep(_record('jax._src.xla_bridge', logging.INFO, 'Platform cpu is available'))
  assert keep(_record('absl', logging.INFO, tpu))


def test_train_py_on_cpu_does_not_print_the_missing_tpu(tmp_path):
  """As a new user runs it: no JAX_PLATFORMS, so jax tries the TPU first. The run stops at the
  device-count check, after the first device query (where jax logs the note)."""
  env = h.env_for(4)
  env.pop('JAX_PLATFORMS')
  proc = h.run([*h.train_cmd(str(tmp_path / 'run')), '--config.global_batch_size=6'], env,
               timeout=60)
  assert 'is not divisible by the device count 4' in proc.stderr, proc.stderr[-2000:]
  assert 'Unable to initialize backend' not in proc.stderr + proc.stdout
