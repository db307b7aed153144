"""The training loop behind ``train.py``.

``train_and_evaluate(config, workdir)``:

1. validates the config (``config_checks``: cheap, before any device, data or compile work);
2. builds the mesh, the data iterators, the schedule (epochs -> steps from the train-set size the
   iterator reports, or ``config.steps_per_epoch`` / ``config.num_train_steps``);
3. resumes from the latest checkpoint in ``WORKDIR/checkpoints`` (state, RNG, data-iterator
   state, the metrics of the unlogged window) or initialises: from ``config.init_from`` as the
   released ``--soft_resume`` (what fits loads, the rest keeps its fresh initialisation;
   ``WORKDIR/init_report.json`` lists which), or at random (``''``; a video model needs
   ``'scratch'`` said explicitly, ``validate_config``);
4. trains, with the next ``config.device_prefetch`` (2) batches put on the devices while a step
   runs (``bat_jax.data.prefetch``); every ``log_every_steps`` writes a metrics line (with
   ``data_wait_fraction``, ``training/metrics.py``), every ``eval_every_*`` evaluates clip
   top-1 on the eval iterator, every ``checkpoint_every_steps`` saves asynchronously; the last
   step always evaluates and saves. A step's ``finite`` flag is read after the next step is
   dispatched (a non-finite step applied no update on device), and every flag is read before a
   metrics line or a save;
5. on SIGTERM (or, multi-process, jax's preemption sync point) saves the current step and stops
   (``preemption``).

A resumed run reproduces an uninterrupted one bit for bit (params and ``metrics.jsonl``):
dropout keys are ``fold_in(rng, step)``, the data iterator restarts from its saved state, and the
steps since the last metrics line are carried in the checkpoint.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import flags, logging

from bat_jax.data import mesh as mesh_lib
from bat_jax.data.normalization import input_stats
from bat_jax.data.prefetch import DEFAULT_DEPTH, DevicePrefetch
from bat_jax.data.registry import data_module
from bat_jax.evaluation.protocols import close_iterator, evaluate_clip
from bat_jax.evaluation.steps import LOSSES, make_eval_step
from bat_jax.models.registry import build_model
from bat_jax.training import broken_files, faults, optim
from bat_jax.training import state as state_lib
from bat_jax.training.checkpoint import CheckpointMismatchError, Checkpointer
from bat_jax.training.config_checks import (INIT_FROM_SCRATCH, ConfigError, check_devices,
                                            validate_config)
from bat_jax.training.metrics import MetricsWriter
from bat_jax.training.preemption import PreemptionWatcher, maybe_pause
from bat_jax.training.steps import make_train_step
from bat_jax.training.transfer import load_init_variables


def _mean(values: list[float]) -> float:
  return float(np.mean(np.asarray(values, np.float64)))


def _schedule(config: ml_collections.ConfigDict, train_it: Any) -> tuple[int, int]:
  """``(steps_per_epoch, num_train_steps)``: from the config, else the train-set size the
  iterator reports."""
  steps_per_epoch = config.get('steps_per_epoch', -1)
  if steps_per_epoch <= 0 and getattr(train_it, 'steps_per_epoch', None):
    steps_per_epoch = int(train_it.steps_per_epoch)
  if steps_per_epoch <= 0:
    num_examples = getattr(train_it, 'num_examples', None)
    if not num_examples:
      raise ConfigError('the train iterator does not report num_examples: set '
                        'config.steps_per_epoch > 0')
    steps_per_epoch = num_examples // config.global_batch_size
    if steps_per_epoch <= 0:
      raise ConfigError(f'config.global_batch_size={config.global_batch_size} exceeds the '
                        f'{num_examples} training examples')
  num_train_steps = config.get('num_train_steps', -1)
  if num_train_steps <= 0:
    num_train_steps = int(math.ceil(config.num_epochs * steps_per_epoch))
  return steps_per_epoch, num_train_steps


def _check_resumable(ckpt: Checkpointer, latest: int | None, model: Any, input_shape: Any,
                     mesh: jax.sharding.Mesh) -> None:
  """A checkpoint of a different model fails here, before any data or compile work."""
  if latest is None:
    return
  try:
    ckpt.check_compatible(latest, state_lib.abstract_variables(model, input_shape, mesh))
  except CheckpointMismatchError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    logging.warning('cannot read the tree of checkpoint step %d (%s): restore checks it', latest,
                    e)


def _init_from(config: ml_collections.ConfigDict, state: Any, abstract: Any, workdir: str,
               is_chief: bool) -> Any:
  """``state`` with ``config.init_from``'s weights soft-loaded; writes ``init_report.json``."""
  params, batch_stats, report = load_init_variables(
      config.init_from, abstract, state, tuple(config.get('init_from_ignore', ())),
      model_config=config.model)
  if is_chief:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'init_report.json'), 'w') as f:
      json.dump(report, f, indent=2)
  return state.replace(params=params, batch_stats=batch_stats)


