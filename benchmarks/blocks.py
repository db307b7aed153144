r"""Each non-local block alone: time, multiply-adds and memory against resolution and clip length.

    python benchmarks/blocks.py --quick     # D=512, H=W in {14, 28, 56}, T in {4, 8}: a few minutes
    python benchmarks/blocks.py             # the full grid: D in {512, 1024}, H=W in {14..112},
                                            # T in {4, 8, 16, 32} (hours on 2 cores)
    python benchmarks/blocks.py --dims 1024 --sizes 14,28 --frames 4 --repeats 7

Blocks (batch 1, input ``(1, T, H, W, D)``, float32, training mode: BN batch statistics,
dropout on):

* ``none``: the reference the ratios are taken to — a ResNet bottleneck residual block at the same
  shape (``D -> D/4 -> D``, what the backbone spends per residual block there; a literal identity
  would cost nothing);
* ``bat2d``: BAT-Block, k = 8 groups, s = 7 (the video recipes' 2D block);
* ``bat3d``: 3D BAT-Block, k = 8, tk = 4, ts = 4 (``temporal_size=8`` from T >= 16, Table 9);
* ``nl_<instantiation>``: Wang et al.'s non-local block, spacetime, ``(1, 2, 2)`` subsampling of
  phi and g, for ``embedded_gaussian``, ``dot_product``, ``gaussian``, ``concatenation``;
* ``chebysnl``: the ChebySNL block (order 2, symmetric-normalised affinity over all T*H*W).

Per row: forward time and forward+backward time (gradients of the parameters and the input;
``jax.jit``, ``block_until_ready``, median of ``--repeats`` interleaved rounds after a warm-up
call), multiply-adds (``bat_jax.tools.complexity``, from the jaxpr), the Table 1 formula
(``bat_cvpr2020.md`` §3.5) evaluated at the row's shape, XLA's compiled peak memory of the
forward+backward (``memory_analysis()``: temp + arguments + outputs), and ratios to ``none`` at the
same shape. Configurations whose compiled forward+backward peak exceeds ``--max-gib`` (or whose
estimated N^2 affinity — N = T*H*W positions, N/4 keys when subsampled — or activations exceed it
before compiling) are listed as skipped rows with the size, not dropped silently.

Writes ``benchmarks/results/blocks[_quick].json`` (after every shape, so an interrupted run keeps
what it measured) and ``docs/images/blocks_scaling.png``; prints the table last.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bat_jax.blocks.bat import BATBlock  # noqa: E402
from bat_jax.blocks.nonlocal_ import NonLocalBlock  # noqa: E402
from bat_jax.blocks.spectral import SpectralNonLocalBlock  # noqa: E402
from bat_jax.models.resnet import Bottleneck  # noqa: E402
from bat_jax.tools import complexity  # noqa: E402
from bat_jax.training import steps  # noqa: E402

NL_INSTANTIATIONS = ('embedded_gaussian', 'dot_product', 'gaussian', 'concatenation')
BLOCK_NAMES = ('none', 'bat2d', 'bat3d') + tuple(f'nl_{i}' for i in NL_INSTANTIATIONS) + (
    'chebysnl',)


def make_block(name: str, d: int, t: int) -> Any:
  if name == 'none':
    return Bottleneck(d // 4)
  if name == 'bat2d':
    return BATBlock(groups=8)
  if name == 'bat3d':
    return BATBlock(groups=8, temporal_groups=4, temporal_size=8 if t >= 16 else 4)
  if name.startswith('nl_'):
    return NonLocalBlock(instantiation=name[3:], mode='spacetime', subsample=True)
  if name == 'chebysnl':
    return SpectralNonLocalBlock()
  raise ValueError(name)


def table1_gflops(name: str, d: int, t: int, hw: int) -> float | None:
  """``bat_cvpr2020.md`` Table 1 (its "FLOPs" are multiply-adds), with ``C`` the block's input
  channels, ``s = 7``, ``k = C' = 8``, and ``HW -> T*H*W`` for clips.

  NL: ``2 C^2 THW + C (THW)^2`` (the table's block without subsampling; ours pools keys and values
  (1, 2, 2), which divides the second term by 4 — shown in the MACs column).
  BAT: ``5/4 C^2 THW + 1/2 C THW (H + W) + 1/2 C C' THW + 2 C' k s^3`` (2D; the dense H x H, W x W
  transform — ours is block-based, ``1/2 C THW (n_h + n_w)``).
  """
  c, n = d, t * hw * hw
  if name.startswith('nl_'):
    return (2 * c * c * n + c * n * n) / 1e9
  if name in ('bat2d', 'bat3d'):
    k, s = 8, 7
    return (1.25 * c * c * n + 0.5 * c * n * (2 * hw) + 0.5 * c * k * n + 2 * k * k * s**3) / 1e9
  return None


def skip_reason(name: str, d: int, t: int, hw: int, max_gib: float) -> str:
  """Why a configuration is not run, or ''. Estimates: the f32 N x Np affinity is held ~3 times
  through forward+backward (logits, softmax, its gradient); every block keeps ~10 activation
  tensors of the input's size."""
  n = t * hw * hw
  act_gib = 10 * 4 * n * d / common.GIB
  if name.startswith('nl_') or name == 'chebysnl':
    keys = n // 4 if name.startswith('nl_') else n
    aff_gib = 4 * n * keys / common.GIB
    if 3 * aff_gib + act_gib > max_gib:
      return (f'skipped: N^2 affinity = {aff_gib:.1f} GiB (N = {n} positions x {keys} keys, f32; '
              f'~{3 * aff_gib + act_gib:.0f} GiB with its gradient)')
  if act_gib > max_gib:
    return f'skipped: activations ~{act_gib:.0f} GiB'
  return ''


