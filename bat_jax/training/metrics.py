"""Metrics: ``WORKDIR/metrics.jsonl``, TensorBoard event files (tensorboardX) and console lines.

``metrics.jsonl`` has one JSON object per logged step: ``step`` (updates applied), ``train_loss``
and ``train_top1`` (means over the steps since the previous line), ``learning_rate`` (of the
step's update), and ``eval_*`` when the step evaluated. It holds no wall-clock numbers, so a
resumed run's file is byte-identical to an uninterrupted one: on resume, lines after the restored
step are dropped (they are recomputed) and TensorBoard purges its later events (``purge_step``).
Timing (steps/s, examples/s, ETA, ``data_wait_fraction``) goes to the console and TensorBoard
only. Only process 0 writes.

``data_wait_fraction``: the seconds the loop was blocked waiting for its next batch (in the data
iterator's ``next``, :class:`bat_jax.data.prefetch.DevicePrefetch`) divided by the wall time of
the interval since the previous line (evaluation excluded). When an interval other than the
run's first (which includes starting the data workers and filling their buffers) is above
:data:`DATA_WAIT_WARNING` (10%), the run logs one warning, once, suggesting more
``data.num_workers`` or ``python -m bat_jax.data.prepare_videos``.
"""

from __future__ import annotations

import json
import logging as logging_std
import math
import os
import time
from typing import Any, Mapping

from absl import logging

METRICS_FILE = 'metrics.jsonl'
DATA_WAIT_WARNING = 0.1  # data_wait_fraction above which the run warns (once)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The parseable lines of ``metrics.jsonl`` (a line cut by a crash is skipped)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  out = []
  with open(path) as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        pass
  return out


def _fmt_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class MetricsWriter:
  """Writes metric lines; ``resume_step`` (the restored checkpoint's step, or 0) trims what a
  previous, interrupted run logged after it."""

  def __init__(self, workdir: str, *, enabled: bool, resume_step: int, num_train_steps: int,
               global_batch_size: int):
    self._enabled = enabled
    self._num_train_steps = num_train_steps
    self._global_batch_size = global_batch_size
    self._path = os.path.join(workdir, METRICS_FILE)
    self._tb = None
    self._last_time: float | None = None
    self._last_step = resume_step
    self._timed_intervals = 0
    self._warned_data_wait = False
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    kept = [m for m in read_metrics(workdir) if m.get('step', math.inf) <= resume_step]
    with open(self._path, 'w') as f:
      for m in kept:
        f.write(json.dumps(m) + '\n')
    self._file = open(self._path, 'a')
    from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
    self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'),
                             purge_step=resume_step + 1 if resume_step else None)

  def start_timer(self, step: int) -> None:
    """Call when ``step`` is done (the first step of a run, compiled): rates exclude start-up."""
    self._last_time, self._last_step = time.perf_counter(), step

  def write(self, step: int, scalars: Mapping[str, Any], excluded_seconds: float = 0.0,
            data_wait_seconds: float | None = None) -> dict[str, float]:
    """One line for ``step``: the JSONL record, TensorBoard scalars and a console line.
    ``excluded_seconds`` (evaluation time) do not count in steps/s; ``data_wait_seconds`` (time
    blocked on the data iterator in the interval) gives ``data_wait_fraction``. Returns the
    timing figures of the line (``steps_per_sec``, ``examples_per_sec``,
    ``data_wait_fraction``; empty before the timer starts)."""
    scalars = {k: float(v) for k, v in scalars.items()}
    now = time.perf_counter()
    if self._last_time is not None:
      self._last_time += excluded_seconds
    timing = {}
    if self._last_time is not None and step > self._last_step:
      steps_per_sec = (step - self._last_step) / max(now - self._last_time, 1e-9)
      timing = {'steps_per_sec': steps_per_sec,
                'examples_per_sec': steps_per_sec * self._global_batch_size}
      if data_wait_seconds is not None:
        timing['data_wait_fraction'] = min(data_wait_seconds / max(now - self._last_time, 1e-9),
                                           1.0)
        self._check_data_wait(step, timing['data_wait_fraction'])
      self._timed_intervals += 1
      eta = (self._num_train_steps - step) / steps_per_sec
    else:
      eta = math.inf
    if self._last_time is not None:
      self._last_time, self._last_step = now, step
    parts = [f'{k} {v:.4g}' for k, v in scalars.items()]
    if timing:
      parts += [f"{timing['steps_per_sec']:.2f} steps/s",
                f"{timing['examples_per_sec']:.1f} examples/s"]
    if 'data_wait_fraction' in timing:
      parts.append(f"data_wait_fraction {timing['data_wait_fraction']:.3f}")
    logging.info('step %d/%d: %s, ETA %s', step, self._num_train_steps, ', '.join(parts),
                 _fmt_duration(eta))
    if not self._enabled:
      return timing
    self._file.write(json.dumps({'step': int(step), **scalars}) + '\n')
    self._file.flush()
    for k, v in {**scalars, **timing}.items():
      self._tb.add_scalar(k, v, step)
    self._tb.flush()
    return timing

  def _check_data_wait(self, step: int, fraction: float) -> None:
    """The one warning of a run whose input pipeline cannot keep up (module docstring)."""
    if self._warned_data_wait or self._timed_intervals == 0 or fraction <= DATA_WAIT_WARNING:
      return
    self._warned_data_wait = True
    logging.warning(
        'the input pipeline is too slow: the steps up to %d waited for data %.0f%% of the time '
        '(data_wait_fraction %.2f > %.2f). Give it more CPU: raise config.data.num_workers, or '
        're-encode the videos with short keyframe intervals (python -m '
        'bat_jax.data.prepare_videos, docs/data.md). This warning is shown once.', step,
        100 * fraction, fraction, DATA_WAIT_WARNING)

  def close(self) -> None:
    if self._enabled:
      self._file.close()
      self._tb.close()


# jax logs at INFO, at the first device query, each platform it tried and could not start
# (``jax._src.xla_bridge``: "Unable to initialize backend 'tpu': ... libtpu.so ..."): on a CPU or
# GPU machine that is the run's first line and says nothing about the run. A platform the user
# asks for (JAX_PLATFORMS) that fails raises instead, so nothing is hidden there.
_BACKEND_LOGGER, _MISSING_BACKEND = 'jax._src.xla_bridge', 'Unable to initialize backend'


class _DropLibraryInfo(logging_std.Filter):
  def filter(self, record: logging_std.LogRecord) -> bool:
    if record.levelno >= logging_std.WARNING:
      return True
    if record.name == _BACKEND_LOGGER and record.getMessage().startswith(_MISSING_BACKEND):
      return False
    return not any(f'{os.sep}{lib}{os.sep}' in record.pathname for lib in ('orbax', 'tensorstore'))


def quiet_library_logs() -> None:
  """Hides Orbax's INFO lines (several per save) and jax's INFO note about each platform it
  could not start (a missing TPU on every CPU machine), so the console shows the training lines."""
  logging.get_absl_handler().addFilter(_DropLibraryInfo())
