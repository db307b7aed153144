"""What the training loop does when a run meets a fault (docs/reliability.md).

* non-finite steps (``NonFiniteGuard``): the train step skips the update (``steps.py``); the loop
  logs the step, counts it in ``metrics.jsonl`` (``nonfinite_steps``) and stops with
  ``NONFINITE_EXIT_CODE`` after ``config.max_nonfinite_steps`` consecutive ones;
* failed saves (``SaveFailures``): a checkpoint write that fails with an ``OSError`` (a full disk:
  ENOSPC, EFBIG) is logged, training goes on and the next interval tries again; after
  ``config.max_failed_saves`` consecutive failures the run stops with ``SAVE_FAILED_EXIT_CODE``;
* a step that cannot fit (``check_memory``): before the first step, the compiled train step's
  memory analysis is compared with the device's memory (host RAM on CPU).

``inject(step)`` is the test-only fault injector, driven by environment variables (never set in a
real run): ``BAT_JAX_TEST_NAN_FROM_STEP=k`` makes every batch from step ``k`` on NaN;
``BAT_JAX_TEST_FSIZE_AT_STEP=k:bytes`` sets ``RLIMIT_FSIZE`` to ``bytes`` before step ``k``, so
that larger file writes fail with EFBIG as on a full disk;
``BAT_JAX_TEST_SIGNAL_AT=<step>:<phase>:<KILL|TERM>`` makes the process send itself SIGKILL or
SIGTERM at a moment of update ``step`` (``signal_point``).
"""

from __future__ import annotations

import os
import resource
import signal
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np
from absl import logging
from jax._src import distributed  # the key-value store of jax.distributed (no public handle)

NONFINITE_EXIT_CODE = 3
SAVE_FAILED_EXIT_CODE = 4
PEER_LOST_EXIT_CODE = 5
DATA_WORKER_EXIT_CODE = 6
_WORKER_DIED = 'Worker process was terminated unexpectedly'  # grain's message
# How a collective that lost its peer fails: gloo (CPU), NCCL, the coordination service.
_PEER_LOST_MARKERS = ('Gloo', 'Connection reset', 'Connection closed', 'NCCL', 'UNAVAILABLE',
                      'heartbeat')
ANSWER_KEY = 'bat_jax/answered_after_peer_lost'  # jax.distributed key-value store directory
ANSWER_WAIT_S = 5.0  # how long survivors wait for each other's answer (silent_processes)
_NAN_ENV = 'BAT_JAX_TEST_NAN_FROM_STEP'
_FSIZE_ENV = 'BAT_JAX_TEST_FSIZE_AT_STEP'
_SIGNAL_ENV = 'BAT_JAX_TEST_SIGNAL_AT'
SIGNAL_PHASES = ('step', 'save', 'eval')


class RunAborted(RuntimeError):
  """The run stopped on a fault it cannot go past; ``exit_code`` is ``train.py``'s exit status."""

  exit_code = 1


class NonFiniteError(RunAborted):
  exit_code = NONFINITE_EXIT_CODE


class SaveFailedError(RunAborted):
  exit_code = SAVE_FAILED_EXIT_CODE


class MemoryBudgetError(RunAborted):
  exit_code = 1


class DataWorkerDied(RunAborted):
  exit_code = DATA_WORKER_EXIT_CODE


def data_worker_died(error: BaseException, last_good: str) -> DataWorkerDied | None:
  """``DataWorkerDied`` when ``error`` is grain's report of a worker process that died (e.g.
  SIGKILLed by the kernel's OOM killer), else None."""
  if _WORKER_DIED not in str(error):
    return None
  return DataWorkerDied(
      f'a data loader worker process died ({" ".join(str(error).split())[:200]}); exit code -9 '
      'is SIGKILL, usually the out-of-memory killer: lower config.data.num_workers or free host '
      f'memory, then run the same command to resume from {last_good} (the data order resumes '
      'with it).')