class OverBudget(Exception):
  """The compiled program would need more memory than ``--max-gib``."""


class Bench:
  """One block at one shape: compiled forward and forward+backward, MACs and memory."""

  def __init__(self, name: str, d: int, t: int, hw: int, max_gib: float):
    self.name = name
    self.module = make_block(name, d, t)
    shape = (1, t, hw, hw, d)
    self.x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
    # The blocks' parameters do not depend on H, W: initialise at 14x14 (init runs eagerly).
    variables = self.module.init({'params': jax.random.key(1)},
                                 jnp.zeros((1, t, min(hw, 14), min(hw, 14), d)), train=False)
    self.params, self.stats = variables['params'], variables.get('batch_stats', {})
    module = self.module
    rng = jax.random.key(2)

    def forward(params, stats, x):
      y, updates = module.apply({'params': params, 'batch_stats': stats}, x, train=True,
                                rngs={'dropout': rng}, mutable=['batch_stats'])
      return y, updates

    def loss(params, stats, x):
      y, _ = forward(params, stats, x)
      return jnp.sum(y.astype(jnp.float32) * 1e-3)

    options = getattr(steps, 'compiler_options', dict)()  # what the trainer's steps use
    self.fwd = jax.jit(forward, compiler_options=options)
    self.fwd_bwd = jax.jit(jax.grad(loss, argnums=(0, 2)), compiler_options=options)
    args = (self.params, self.stats, self.x)
    t0 = time.perf_counter()
    self.mem_fwd = common.memory_stats(self.fwd.lower(*args).compile())
    self.mem_fwd_bwd = common.memory_stats(self.fwd_bwd.lower(*args).compile())
    self.compile_s = time.perf_counter() - t0
    peak = max(self.mem_fwd.get('peak_gib', 0), self.mem_fwd_bwd.get('peak_gib', 0))
    if peak > max_gib:
      raise OverBudget(f'skipped: compiled peak {peak:.1f} GiB > --max-gib {max_gib}')
    table = complexity.macs_table(
        lambda v, x: module.apply(v, x, train=True, rngs={'dropout': rng},
                                  mutable=['batch_stats']), variables, self.x)
    self.gmacs = sum(table.values()) / 1e9
    self.gmacs_matmul = sum(v for (s, p), v in table.items() if p == 'dot_general') / 1e9
    self.params_count = complexity.count_params(self.params)

  def run_fwd(self) -> None:
    jax.block_until_ready(self.fwd(self.params, self.stats, self.x))

  def run_fwd_bwd(self) -> None:
    jax.block_until_ready(self.fwd_bwd(self.params, self.stats, self.x))


