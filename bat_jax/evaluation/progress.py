"""A progress bar for long evaluations (``evaluate.py``)."""

from __future__ import annotations

import sys
import time

import jax


class Progress:
  """A progress bar with rate and ETA on stderr (process 0 only): redrawn in place on a terminal,
  one line per ~10% otherwise (logs)."""

  def __init__(self, total: int, label: str, enabled: bool = True):
    self.total, self.label, self.done = max(int(total), 1), label, 0
    self.enabled = enabled and jax.process_index() == 0
    self.tty = self.enabled and sys.stderr.isatty()
    self.t0 = time.perf_counter()
    self._last_draw = 0.0
    self._last_decile = -1

  @staticmethod
  def _fmt(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'

  def update(self, n: int = 1) -> None:
    self.done += n
    if not self.enabled:
      return
    now = time.perf_counter()
    decile = 10 * self.done // self.total
    last = self.done >= self.total
    if self.tty and not last and now - self._last_draw < 0.2:
      return
    if not self.tty and not last and decile == self._last_decile:
      return
    self._last_draw, self._last_decile = now, decile
    elapsed = now - self.t0
    rate = self.done / elapsed if elapsed > 0 else 0.0
    eta = (self.total - self.done) / rate if rate > 0 else 0.0
    filled = int(30 * min(self.done, self.total) / self.total)
    line = (f'{self.label} [{"#" * filled}{"." * (30 - filled)}] {self.done}/{self.total} '
            f'batches, {rate:.2f} batches/s, elapsed {self._fmt(elapsed)}, ETA {self._fmt(eta)}')
    sys.stderr.write(('\r' + line) if self.tty else line + '\n')
    sys.stderr.flush()

  def close(self) -> None:
    if self.tty:
      sys.stderr.write('\n')
      sys.stderr.flush()
