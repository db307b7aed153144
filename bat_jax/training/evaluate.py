"""Evaluating a checkpoint (``evaluate.py``): restore a step of ``WORKDIR/checkpoints`` onto this
run's devices, run an evaluation protocol (``bat_jax.evaluation.protocols``), write the result."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import jax
import ml_collections
import optax
from absl import logging

from bat_jax.data import mesh as mesh_lib
from bat_jax.data.registry import data_module
from bat_jax.data import views
from bat_jax.evaluation import protocols
from bat_jax.models.registry import build_model
from bat_jax.training import broken_files
from bat_jax.training import state as state_lib
from bat_jax.training.checkpoint import Checkpointer
from bat_jax.training.config_checks import ConfigError, validate_config


def evaluate_checkpoint(config: ml_collections.ConfigDict, workdir: str, protocol: str = 'clip',
                        step: int | None = None, *, progress: bool = True) -> dict[str, Any]:
  """Restores ``step`` (default: latest) of ``WORKDIR/checkpoints`` onto this run's devices (any
  count), runs ``protocol`` (a key of ``PROTOCOLS``) and writes ``WORKDIR/eval_<protocol>.json``
  (and the broken-file report, if any input could not be read)."""
  if protocol not in protocols.PROTOCOLS:
    raise ConfigError(f'--protocol={protocol!r}; allowed: {sorted(protocols.PROTOCOLS)}')
  validate_config(config, training=False)
  if protocol in views.PROTOCOL_VIEWS and protocol != 'clip':
    protocols.require_view_source(config, protocol)
  try:
    mesh_lib.check_batch_divisible(protocols.eval_batch_size(config), 'eval_batch_size' if (
        config.get('eval_batch_size', -1) > 0) else 'global_batch_size')
  except ValueError as e:
    raise ConfigError(str(e)) from None
  workdir = os.path.abspath(workdir)  # orbax wants absolute paths
  mesh = mesh_lib.make_mesh()
  model = build_model(config.model)
  abstract = state_lib.abstract_train_state(model, optax.identity(),
                                            state_lib.init_input_shape(config.model), mesh)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(ckpt_dir):
    raise ValueError(f'no checkpoint in {ckpt_dir}')
  ckpt = Checkpointer(ckpt_dir, create=False)
  if step is not None and step >= 0:
    variables = ckpt.restore_variables(step, abstract)
  elif ckpt.latest_step() is None:
    raise ValueError(f'no checkpoint in {ckpt_dir}')
  else:  # the newest intact step; damaged newer ones are logged
    step, variables = ckpt.newest_intact_variables(abstract)
  ckpt.close()
  t0 = time.perf_counter()
  data = data_module(config.data)
  try:
    metrics = protocols.PROTOCOLS[protocol](config, model, variables, mesh, progress=progress)
  finally:
    broken_files.write_report(data, workdir)
  result = {'step': int(step), 'protocol': protocol, **metrics,
            'eval_seconds': round(time.perf_counter() - t0, 3),
            'num_devices': jax.device_count()}
  logging.info('eval %s at step %d: %s', protocol, step, result)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, f'eval_{protocol}.json'), 'w') as f:
      json.dump(result, f, indent=2, sort_keys=True)
  return result