class NonFiniteGuard:
  """Counts non-finite steps: ``window`` since the last metrics line, ``consecutive`` in a row.
  Both are carried in the checkpoint (``state()``), so a resumed run logs what an uninterrupted
  one does."""

  def __init__(self, max_consecutive: int, saved: Mapping[str, int] | None = None):
    if max_consecutive <= 0:
      raise ValueError(f'config.max_nonfinite_steps={max_consecutive}; allowed: positive integers')
    self.max_consecutive = max_consecutive
    saved = saved or {}
    self.window = int(saved.get('window', 0))
    self.consecutive = int(saved.get('consecutive', 0))

  def state(self) -> dict[str, int]:
    return {'window': self.window, 'consecutive': self.consecutive}

  def update(self, step: int, metrics: Mapping[str, Any], last_good: str) -> bool:
    """``step`` (1-based, the update it would have been) ran; returns whether it was finite.
    Raises ``NonFiniteError`` naming ``last_good`` (the newest checkpoint) at the limit."""
    if bool(jax.device_get(metrics['finite'])):
      self.consecutive = 0
      return True
    self.window += 1
    self.consecutive += 1
    loss, grad_norm = (float(jax.device_get(metrics[k])) for k in ('loss', 'grad_norm'))
    logging.warning('step %d: non-finite loss %g or gradient norm %g (or parameters): update '
                    'skipped (%d in a row)', step, loss, grad_norm, self.consecutive)
    if self.consecutive >= self.max_consecutive:
      raise NonFiniteError(
          f'{self.consecutive} consecutive non-finite steps (the last: step {step}; '
          f'config.max_nonfinite_steps={self.max_consecutive}): the run diverged. The last good '
          f'checkpoint is {last_good}; lower config.base_learning_rate (or set '
          'config.grad_clip_norm) and run the same command to resume from it.')
    return False

  def take_window(self) -> int:
    n, self.window = self.window, 0
    return n


class SaveFailures:
  """Consecutive failed checkpoint saves; raises ``SaveFailedError`` at ``max_failed``."""

  def __init__(self, max_failed: int):
    if max_failed <= 0:
      raise ValueError(f'config.max_failed_saves={max_failed}; allowed: positive integers')
    self.max_failed = max_failed
    self.consecutive = 0
    self.total = 0

  def succeeded(self) -> None:
    self.consecutive = 0

  def failed(self, step: int, error: BaseException, last_good: str, final: bool = False) -> None:
    """Logs the failure; raises ``SaveFailedError`` at the limit, or when ``final`` (the run's
    last save: no later interval to retry at)."""
    self.consecutive += 1
    self.total += 1
    logging.error('checkpoint save of step %d failed (%d in a row): %s: %s. Training goes on; the '
                  'next save is at the next interval; the last saved checkpoint is %s.', step,
                  self.consecutive, type(error).__name__, error, last_good)
    if final or self.consecutive >= self.max_failed:
      raise SaveFailedError(
          f'{self.consecutive} consecutive checkpoint saves failed (the last: step {step}: '
          f'{type(error).__name__}: {error}; config.max_failed_saves={self.max_failed}). Free '
          f'disk space in the workdir and run the same command: it resumes from {last_good}.')


def silent_processes(client: Any, process_index: int, process_count: int,
                     wait_s: float = ANSWER_WAIT_S) -> list[int]:
  """After a collective failed: the indices of the processes that did not answer within
  ``wait_s`` seconds. Every survivor sets ``ANSWER_KEY/<its index>`` in jax.distributed's
  key-value store (``client``, held by the coordination service in process 0) and reads the
  others' keys; when the store itself cannot be reached, process 0 is the silent one."""
  try:
    client.key_value_set(f'{ANSWER_KEY}/{process_index}', '1', allow_overwrite=True)
    deadline = time.monotonic() + wait_s
    while True:
      answered = {int(key.rsplit('/', 1)[1]) for key, _ in client.key_value_dir_get(ANSWER_KEY)}
      silent = [i for i in range(process_count) if i not in answered]
      if not silent or time.monotonic() >= deadline:
        return silent
      time.sleep(0.1)
  except Exception:  # pylint: disable=broad-except  # the coordinator's store is gone
    return [0]


