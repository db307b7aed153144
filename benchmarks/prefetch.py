"""Device prefetch A/B: train steps per second with ``config.device_prefetch`` 0 against 2.

    python benchmarks/prefetch.py [--rounds 3] [--steps 30] [--kind video]

The trainer's step (``bat_jax.training.steps.make_train_step``) of the tiny test model
(``tests/helpers_train.py``: ``video`` a width-4 C2D-ResNet-50 on 4 x 32 x 32 clips, ``image`` a
width-4 ResNet-18 on 32 x 32 images) on its synthetic data set, fed through
:class:`bat_jax.data.prefetch.DevicePrefetch` with depth 0 and 2 in interleaved rounds (the
ratio is the median of per-round ratios). Also prints ``data_wait_fraction`` of each run (the
time blocked in the iterator's ``next`` over the wall time). On a CPU "device" the transfer is
a host memory copy, so little is expected; on a GPU the copy runs over PCIe while a step runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bat_jax.data import mesh as mesh_lib  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.data import synthetic  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.data.prefetch import DevicePrefetch  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.models.registry import build_model  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.training import state as state_lib  # noqa: E402  pylint: disable=g-import-not-at-top
from bat_jax.training import steps  # noqa: E402  pylint: disable=g-import-not-at-top
from tests import helpers_train  # noqa: E402  pylint: disable=g-import-not-at-top


def run(config, step, state, mesh, depth: int, num_steps: int) -> tuple[float, float]:
  """(steps/s after the first step, data_wait_fraction) of ``num_steps`` steps from a copy of
  ``state``."""
  state = jax.tree.map(jnp.copy, state)  # the step donates its state
  source = synthetic.make_train_iterator(config.data, config.global_batch_size, 0, 1, 0)
  it = DevicePrefetch(source, mesh, depth=depth, limit=num_steps + 1)
  batch, _ = next(it)
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  it.take_wait_seconds()
  t0 = time.perf_counter()
  for batch, _ in it:
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  wall = time.perf_counter() - t0
  return num_steps / wall, it.take_wait_seconds() / wall


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--steps', type=int, default=30)
  p.add_argument('--kind', default='video', choices=('video', 'image'))
  a = p.parse_args(argv)
  config = helpers_train.get_config(a.kind)
  mesh = mesh_lib.make_mesh()
  model = build_model(config.model)
  tx = optax.sgd(0.01, momentum=0.9)
  step = steps.make_train_step(model, tx, mesh)
  state = state_lib.create_train_state(model, tx, 0, state_lib.init_input_shape(config.model),
                                       mesh)
  rates: dict[int, list[float]] = {0: [], 2: []}
  waits: dict[int, list[float]] = {0: [], 2: []}
  for _ in range(a.rounds):
    for depth in (0, 2):
      r, w = run(config, step, state, mesh, depth, a.steps)
      rates[depth].append(r)
      waits[depth].append(w)
  ratio = float(np.median(np.asarray(rates[2]) / np.asarray(rates[0])))
  print(f'{a.kind}, {a.rounds} rounds x {a.steps} steps, batch {config.global_batch_size}, '
        f'{jax.device_count()} {jax.default_backend()} device(s), load average '
        f'{os.getloadavg()[0]:.1f}')
  for depth in (0, 2):
    print(f'  device_prefetch {depth}: {np.median(rates[depth]):.2f} steps/s, '
          f'data_wait_fraction {np.median(waits[depth]):.3f}')
  print(f'  prefetch 2 / 0: {ratio:.3f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
