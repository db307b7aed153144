"""Invalid configs, fuzzed (issue 16, item 7): random invalid values (negative or zero sizes, values
out of range, unknown names) stop ``train_and_evaluate`` -- what ``train.py`` runs -- with a
``ConfigError`` naming the field, before any compilation; a value of the wrong type on the
command line stops ``train.py`` at flag parsing, naming the flag, without a traceback.

CI: 20 values; ``BAT_JAX_RELIABILITY_LONG=1``: 100."""

import os

import numpy as np
import pytest

from bat_jax.training import config_checks, loop
from tests import helpers_train as h
from tests.reliability.conftest import LONG, record

# field -> invalid values of the field's type (ml_collections refuses other types on assignment).
INVALID = {
    'global_batch_size': [-16, 0], 'lr_base_batch_size': [-1, 0], 'num_epochs': [-1, 0],
    'base_learning_rate': [-0.1, -1.0], 'momentum': [-0.5, 1.5], 'weight_decay': [-1e-4],
    'grad_clip_norm': [-1.0], 'lr_decay_factor': [-0.1, 0.0], 'warmup_epochs': [-1],
    'label_smoothing': [-0.1, 1.0], 'log_every_steps': [0, -5], 'keep_checkpoints': [-2],
    'max_nonfinite_steps': [0, -1], 'max_failed_saves': [0, -1], 'optimizer': ['adamw2', ''],
    'schedule': ['linear', 'Step'], 'weight_decay_on': ['bn'], 'eval_every_steps': [-5, -2],
    'checkpoint_every_steps': [-3], 'eval_batch_size': [-7, 0], 'model.name': ['resnet7', ''],
    'model.width': [-4, 0], 'model.num_classes': [0, -1], 'model.dropout_rate': [-0.5, 1.5],
    'model.input_size': [(-1, 32), (32, 0)], 'data.name': ['nope', 'kinetics'],
    'data.num_classes': [0], 'data.crop_size': [-32, 0], 'data.num_train_examples': [0],
    'data.num_eval_examples': [-1], 'lr_decay_epochs': [(-1,), (3, 1)],
    'init_from': ['/nonexistent/run'],
}


def draws(n: int, seed: int = 16) -> list[tuple[str, object]]:
  rng = np.random.default_rng(seed)
  pairs = [(f, v) for f, vs in INVALID.items() for v in vs]
  return [pairs[i] for i in rng.choice(len(pairs), n, replace=n > len(pairs))]


def test_fuzzed_invalid_values_stop_with_a_config_error_naming_the_field(tmp_path, monkeypatch):
  compiled = []
  monkeypatch.setattr(loop, 'make_train_step', lambda *a, **k: compiled.append(a))
  cases = draws(100 if LONG else 20)
  for i, (field, value) in enumerate(cases):
    config = h.get_config('image')
    node = config
    *parents, leaf = field.split('.')
    for part in parents:
      node = node[part]
    node[leaf] = value
    with pytest.raises(config_checks.ConfigError) as e:
      loop.train_and_evaluate(config, str(tmp_path / str(i)))
    assert leaf in str(e.value), (field, value, str(e.value))
  assert not compiled
  record('invalid config values (fuzzed)', injected=len(cases), survived=len(cases),
         details=f'{len(set(f for f, _ in cases))} fields')


def test_wrong_type_on_the_command_line_names_the_flag(tmp_path):
  proc = h.run(h.train_cmd(str(tmp_path / 'run'), overrides=['--config.global_batch_size=abc']),
               h.env_for(1))
  assert proc.returncode != 0
  assert 'global_batch_size' in proc.stderr and 'Traceback' not in proc.stderr
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints')
