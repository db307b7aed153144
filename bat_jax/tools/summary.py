r"""Parameter count and multiply-adds of a recipe's model, whole and per inserted block.

  python -m bat_jax.tools.summary --config=configs/kinetics_c2d_3dbat.py [--json]
  python -m bat_jax.tools.summary --config=configs/imagenet_r50_bat.py \
      --config.model.input_size='(256, 256)'

Nothing is allocated or compiled: shapes come from ``jax.eval_shape``, multiply-adds from the
jaxpr (:mod:`bat_jax.tools.complexity`), and XLA's own cost analysis of the lowered program is
printed beside them as a cross-check. The papers' "GFLOPs" are multiply-adds (GMACs).
``--json`` prints one JSON object as the last line (``params``, ``gmacs``, ``blocks``).
"""

from __future__ import annotations

import json
from typing import Any

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
from ml_collections import config_flags

from bat_jax.models.registry import build_model
from bat_jax.models.registry import is_video
from bat_jax.tools import complexity

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Recipe config file.', lock_config=True)
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON object as the last line.')


def input_shape(model_config: ml_collections.ConfigDict, batch: int = 1) -> tuple[int, ...]:
  """``(batch, [T,] H, W, 3)`` from ``model.input_size``."""
  size = tuple(int(v) for v in model_config.input_size)
  expected = 3 if is_video(model_config) else 2
  if len(size) != expected:
    raise ValueError(f'model.input_size={size}: {model_config.name} takes '
                     f"{'(T, H, W)' if expected == 3 else '(H, W)'}")
  return (batch, *size, 3)


def summarize(model_config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Params and multiply-adds of the model and of each inserted block at ``model.input_size``."""
  model = build_model(model_config)
  x = jax.ShapeDtypeStruct(input_shape(model_config), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init({'params': jax.random.key(0)}, x), x)
  apply = lambda v, x: model.apply(v, x)  # noqa: E731
  table = complexity.macs_table(apply, variables, x)
  by_module = complexity.group_by_module(complexity.macs_by_scope(table))
  matmul_by_module = complexity.group_by_module(complexity.macs_by_scope(table, 'dot_general'))
  xla_flops = jax.jit(apply).lower(variables, x).cost_analysis().get('flops', float('nan'))
  marker = f'_{model.insert_name}'
  blocks = {name: {'params': complexity.count_params(variables['params'][name]),
                   'gmacs': by_module.get(name, 0) / 1e9,
                   'gmacs_matmul': matmul_by_module.get(name, 0) / 1e9}
            for name in variables['params'] if marker in name and model.insert_block is not None}
  return {'model': model_config.name, 'input': list(x.shape),
          'params': complexity.count_params(variables['params']),
          'gmacs': sum(table.values()) / 1e9, 'xla_gflops': xla_flops / 1e9, 'blocks': blocks}


def main(argv: list[str]) -> None:
  del argv
  result = summarize(_CONFIG.value.model)
  print(f"{result['model']}  input {tuple(result['input'])}")
  print(f"{'module':<16}{'params':>14}{'GMACs':>10}{'of which matmul':>17}")
  for name, b in result['blocks'].items():
    print(f"{name:<16}{b['params']:>14,}{b['gmacs']:>10.3f}{b['gmacs_matmul']:>17.3f}")
  print(f"{'total':<16}{result['params']:>14,}{result['gmacs']:>10.3f}")
  print(f"(for comparison, XLA's cost analysis of the same program: {result['xla_gflops']:.2f} "
        'GFLOPs by its own rules, about 2 per multiply-add)')
  if _JSON.value:
    print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