def peer_lost_message(error: BaseException, wait_s: float = ANSWER_WAIT_S) -> str | None:
  """For a multi-process run, the message ``train.py`` prints when ``error`` says a collective
  lost another process (it died, or its host did), naming the processes that stopped responding
  (:func:`silent_processes`); None otherwise."""
  text = ' '.join(str(error).split())
  if jax.process_count() == 1 or not any(m in text for m in _PEER_LOST_MARKERS):
    return None
  me, count = jax.process_index(), jax.process_count()
  silent = silent_processes(distributed.global_state.client, me, count, wait_s)
  who = (f'process {", ".join(map(str, silent))} stopped responding' if silent else
         'every process answered after the failure')
  return (f'process {me} of {count} lost contact with another process of this run: {who} '
          f'(no answer within {wait_s:g} s after the failed collective: {text[:300]}); that '
          'process or its host died. Checkpoints are intact: restart every process with the same '
          'command to resume from the newest one.')


def device_memory_bytes() -> tuple[int | None, str]:
  """``(bytes, what)``: the first local device's memory as the backend reports it
  (``memory_stats()['bytes_limit']``), else (CPU) the host's physical RAM."""
  device = jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit']), f'{device.device_kind} memory'
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES'), 'host RAM'
  except (ValueError, OSError, AttributeError):
    return None, 'unknown'


def step_memory_bytes(compiled: Any) -> int | None:
  """Peak bytes of one device for a compiled step (XLA's memory analysis: arguments + outputs
  not aliased to donated arguments + temporaries), or None when the backend does not say."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return None
  return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes
             - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)


def _gib(n: int) -> str:
  return f'{n / 2**30:.2f} GiB ({n} bytes)'


def check_memory(compiled: Any, limit_bytes: int = -1) -> None:
  """Raises ``MemoryBudgetError`` when the compiled train step needs more memory per device than
  ``limit_bytes`` (``config.device_memory_bytes``; -1: ``device_memory_bytes()``)."""
  need = step_memory_bytes(compiled)
  what = 'config.device_memory_bytes'
  if limit_bytes <= 0:
    limit_bytes, what = device_memory_bytes()
  if need is None or limit_bytes is None:
    logging.info('memory check skipped: the backend reports no memory analysis or size')
    return
  logging.info('train step needs %s per device; %s: %s', _gib(need), what, _gib(limit_bytes))
  if need > limit_bytes:
    raise MemoryBudgetError(
        f'the train step needs {_gib(need)} per device (XLA memory analysis) but {what} is '
        f'{_gib(limit_bytes)}: it cannot fit. Lower config.global_batch_size, set '
        'config.model.remat_stages (recompute activations), config.model.dtype="bfloat16", or '
        'run on more devices (the batch is split over them).')


def _from_env(name: str) -> str | None:
  value = os.environ.get(name)
  return value if value else None


def inject(step: int, batch: dict[str, np.ndarray],
           wait_for_saves: Callable[[], Any] = lambda: None) -> dict[str, np.ndarray]:
  """Test-only faults before step ``step`` (0-based) from the environment variables above; the
  batch, NaN-filled when asked. ``wait_for_saves`` lets the save in flight finish before the file
  size limit is set, so that the limit hits the next save only."""
  fsize = _from_env(_FSIZE_ENV)
  if fsize is not None:
    at, limit = (int(v) for v in fsize.split(':'))
    if step == at:
      wait_for_saves()
      resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(
          resource.RLIMIT_FSIZE)[1]))
  nan_from = _from_env(_NAN_ENV)
  if nan_from is not None and step >= int(nan_from):
    batch = {k: (np.full_like(v, np.nan) if np.issubdtype(np.asarray(v).dtype, np.floating)
                 else v) for k, v in batch.items()}
  return batch


def signal_point(phase: str, step: int, workdir: str) -> None:
  """Test-only: with ``BAT_JAX_TEST_SIGNAL_AT=<step>:<phase>:<KILL|TERM>``, sends this process the
  signal at ``phase`` of update ``step``: ``step`` after the update, ``save`` while the step's
  asynchronous checkpoint write is in flight, ``eval`` after the first batch of the step's
  evaluation. Once per workdir (a marker file ``signalled_<step>_<phase>``), so that the resumed
  run goes past the same moment."""
  wanted = _from_env(_SIGNAL_ENV)
  if wanted is None:
    return
  at, at_phase, name = wanted.split(':')
  if int(at) != step or at_phase != phase:
    return
  marker = os.path.join(workdir, f'signalled_{step}_{phase}')
  if os.path.exists(marker):
    return
  with open(marker, 'w') as f:
    f.write(name)
  os.kill(os.getpid(), getattr(signal, f'SIG{name}'))
