"""Device prefetch: the global batches of the next steps are on the devices while a step runs.

:class:`DevicePrefetch` wraps a host batch iterator (this process's rows, numpy) and yields
``(global batch, host batch)`` pairs. When it hands out batch ``n`` it has already drawn batches
``n + 1 .. n + depth`` and started their transfer (:func:`bat_jax.data.mesh.global_batch`; jax's
transfers and dispatch are asynchronous), so with the loop's asynchronous step dispatch the
host-to-device copies of the next batches overlap the running step. ``depth = 0`` draws each
batch when it is asked for (no overlap).

The draws run in the caller's thread, in order: the batches and their order are those of the
wrapped iterator. :meth:`get_state` is the wrapped iterator's state after the last batch *handed
out* (recorded right after that batch was drawn), not after the last batch drawn ahead, so a
checkpoint taken after step ``k`` resumes at batch ``k`` exactly as without prefetch.

``wait_seconds`` accumulates the time spent blocked in the wrapped iterator's ``next`` (the
stall figure: :func:`take_wait_seconds` returns and resets it).
"""

from __future__ import annotations

import collections
import time
from typing import Any, Iterator

import jax
from jax.sharding import Mesh

from bat_jax.data import mesh as mesh_lib

__all__ = ['DevicePrefetch', 'DEFAULT_DEPTH']

DEFAULT_DEPTH = 2


class DevicePrefetch:
  """``(global batch, host batch)`` pairs ``depth`` batches ahead (module docstring).

  Wrap the iterator after restoring its state. ``limit``: draw at most this many batches (a
  training run's remaining steps: nothing is decoded past the last step).
  """

  def __init__(self, iterator: Any, mesh: Mesh, *, depth: int = DEFAULT_DEPTH,
               limit: int | None = None):
    if depth < 0:
      raise ValueError(f'config.device_prefetch={depth}; allowed: >= 0 (0: off)')
    self._it: Iterator[Any] = iter(iterator)
    self._source = iterator
    self._mesh, self._depth, self._limit = mesh, int(depth), limit
    self._queue: collections.deque = collections.deque()
    self._drawn = 0
    self._exhausted = False
    self._has_state = hasattr(iterator, 'get_state')
    self._state: Any = iterator.get_state() if self._has_state else None
    self.wait_seconds = 0.0

  def _draw(self) -> None:
    if self._exhausted or (self._limit is not None and self._drawn >= self._limit):
      self._exhausted = True
      return
    t0 = time.perf_counter()
    try:
      host = next(self._it)
    except StopIteration:
      self._exhausted = True
      return
    finally:
      self.wait_seconds += time.perf_counter() - t0
    self._drawn += 1
    state = self._source.get_state() if self._has_state else None
    device = mesh_lib.global_batch(host, self._mesh)
    self._queue.append((device, host, state))

  def __iter__(self) -> DevicePrefetch:
    return self

  def __next__(self) -> tuple[dict[str, jax.Array], dict[str, Any]]:
    while len(self._queue) <= self._depth and not self._exhausted:
      self._draw()
    if not self._queue:
      raise StopIteration
    device, host, self._state = self._queue.popleft()
    return device, host

  def get_state(self) -> Any:
    """The wrapped iterator's state after the last batch handed out (before any: its state
    when wrapped)."""
    return self._state

  def take_wait_seconds(self) -> float:
    """Seconds blocked in the wrapped iterator's ``next`` since the last call."""
    out, self.wait_seconds = self.wait_seconds, 0.0
    return out
