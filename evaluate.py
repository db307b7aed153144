"""Evaluate a run's checkpoint: ``python evaluate.py --config=configs/<recipe>.py --workdir=DIR``.

Restores ``DIR/checkpoints/<step>`` (``--step``, default the latest) onto however many devices
this run has, evaluates it with ``--protocol`` and writes ``DIR/eval_<protocol>.json``.

Protocols (``bat_jax.training.loop.PROTOCOLS``): ``clip`` — one clip per video as the eval
iterator gives it: top-1, top-5, mean per-class accuracy. Multi-view protocols (10 clips x 3
crops, 25 x 10) are added to that table.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from bat_jax.training import loop, mesh, metrics
from bat_jax.training.checkpoint import CheckpointMismatchError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'The run\'s config (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory with checkpoints/.')
_PROTOCOL = flags.DEFINE_string('protocol', 'clip', 'Evaluation protocol.')
_STEP = flags.DEFINE_integer('step', -1, 'Checkpoint step; -1: the latest.')
_DISTRIBUTED = flags.DEFINE_enum('distributed', 'auto', ['auto', 'on', 'off'],
                                 'jax.distributed.initialize(): auto = when '
                                 'JAX_COORDINATOR_ADDRESS is set.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  metrics.quiet_library_logs()
  try:
    loop.validate_config(_CONFIG.value, training=False)
    mesh.initialize_distributed(_DISTRIBUTED.value)
    result = loop.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _PROTOCOL.value,
                                      _STEP.value)
  except loop.ConfigError as e:
    sys.exit(f'config error: {e}')
  except CheckpointMismatchError as e:
    sys.exit(f'checkpoint error: {e}')
  print(' '.join(f'{k}={v}' for k, v in result.items()))
  chance = 1.0 / _CONFIG.value.model.num_classes
  print(f"{_PROTOCOL.value} top-1: {result['top1']:.2%} (chance: {chance:.2%})")


if __name__ == '__main__':
  app.run(main)
