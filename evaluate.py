"""Evaluate a run's checkpoint: ``python evaluate.py --config=configs/<recipe>.py --workdir=DIR
[--protocol=clip|30view|250view|imagenet|rsa|charades] [--step=N]``.

Restores ``DIR/checkpoints/<step>`` (``--step``, default the latest) onto however many devices
this run has, evaluates it with ``--protocol`` (a progress bar with ETA on stderr) and writes
``DIR/eval_<protocol>.json``. Inputs that cannot be read are left out and listed in
``DIR/broken_files_process<i>.json``.

Protocols (``bat_jax.evaluation.protocols.PROTOCOLS``, views in ``bat_jax/data/views.py``):

* ``clip``: one centre clip, centre crop (``data.crop_size``) per video -- the papers' "clip
  top-1" (for image data sets: one centre crop per image);
* ``30view``: 10 clips evenly spread over the video x 3 crops of ``data.eval_short_side``^2
  (left / centre / right, the full short side) -- fully-convolutional testing, the model runs at
  256 x 256 for Kinetics (BAT's sliding windows, ``bat_supplementary.md`` §2);
* ``250view``: 25 clips x 10 crops of ``data.crop_size``^2 (4 corners + centre, x flip);
* ``imagenet``: single centre crop (resize ``data.eval_resize``, crop ``data.image_size``);
* ``rsa``: RSA's test -- ``config.eval_num_clips`` (1 or 2) TSN clips, frames resized to exactly
  ``data.eval_frame_size`` (240 x 320), centre crop ``data.crop_size``
  (``rsa_neurips2021_supplementary.md`` §1).
* ``charades``: the 30 views of ``30view``, the maximum of their sigmoid scores per video, mean
  average precision over the classes (Charades' official ``Charades_v1_classify.m``).

Frames are resized to short side ``data.eval_short_side`` first (``rsa``: to
``data.eval_frame_size``). The multi-view protocols average
the softmax over each video's views and report video top-1 / top-5 and mean per-class accuracy
(plus the logit-averaged top-1 of the released code). Multi-process: run the same command in
every process (see ``train.py``); each process evaluates its share of the videos, padded so that
all take the same number of steps.
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from bat_jax.data import mesh
from bat_jax.evaluation import protocols
from bat_jax.training import config_checks, metrics
from bat_jax.training import evaluate as evaluate_lib
from bat_jax.training.checkpoint import CheckpointMismatchError, DamagedCheckpointError

_CONFIG = config_flags.DEFINE_config_file('config', None, 'The run\'s config (configs/*.py).',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Run directory with checkpoints/.')
_PROTOCOL = flags.DEFINE_enum('protocol', 'clip', sorted(protocols.PROTOCOLS),
                              'Evaluation protocol.')
_STEP = flags.DEFINE_integer('step', -1, 'Checkpoint step; -1: the latest.')
_PROGRESS = flags.DEFINE_bool('progress', True, 'Show a progress bar (process 0, stderr).')
_DISTRIBUTED = flags.DEFINE_enum('distributed', 'auto', ['auto', 'on', 'off'],
                                 'jax.distributed.initialize(): auto = when '
                                 'JAX_COORDINATOR_ADDRESS is set.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  metrics.quiet_library_logs()
  try:
    config_checks.validate_config(_CONFIG.value, training=False)
    mesh.initialize_distributed(_DISTRIBUTED.value)
    result = evaluate_lib.evaluate_checkpoint(_CONFIG.value, _WORKDIR.value, _PROTOCOL.value,
                                              _STEP.value, progress=_PROGRESS.value)
  except config_checks.ConfigError as e:
    sys.exit(f'config error: {e}')
  except (CheckpointMismatchError, DamagedCheckpointError) as e:
    sys.exit(f'checkpoint error: {e}')
  print(' '.join(f'{k}={v}' for k, v in result.items()))
  if 'mAP' in result:
    print(f"{_PROTOCOL.value} mAP: {result['mAP']:.2%} ({result['num_examples']} videos, "
          f"{result['num_classes_scored']} classes, step {result['step']})")
    return
  chance = 1.0 / _CONFIG.value.model.num_classes
  what = 'videos' if _PROTOCOL.value in ('30view', '250view') else 'examples'
  print(f"{_PROTOCOL.value} top-1: {result['top1']:.2%} (chance: {chance:.2%}), "
        f"top-5: {result['top5']:.2%}, mean per-class accuracy: "
        f"{result['mean_class_accuracy']:.2%} ({result['num_examples']} {what}, "
        f"step {result['step']})")


if __name__ == '__main__':
  app.run(main)