def run_shape(d: int, t: int, hw: int, names: list[str], repeats: int, max_gib: float
              ) -> list[dict[str, Any]]:
  rows, benches = [], {}
  for name in names:
    row = {'block': name, 'D': d, 'T': t, 'HW': hw, 'positions': t * hw * hw,
           'table1_gflops': table1_gflops(name, d, t, hw)}
    reason = skip_reason(name, d, t, hw, max_gib)
    if reason:
      row['skipped'] = reason
      print(f'[blocks] D={d} T={t} {hw}x{hw} {name}: {reason}', flush=True)
    else:
      try:
        benches[name] = Bench(name, d, t, hw, max_gib)
      except OverBudget as e:
        row['skipped'] = str(e)
        print(f'[blocks] D={d} T={t} {hw}x{hw} {name}: {row["skipped"]}', flush=True)
      except Exception as e:  # pylint: disable=broad-except  # e.g. out of memory
        row['skipped'] = f'failed: {type(e).__name__}: {str(e)[:120]}'
        print(f'[blocks] D={d} T={t} {hw}x{hw} {name}: {row["skipped"]}', flush=True)
    rows.append(row)
  fns = {}
  for name, b in benches.items():
    fns[f'{name}/fwd'] = b.run_fwd
    fns[f'{name}/fwd_bwd'] = b.run_fwd_bwd
  times = common.interleaved_times(fns, repeats, warmup=1) if fns else {}
  for row in rows:
    b = benches.get(row['block'])
    if b is None:
      continue
    row.update(params=b.params_count, gmacs=b.gmacs, gmacs_matmul=b.gmacs_matmul,
               fwd_ms=1e3 * common.median(times[f'{b.name}/fwd']),
               fwd_bwd_ms=1e3 * common.median(times[f'{b.name}/fwd_bwd']),
               fwd_times=times[f'{b.name}/fwd'], fwd_bwd_times=times[f'{b.name}/fwd_bwd'],
               peak_fwd_gib=b.mem_fwd.get('peak_gib'),
               peak_fwd_bwd_gib=b.mem_fwd_bwd.get('peak_gib'), compile_s=b.compile_s)
    if 'none' in benches:
      ref = benches['none']
      row['fwd_ratio'] = common.paired_ratio(times[f'{b.name}/fwd'], times['none/fwd'])
      row['fwd_bwd_ratio'] = common.paired_ratio(times[f'{b.name}/fwd_bwd'],
                                                 times['none/fwd_bwd'])
      row['gmacs_ratio'] = b.gmacs / ref.gmacs
    print(f"[blocks] D={d} T={t} {hw}x{hw} {row['block']:>22}: fwd {row['fwd_ms']:8.1f} ms, "
          f"fwd+bwd {row['fwd_bwd_ms']:8.1f} ms, {row['gmacs']:7.2f} GMACs, "
          f"peak {row['peak_fwd_bwd_gib']:.2f} GiB", flush=True)
  del benches
  return rows


