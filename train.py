"""Train (and evaluate) a model: ``python train.py --config=configs/<recipe>.py --workdir=DIR``.

Any config field can be overridden: ``--config.global_batch_size=32 --config.model.width=16``.
Re-running the same command resumes from the latest checkpoint in ``DIR/checkpoints``. Outputs:
``DIR/metrics.jsonl``, ``DIR/tensorboard/``, ``DIR/checkpoints/``, ``DIR/config.json``.

Multi-process (one process per host, or several per machine): set ``JAX_COORDINATOR_ADDRESS``
(``host:port`` of process 0), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` in each process's
environment, or pass ``--distributed=on`` on a cluster jax detects by itself (TPU pod, SLURM,
Open MPI). Exit status 143 means "preempted: checkpoint saved, run the same command again".
"""

import os
import sys

import jax
from absl import app, flags
from ml_collections import config_flags

from bat_jax.data import mesh
from bat_jax.training import config_checks, faults, loop, metrics, preemption
from bat_jax.training.checkpoint import CheckpointMismatchError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config (a configs/*.py file).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory (checkpoints, metrics).')
_DISTRIBUTED = flags.DEFINE_enum('distributed', 'auto', ['auto', 'on', 'off'],
                                 'jax.distributed.initialize(): auto = when '
                                 'JAX_COORDINATOR_ADDRESS is set.')
_HEARTBEAT_TIMEOUT = flags.DEFINE_integer(
    'heartbeat_timeout_s', 100, 'Multi-process: a process silent this long is declared dead '
    '(jax.distributed heartbeat_timeout_seconds).')
_SHUTDOWN_TIMEOUT = flags.DEFINE_integer(
    'shutdown_timeout_s', 300, 'Multi-process: how long a stopping process waits for the others '
    '(jax.distributed shutdown_timeout_seconds).')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  config = _CONFIG.value
  metrics.quiet_library_logs()
  try:
    config_checks.validate_config(config)  # before any device or data work
    mesh.initialize_distributed(_DISTRIBUTED.value, _HEARTBEAT_TIMEOUT.value,
                                _SHUTDOWN_TIMEOUT.value)
    result = loop.train_and_evaluate(config, _WORKDIR.value)
  except config_checks.ConfigError as e:
    sys.exit(f'config error: {e}')
  except CheckpointMismatchError as e:
    sys.exit(f'checkpoint error: {e}')
  except faults.RunAborted as e:
    print(f'run stopped: {e}', file=sys.stderr)
    sys.exit(e.exit_code)
  except jax.errors.JaxRuntimeError as e:
    message = faults.peer_lost_message(e)
    if message is None:
      raise
    print(f'run stopped: {message}', file=sys.stderr, flush=True)
    # Not sys.exit: jax's exit handler would wait at a shutdown barrier for the dead process.
    os._exit(faults.PEER_LOST_EXIT_CODE)  # pylint: disable=protected-access
  if result.get('preempted'):
    sys.exit(preemption.PREEMPTED_EXIT_CODE)


if __name__ == '__main__':
  app.run(main)
