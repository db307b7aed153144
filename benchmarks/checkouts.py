r"""Train-step time of two checkouts of this repository, as alternating processes.

    python benchmarks/checkouts.py --old /tmp/pre14 --models r50,c2d_3dbat --pairs 3

Each measurement is one process running that checkout's ``benchmarks/models.py`` ``flag_probe``
with its code (float32, the recipe's model and real train step with BatchNorm over the whole
batch, compile, one warm-up call,
the median of ``--steps`` train steps; a compilation cache shared by the processes saves all
but the first compile of each program). The processes alternate, old then new (then new then old
in the next pair, so neither always runs first), and each pair's ratio is new / old of its two
processes run back to back: a change of the machine's load between pairs cancels out. Prints each
pair's ratio and their median per model; writes ``benchmarks/results/checkouts.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import common


# Runs in the child with the checkout's code: its models.py's flag_probe, with BatchNorm over
# the whole timed batch (bn_group_size 0, as models.load_config sets it now; an older
# models.py kept the recipe's group of 16, which a batch of 1 clip does not divide).
_PROBE = """
import sys
sys.path.insert(0, sys.argv[1] + '/benchmarks')
import models
_load = models.load_config
def load_config(*args, **kwargs):
  cfg = _load(*args, **kwargs)
  cfg.model.bn_group_size = 0
  return cfg
models.load_config = load_config
models.flag_probe(sys.argv[2], int(sys.argv[3]))
"""


def probe(checkout: str, model: str, steps: int, timeout_s: int,
          cache_dir: str) -> dict[str, Any]:
  """Seconds of one train step (median of ``steps``) of ``model`` in a fresh process of
  ``checkout``; ``cache_dir`` is jax's persistent compilation cache, shared by the processes (it
  saves compile time only: a process that finds its program there runs the same executable)."""
  env = {**os.environ, 'PYTHONPATH': checkout, 'JAX_PLATFORMS': 'cpu',
         'JAX_COMPILATION_CACHE_DIR': cache_dir}
  cmd = [sys.executable, '-c', _PROBE, checkout, model, str(steps)]
  out = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True,
                       timeout=timeout_s, check=False)
  lines = [line for line in out.stdout.splitlines() if line.startswith('PROBE ')]
  if out.returncode or not lines:
    raise RuntimeError(f'{model} in {checkout} failed ({out.returncode}):\n{out.stderr[-3000:]}')
  return json.loads(lines[-1][len('PROBE '):])


def revision(checkout: str) -> str:
  """The short commit of ``checkout`` (``+dirty`` with changes to tracked files)."""
  def git(*args: str) -> str:
    return subprocess.run(['git', '-C', checkout, *args], capture_output=True, text=True,
                          check=False).stdout.strip()
  return git('rev-parse', '--short', 'HEAD') + ('+dirty' if git('status', '--porcelain', '-uno')
                                               else '')


def summary(model: str, old_s: list[float], new_s: list[float]) -> dict[str, Any]:
  """Pair ``i`` is ``(old_s[i], new_s[i])``: its ratio new / old, and the median of the ratios."""
  pairs = [{'old_s': o, 'new_s': n, 'ratio': n / o} for o, n in zip(old_s, new_s)]
  return {'model': model, 'pairs': pairs,
          'median_ratio': common.median([q['ratio'] for q in pairs])}


def table(results: list[dict[str, Any]]) -> str:
  """Markdown: per model, the median step times, each pair's new / old and their median."""
  return common.format_table(
      [{'model': r['model'], 'ratios': ', '.join(f"{q['ratio']:.3f}" for q in r['pairs']),
        'median': r['median_ratio'],
        'old': common.median([q['old_s'] for q in r['pairs']]),
        'new': common.median([q['new_s'] for q in r['pairs']])} for r in results],
      [('model', 'model', ''), ('old', 'old s/step (median)', '.3f'),
       ('new', 'new s/step (median)', '.3f'), ('ratios', 'new / old, each pair', ''),
       ('median', 'median of the pairs', '.3f')])


def main() -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--old', required=True, help='the other checkout (e.g. a git worktree)')
  p.add_argument('--new', default=common.REPO, help='default: this checkout')
  p.add_argument('--models', default='r50,c2d_3dbat')
  p.add_argument('--pairs', type=int, default=3)
  p.add_argument('--steps', type=int, default=3, help='timed train steps per process')
  p.add_argument('--timeout-s', type=int, default=1800)
  p.add_argument('--json', default='checkouts.json')
  a = p.parse_args()
  machine = common.machine_info()
  cache_dir = tempfile.mkdtemp(prefix='checkouts_jax_cache_')
  results = []
  for model in a.models.split(','):
    t: dict[str, list[float]] = {'old': [], 'new': []}
    for i in range(a.pairs):
      for which in ('old', 'new') if i % 2 == 0 else ('new', 'old'):
        t[which].append(probe(getattr(a, which), model, a.steps, a.timeout_s,
                              cache_dir)['train_s'])
        print(f'{model} pair {i} {which}: {t[which][-1]:.3f} s/step', flush=True)
    results.append(summary(model, t['old'], t['new']))
  shutil.rmtree(cache_dir, ignore_errors=True)
  machine['load_average_end'] = common.load_average()
  path = common.write_json(a.json, {
      'machine': machine, 'old': revision(a.old), 'new': revision(a.new),
      'args': {'models': a.models, 'pairs': a.pairs, 'steps': a.steps}, 'results': results})
  common.print_written(path, '', machine)
  print(table(results))
  return 0


if __name__ == '__main__':
  sys.exit(main())
