"""Stopping at preemption: SIGTERM (single process) or jax's preemption sync point (multi-process)
makes the loop save the current step and stop; ``maybe_pause`` is the tests' hook for stopping a
run at a known step."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import jax
from absl import logging
from jax.experimental import multihost_utils

from bat_jax.training.checkpoint import Checkpointer

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: "stopped early, resume me"
_PAUSE_ENV = 'BAT_JAX_TEST_PAUSE_AT_STEP'  # tests only, see maybe_pause


class PreemptionWatcher:
  """Single process: a SIGTERM handler sets a flag. Multi-process: jax's preemption sync manager
  (which catches SIGTERM itself) says at which step every process stops together."""

  def __init__(self) -> None:
    self.signalled = False
    self._multi = jax.process_count() > 1
    self._previous = None
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_sigterm)

  def _on_sigterm(self, signum: int, frame: Any) -> None:
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint at the end of the current step')
    self.signalled = True

  def reached(self, step: int) -> bool:
    if self._multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.signalled

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def maybe_pause(step: int, workdir: str, ckpt: Checkpointer, watcher: PreemptionWatcher) -> None:
  """Tests only: with ``BAT_JAX_TEST_PAUSE_AT_STEP=k``, after step k is logged and earlier
  checkpoints are on disk, write ``WORKDIR/paused_at_k`` and wait (until SIGTERM, a kill, or a
  file ``WORKDIR/resume_at_k``, which lets the run go on). A second run over the same workdir
  (the marker exists) does not pause, so a test can restart with the identical command."""
  if os.environ.get(_PAUSE_ENV) != str(step) or jax.process_count() > 1:
    return
  marker = os.path.join(workdir, f'paused_at_{step}')
  if os.path.exists(marker):
    return
  ckpt.wait_until_finished()
  with open(marker, 'w') as f:
    f.write(str(os.getpid()))
  resume = os.path.join(workdir, f'resume_at_{step}')
  while not watcher.signalled and not os.path.exists(resume):
    time.sleep(0.02)
