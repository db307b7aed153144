r"""Fingerprints of the lowered train step, to show that a refactor left the compiled program alone.

    python benchmarks/step_fingerprint.py                 # in this checkout
    cd OTHER_CHECKOUT && PYTHONPATH=. python /path/to/benchmarks/step_fingerprint.py

For ResNet-50 (8 x 224^2 images) and C2D + 3D-BAT (1 x 8 x 224^2 clip) it lowers the jitted
train step (forward, loss, gradients, non-finite guard, SGD update, over a one-device mesh) on
this backend's path (``nn.xla_cpu.active()``), removes source locations and renames functions in
order of appearance, and prints the length and a SHA-256 prefix of the StableHLO text. Equal
fingerprints in two checkouts mean the same program reaches XLA, so the same compiled code runs:
a timing comparison is then noise only (this 2-core machine's run-to-run noise is larger than
the 5% a timing check would need). BatchNorm groups are set to 0 so the batch of 1 clip is valid.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import re

import jax
import jax.numpy as jnp
import optax

from bat_jax.models.registry import build_model
from bat_jax.training import state as state_lib
from bat_jax.training import steps as steps_lib

try:  # the mesh moved from training/ to data/; this script also fingerprints older checkouts
  from bat_jax.data import mesh as mesh_lib
except ImportError:
  from bat_jax.training import mesh as mesh_lib  # type: ignore[no-redef]

MODELS = {'r50': ('imagenet_r50', (8, 224, 224, 3), 'image'),
          'c2d_3dbat': ('kinetics_c2d_3dbat', (1, 8, 224, 224, 3), 'video')}


def normalised_hlo(text: str) -> str:
  """StableHLO text without source locations, functions renamed ``@f0, @f1, ...`` in order."""
  text = re.sub(r'loc\([^)]*\)', '', text)
  names: dict[str, str] = {}
  return re.sub(r'@[\w.$-]+', lambda m: names.setdefault(m.group(0), f'@f{len(names)}'), text)


def fingerprint(name: str) -> tuple[int, str]:
  module, shape, key = MODELS[name]
  cfg = importlib.import_module(f'configs.{module}').get_config()
  cfg.model.bn_group_size = 0
  model = build_model(cfg.model)
  tx = optax.sgd(0.1, momentum=0.9)
  mesh = mesh_lib.make_mesh()
  abstract = state_lib.abstract_train_state(model, tx, state_lib.init_input_shape(cfg.model), mesh)
  step = steps_lib.make_train_step(model, tx, mesh, 0.0)
  batch = {key: jax.ShapeDtypeStruct(shape, jnp.float32),
           'label': jax.ShapeDtypeStruct(shape[:1], jnp.int32)}
  text = normalised_hlo(step.lower(abstract, batch).as_text(debug_info=False))
  return len(text), hashlib.sha256(text.encode()).hexdigest()[:16]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--models', default=','.join(MODELS), help=f'comma list of {list(MODELS)}')
  args = parser.parse_args()
  for name in args.models.split(','):
    length, digest = fingerprint(name)
    print(f'{name:10s} {jax.default_backend()} {length:9d} chars  sha256 {digest}')


if __name__ == '__main__':
  main()