def plot(result: dict[str, Any], path: str) -> None:
  plt = common.setup_matplotlib()
  rows = [r for r in result['rows'] if 'fwd_bwd_ms' in r]
  dims = sorted({r['D'] for r in rows})
  fig, axes = plt.subplots(len(dims), 2, figsize=(12, 4.2 * len(dims)), squeeze=False)
  for i, d in enumerate(dims):
    for j, (key, label) in enumerate((('fwd_bwd_ms', 'forward + backward ms'),
                                      ('gmacs', 'GMACs (forward, from the jaxpr)'))):
      ax = axes[i][j]
      for name in BLOCK_NAMES:
        pts = sorted((r['positions'], r[key]) for r in rows if r['D'] == d and r['block'] == name)
        if pts:
          ax.plot(*zip(*pts), marker='o', ms=3, label=name,
                  ls='--' if name == 'none' else '-')
      ax.set_xscale('log')
      ax.set_yscale('log')
      ax.set_xlabel('positions T*H*W (batch 1)')
      ax.set_ylabel(label)
      ax.set_title(f'D = {d}: {label}')
      ax.grid(True, which='both', alpha=0.3)
      if j == 0:
        ax.legend(fontsize=7)
  fig.suptitle(f"{result['machine']['cpu']}, {result['machine']['nproc']} cores; "
               "'none' = a bottleneck residual block at the same shape", fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def table(rows: list[dict[str, Any]]) -> str:
  shown = []
  for r in rows:
    r = dict(r)
    r['shape'] = f"{r['T']}x{r['HW']}^2"
    if 'skipped' in r:
      r['fwd_ms'] = r['skipped']
    shown.append(r)
  return common.format_table(shown, [
      ('D', 'D', ''), ('shape', 'T x H x W', ''), ('block', 'block', ''),
      ('fwd_ms', 'fwd ms', '.1f'), ('fwd_bwd_ms', 'fwd+bwd ms', '.1f'),
      ('fwd_ratio', 'fwd / none', '.2f'), ('fwd_bwd_ratio', 'fwd+bwd / none', '.2f'),
      ('gmacs', 'GMACs', '.3f'), ('gmacs_ratio', 'MACs / none', '.2f'),
      ('table1_gflops', 'Table 1 formula G', '.3f'),
      ('peak_fwd_bwd_gib', 'peak GiB (fwd+bwd)', '.2f')])


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--quick', action='store_true',
                 help='D=512, H=W in {14, 28, 56}, T in {4, 8}; NL instantiations other than '
                      'embedded Gaussian only at 14x14; 3 repeats')
  p.add_argument('--dims', default='512,1024')
  p.add_argument('--sizes', default='14,28,56,112')
  p.add_argument('--frames', default='4,8,16,32')
  p.add_argument('--blocks', default=','.join(BLOCK_NAMES))
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--max-gib', type=float, default=8.0,
                 help='skip configurations whose compiled peak (or pre-compile estimate) is '
                      'above this many GiB')
  p.add_argument('--json', default='')
  p.add_argument('--plot', default=os.path.join(common.IMAGES_DIR, 'blocks_scaling.png'))
  a = p.parse_args(argv)
  dims = [int(v) for v in a.dims.split(',')]
  sizes = [int(v) for v in a.sizes.split(',')]
  frames = [int(v) for v in a.frames.split(',')]
  names = a.blocks.split(',')
  repeats = a.repeats
  if a.quick:
    dims, sizes, frames = [512], [14, 28, 56], [4, 8]
    repeats = 3 if a.repeats == 5 else a.repeats
  machine = common.machine_info()
  print(f"machine: {machine['cpu']}, nproc {machine['nproc']}, load "
        f"{machine['load_average_start']:.2f}", flush=True)
  rows: list[dict[str, Any]] = []
  result = {'args': {**vars(a), 'repeats': repeats, 'dims': dims, 'sizes': sizes,
                     'frames': frames, 'mode': 'quick' if a.quick else 'grid'},
            'machine': machine, 'rows': rows}
  json_name = a.json or ('blocks_quick.json' if a.quick else 'blocks.json')
  t_start = time.perf_counter()
  shapes = [(d, t, hw) for d in dims for t in frames for hw in sizes]
  for i, (d, t, hw) in enumerate(shapes):
    shape_names = [n for n in names if not (
        a.quick and n.startswith('nl_') and n != 'nl_embedded_gaussian' and hw > 14)]
    rows += run_shape(d, t, hw, shape_names, repeats, a.max_gib)
    machine['load_average_end'] = common.load_average()
    path = common.write_json(json_name, result)
    elapsed = time.perf_counter() - t_start
    print(f'[blocks] shape {i + 1}/{len(shapes)} done, {elapsed / 60:.1f} min elapsed', flush=True)
  if a.plot:
    plot(result, a.plot)
  common.print_written(path, a.plot, machine)
  print(table(rows))
  return 0


if __name__ == '__main__':
  sys.exit(main())
