r"""What ``model.dtype='bfloat16'`` keeps for the backward pass, independent of the backend.

    python benchmarks/precision.py                       # C2D + 3D-BAT (batch 1 x 8x224^2), ResNet-50 (8 x 224^2)
    python benchmarks/precision.py --models c2d,c2d_3dbat_t64

The activations a training step saves between its forward and backward passes are what its
memory grows with. They are read from the jaxpr (``jax.ad_checkpoint.print_saved_residuals`` of the
loss), so the numbers are the same on every backend; beside them, the compiled step's peak
(``memory_analysis()``) on this backend. XLA:CPU computes bf16 convolutions and matmuls in float32
(it has no bf16 units to target), so on CPU the peak barely moves; on a GPU or TPU the residuals
are what the activation memory is. Timing of bf16 is in ``models.py`` (same run as float32).

Writes ``benchmarks/results/precision.json``; prints the table last.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import re
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import jax  # noqa: E402
from jax import ad_checkpoint  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bat_jax import build_model  # noqa: E402
from bat_jax.training import steps  # noqa: E402
import models as models_bench  # noqa: E402  pylint: disable=g-import-not-at-top

# name -> (config module, batch, model overrides)
MODELS = {
    'c2d': ('kinetics_c2d', 1, {}),
    'c2d_3dbat': ('kinetics_c2d_3dbat', 1, {}),
    'c2d_3dbat_t64': ('kinetics_c2d_3dbat', 1, {'input_size': (64, 224, 224),
                                                'block.temporal_size': 8}),
    'r50': ('imagenet_r50', 8, {}),
}
_RESIDUAL = re.compile(r'^(\w+)\[([\d,]*)\]')
_ITEMSIZE = {'f64': 8, 'f32': 4, 'bf16': 2, 'f16': 2, 'i64': 8, 'i32': 4, 'u32': 4, 'i8': 1,
             'u8': 1, 'bool': 1, 'key<fry>': 8}


def residual_bytes(fn: Any, *args: Any) -> dict[str, float]:
  """GiB of what ``fn``'s backward pass keeps from its forward pass, by dtype, and the total:
  ``print_saved_residuals`` less the arguments themselves (which are in memory anyway)."""
  buf = io.StringIO()
  with contextlib.redirect_stdout(buf):
    ad_checkpoint.print_saved_residuals(fn, *args)
  by_dtype: dict[str, float] = collections.Counter()
  for line in buf.getvalue().splitlines():
    m = _RESIDUAL.match(line.strip())
    if not m or 'from the argument' in line:  # inputs of the step are held anyway
      continue
    dtype, dims = m.group(1), m.group(2)
    if dtype not in _ITEMSIZE:
      raise ValueError(f'unknown residual dtype {dtype!r} in {line.strip()!r}')
    size = int(np.prod([int(d) for d in dims.split(',') if d])) if dims else 1
    by_dtype[dtype] += size * _ITEMSIZE[dtype] / common.GIB
  return {**dict(by_dtype), 'total': sum(by_dtype.values())}


def measure(name: str, dtype: str) -> dict[str, Any]:
  module, batch, overrides = MODELS[name]
  cfg = models_bench.load_config(module, dtype, **overrides)
  model = build_model(cfg.model)
  shape = (batch, *tuple(int(s) for s in cfg.model.input_size), 3)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(lambda: model.init({'params': jax.random.key(0)},
                                                jnp.zeros((1, *shape[1:])), train=False))

  def loss(params, stats, x):
    logits, _ = model.apply({'params': params, 'batch_stats': stats}, x, train=True,
                            rngs={'dropout': jax.random.key(0)}, mutable=['batch_stats'])
    return jnp.mean(jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1))

  args = (variables['params'], variables['batch_stats'], x)
  residuals = residual_bytes(loss, *args)
  compiled = jax.jit(jax.grad(loss), compiler_options=steps.compiler_options()).lower(
      *args).compile()
  return {'model': name, 'dtype': dtype, 'input': 'x'.join(map(str, shape[:-1])),
          'residual_gib': residuals['total'],
          'residual_by_dtype': {k: v for k, v in residuals.items() if k != 'total'},
          'peak_gib_here': common.memory_stats(compiled).get('peak_gib')}


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--models', default='c2d_3dbat,c2d_3dbat_t64,r50')
  p.add_argument('--json', default='precision.json')
  a = p.parse_args(argv)
  machine = common.machine_info()
  rows = []
  for name in a.models.split(','):
    base = None
    for dtype in ('float32', 'bfloat16'):
      row = measure(name, dtype)
      base = base or row
      row['residual_ratio'] = row['residual_gib'] / base['residual_gib']
      row['by_dtype'] = ', '.join(f'{k} {v:.2f}' for k, v in sorted(row['residual_by_dtype'].items()))
      rows.append(row)
      print(f"[precision] {name} {dtype}: residuals {row['residual_gib']:.2f} GiB "
            f"({row['by_dtype']}), compiled peak here {row['peak_gib_here']:.2f} GiB", flush=True)
  machine['load_average_end'] = common.load_average()
  path = common.write_json(a.json, {'machine': machine, 'rows': rows})
  print(f'wrote {path}\n')
  print(table(rows))
  return 0


def table(rows: list[dict[str, Any]]) -> str:
  return common.format_table(rows, [
      ('model', 'model', ''), ('input', 'input', ''), ('dtype', 'model.dtype', ''),
      ('residual_gib', 'saved for backward GiB', '.2f'), ('by_dtype', 'by dtype (GiB)', ''),
      ('residual_ratio', 'ratio to float32', '.2f'),
      ('peak_gib_here', 'compiled peak GiB (this backend)', '.2f')])


if __name__ == '__main__':
  sys.exit(main())