def _record(nonfinite: faults.NonFiniteGuard, pending: dict[str, list[Any]],
            step_metrics: tuple[int, dict[str, Any]] | None, last_good: str) -> None:
  """Reads a dispatched step's ``finite`` flag; a finite step's loss and top-1 join ``pending``."""
  if step_metrics is None:
    return
  done, metrics = step_metrics
  if nonfinite.update(done, metrics, last_good):
    pending['loss'].append(metrics['loss'])
    pending['top1'].append(metrics['top1'])


def _settle(ckpt: Checkpointer, failures: faults.SaveFailures, final: bool = False) -> None:
  """Waits for the save in flight and counts its outcome; a failed final save stops the run."""
  outcome = ckpt.settle()
  if outcome is None:
    return
  step, error = outcome
  if error is None:
    failures.succeeded()
    return
  failures.failed(step, error, ckpt.describe_latest(), final=final)


def _save(ckpt: Checkpointer, failures: faults.SaveFailures, step: int, state: Any,
          data_state: Any, meta: dict[str, Any]) -> None:
  """Saves ``step`` after the previous save is settled; a failed write (a full disk) is logged and
  counted (``faults.SaveFailures``), and training goes on."""
  _settle(ckpt, failures)
  try:
    ckpt.save(step, state, data_state, meta)
  except Exception as e:  # pylint: disable=broad-except
    failures.failed(step, e, ckpt.describe_latest())


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains (resuming if ``workdir`` has checkpoints); returns the last metrics line, with
  ``'preempted': True`` when stopped by SIGTERM before the last step."""
  validate_config(config)
  check_devices(config)
  workdir = os.path.abspath(workdir)  # orbax refuses relative checkpoint paths (make demo)
  mesh = mesh_lib.make_mesh()
  process_index, process_count = jax.process_index(), jax.process_count()
  is_chief = process_index == 0

  model = build_model(config.model)
  input_shape = state_lib.init_input_shape(config.model)
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'), keep=config.get('keep_checkpoints', 3))
  latest = ckpt.latest_step()
  _check_resumable(ckpt, latest, model, input_shape, mesh)

  data = data_module(config.data)
  train_it = data.make_train_iterator(config.data, config.global_batch_size, process_index,
                                      process_count, config.seed)
  steps_per_epoch, num_train_steps = _schedule(config, train_it)
  eval_every = config.get('eval_every_steps', -1)
  if eval_every <= 0 and config.get('eval_every_epochs', 0) > 0:
    eval_every = max(1, int(round(config.eval_every_epochs * steps_per_epoch)))
  log_every = max(1, config.get('log_every_steps', 100))
  ckpt_every = config.get('checkpoint_every_steps', 1000)

  schedule = optim.learning_rate_schedule(config, steps_per_epoch, num_train_steps)
  tx = optim.make_optimizer(config, schedule)
  abstract = state_lib.abstract_train_state(model, tx, input_shape, mesh)
  num_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract.params))
  logging.info('%s: %d parameters; %d devices (%d processes); %d steps/epoch, %d steps; '
               'peak lr %g', config.model.name, num_params, jax.device_count(), process_count,
               steps_per_epoch, num_train_steps, optim.peak_learning_rate(config))

  pending: dict[str, list[Any]] = {'loss': [], 'top1': []}
  restored = ckpt.restore_newest_intact(abstract) if latest is not None else None
  nonfinite = faults.NonFiniteGuard(config.get('max_nonfinite_steps', 5),
                                    restored[3].get('nonfinite') if restored else None)
  save_failures = faults.SaveFailures(config.get('max_failed_saves', 3))
  if restored is not None:
    latest, state, data_state, meta = restored
    train_it.set_state(data_state)
    pending = {k: [float(v) for v in vs] for k, vs in meta['pending'].items()}
    logging.info('resumed from %s at step %d', ckpt.directory / str(latest), latest)
  else:
    state = state_lib.create_train_state(model, tx, config.seed, input_shape, mesh)
    if config.get('init_from', '') not in ('', INIT_FROM_SCRATCH):
      state = _init_from(config, state, abstract, workdir, is_chief)
  start_step = int(state.step)
  if start_step >= num_train_steps:
    logging.warning('the run is already at step %d of %d: nothing to train', start_step,
                    num_train_steps)
  if is_chief:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))

  writer = MetricsWriter(workdir, enabled=is_chief, resume_step=start_step,
                         num_train_steps=num_train_steps,
                         global_batch_size=config.global_batch_size)
  loss = config.get('loss', LOSSES[0])
  stats = input_stats(config.data)
  train_step: Any = make_train_step(model, tx, mesh, config.label_smoothing, loss,
                                    input_stats=stats)
  eval_step = make_eval_step(model, mesh, int(config.model.num_classes), loss=loss,
                             input_stats=stats)
  watcher = PreemptionWatcher()
  last: dict[str, Any] = {}
  preempted = False
  unchecked = None  # (step, metrics) of the step whose finite flag is not read yet
  prefetch = DevicePrefetch(train_it, mesh, depth=config.get('device_prefetch', DEFAULT_DEPTH),
                            limit=max(num_train_steps - start_step, 0))
  try:
    for step in range(start_step, num_train_steps):
      batch, host = next(prefetch)
      injected = faults.inject(step, host, ckpt.wait_until_finished)
      if injected is not host:  # a test fault replaced the batch (NaN inputs)
        batch = mesh_lib.global_batch(injected, mesh)
      if step == start_step:  # compile once; stop here if the step cannot fit
        train_step = train_step.lower(state, batch).compile()
        faults.check_memory(train_step, config.get('device_memory_bytes', -1))
      state, metrics = train_step(state, batch)
      done = step + 1
      _record(nonfinite, pending, unchecked, ckpt.describe_latest())  # runs while `done` does
      unchecked = (done, metrics)
      if step == start_step:  # compiled and run once: rates start now
        jax.block_until_ready(metrics)
        writer.start_timer(done)
        prefetch.take_wait_seconds()  # the first step's wait is start-up
      last_step = done == num_train_steps
      do_eval = last_step or (eval_every > 0 and done % eval_every == 0)
      if do_eval or last_step or done % log_every == 0:
        _record(nonfinite, pending, unchecked, ckpt.describe_latest())
        unchecked = None
        host = {k: [float(v) for v in jax.device_get(vs)] for k, vs in pending.items()}
        line = ({'train_loss': _mean(host['loss']), 'train_top1': _mean(host['top1'])}
                if host['loss'] else {})
        line['learning_rate'] = float(schedule(done - 1))
        skipped = nonfinite.take_window()
        if skipped:
          line['nonfinite_steps'] = skipped
        eval_seconds = 0.0
        if do_eval:
          t0 = time.perf_counter()
          result = evaluate_clip(
              config, model, state.variables(), mesh, eval_step,
              after_batch=functools.partial(faults.signal_point, 'eval', done, workdir))
          line.update({f'eval_{k}': v for k, v in result.items() if k != 'num_examples'})
          eval_seconds = time.perf_counter() - t0
        writer.write(done, line, eval_seconds, prefetch.take_wait_seconds())
        last = {'step': done, **line}
        pending = {k: [] for k in pending}
      faults.signal_point('step', done, workdir)
      maybe_pause(done, workdir, ckpt, watcher)
      preempted = watcher.reached(done) and not last_step
      if last_step or preempted or (ckpt_every > 0 and done % ckpt_every == 0):
        _record(nonfinite, pending, unchecked, ckpt.describe_latest())  # a save sees every flag
        unchecked = None
        meta = {'pending': {k: [float(v) for v in jax.device_get(vs)]
                            for k, vs in pending.items()},
                'process_count': process_count, 'num_train_steps': num_train_steps,
                'nonfinite': nonfinite.state()}
        # The iterator's state after batch `done` (not after the batches drawn ahead).
        _save(ckpt, save_failures, done, state, prefetch.get_state(), meta)
        faults.signal_point('save', done, workdir)
        if last_step or preempted:  # no later interval to retry at
          _settle(ckpt, save_failures, final=True)
      if preempted:
        logging.warning('preempted: checkpoint saved at step %d of %d', done, num_train_steps)
        break
  except RuntimeError as e:
    died = faults.data_worker_died(e, ckpt.describe_latest())
    if died is None:
      raise
    raise died from e
  finally:
    close_iterator(train_it)
    broken_files.write_report(data, workdir)
    unsettled = ckpt.settle()  # a save in flight when an error stopped the loop
    if unsettled and unsettled[1] is not None:
      logging.error('checkpoint save of step %d failed: %s', *unsettled)
    ckpt.close()
    writer.close()
    watcher.close()
  return {**last, 'preempted': preempted}


def mark_flags_parsed() -> None:
  """grain's multiprocessing reads absl flags: call this when using the loop outside
  ``absl.app.run`` (tests, notebooks)."""
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
