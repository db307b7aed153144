"""Config checks: cheap, before any device, data or compile work (``validate_config``), and those
that need the run's devices (``check_devices``). Every error is a ``ConfigError`` naming the field
and its allowed values."""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import ml_collections

from bat_jax.data import mesh as mesh_lib
from bat_jax.data import video
from bat_jax.data.registry import DATA_SOURCES
from bat_jax.evaluation.protocols import ConfigError
from bat_jax.evaluation.steps import LOSSES
from bat_jax.models.registry import build_model, is_video
from bat_jax.training import optim
from bat_jax.training.checkpoint import resolve_state_dir

INIT_FROM_SCRATCH = 'scratch'  # config.init_from: random weights, said explicitly

_REQUIRED = ('seed', 'model', 'data', 'global_batch_size', 'num_epochs', 'optimizer', 'momentum',
             'base_learning_rate', 'lr_base_batch_size', 'schedule', 'warmup_epochs',
             'lr_decay_epochs', 'lr_decay_factor', 'weight_decay', 'weight_decay_on',
             'grad_clip_norm', 'label_smoothing')
_DATA_DIR_FIELDS = {'root': 'the data set folder (annotations + train/ val/); for the toy set run '
                            '`python -m bat_jax.data.toy_video --out data/toy_video` and pass '
                            '--config.data.root=data/toy_video',
                    'data_dir': 'the tfds data dir holding the data set'}
# Data sets that read only one of the folder fields (the others may stay empty in the config).
_DATA_DIR_FIELDS_BY_NAME = {'imagenet2012': ('data_dir',), 'imagenet_folder': ('root',),
                            'cub200': ('data_dir',), 'cub200_folder': ('root',)}


# Numeric fields: (dotted name, test, allowed values); a field the config lacks is not checked.
_RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ('base_learning_rate', lambda v: v >= 0, '>= 0'),
    ('momentum', lambda v: 0 <= v < 1, '[0, 1)'),
    ('weight_decay', lambda v: v >= 0, '>= 0'),
    ('grad_clip_norm', lambda v: v >= 0, '>= 0 (0: off)'),
    ('lr_decay_factor', lambda v: v > 0, '> 0'),
    ('log_every_steps', lambda v: v > 0, '> 0'),
    ('device_prefetch', lambda v: v >= 0, '>= 0 (batches put on the devices ahead; 0: off)'),
    ('keep_checkpoints', lambda v: v >= 0, '>= 0 (0: keep all)'),
    ('checkpoint_every_steps', lambda v: v >= -1, '> 0, or 0 / -1 (only at the end)'),
    ('eval_batch_size', lambda v: v == -1 or v > 0, '-1 (global_batch_size) or > 0'),
    ('eval_every_steps', lambda v: v >= -1, '> 0, or 0 / -1 (eval_every_epochs)'),
    ('model.width', lambda v: v > 0, '> 0'),
    ('model.num_classes', lambda v: v > 0, '> 0'),
    ('model.dropout_rate', lambda v: 0 <= v < 1, '[0, 1)'),
    ('model.input_size', lambda v: all(int(d) > 0 for d in v), 'positive sizes'),
)


def _check_ranges(config: ml_collections.ConfigDict, training: bool) -> None:
  for name, ok, allowed in _RANGES:
    if not training and not name.startswith('model.'):
      continue
    node: Any = config
    for part in name.split('.'):
      node = node.get(part) if hasattr(node, 'get') else None
    if node is not None and not ok(node):
      raise ConfigError(f'config.{name}={node!r}; allowed: {allowed}')


def validate_config(config: ml_collections.ConfigDict, *, training: bool = True) -> None:
  """Raises ``ConfigError`` naming the field and its allowed values."""
  if training:
    missing = [f for f in _REQUIRED if f not in config]
    if missing:
      raise ConfigError(f'config lacks field(s) {missing}; start from configs/base_imagenet.py or '
                        'configs/base_kinetics.py')
  _check_ranges(config, training)
  try:
    build_model(config.model)
  except ValueError as e:  # build_model's messages name the model.* field
    raise ConfigError(str(e)) from None
  _validate_data(config.data)
  loss = config.get('loss', LOSSES[0])
  if loss not in LOSSES:
    raise ConfigError(f'config.loss={loss!r}; allowed: {list(LOSSES)}')
  if not training:
    return
  if config.optimizer not in optim.OPTIMIZERS:
    raise ConfigError(f'config.optimizer={config.optimizer!r}; allowed: {list(optim.OPTIMIZERS)}')
  if config.schedule not in optim.SCHEDULES:
    raise ConfigError(f'config.schedule={config.schedule!r}; allowed: {list(optim.SCHEDULES)}')
  if config.get('cosine_span', 'after_warmup') not in optim.COSINE_SPANS:
    raise ConfigError(f'config.cosine_span={config.cosine_span!r}; allowed: '
                      f'{list(optim.COSINE_SPANS)}')
  if config.weight_decay_on not in optim.WEIGHT_DECAY_ON:
    raise ConfigError(f'config.weight_decay_on={config.weight_decay_on!r}; allowed: '
                      f'{list(optim.WEIGHT_DECAY_ON)}')
  fault_limits = tuple(f for f in ('max_nonfinite_steps', 'max_failed_saves') if f in config)
  for field in ('global_batch_size', 'lr_base_batch_size') + fault_limits:
    if not isinstance(config[field], int) or config[field] <= 0:
      raise ConfigError(f'config.{field}={config[field]!r}; allowed: positive integers')
  if config.get('num_train_steps', -1) <= 0 and not config.num_epochs > 0:
    raise ConfigError(f'config.num_epochs={config.num_epochs!r} must be > 0 (or set '
                      'config.num_train_steps > 0)')
  decay = list(config.lr_decay_epochs)
  if any(e < 0 for e in decay) or decay != sorted(decay):
    raise ConfigError(f'config.lr_decay_epochs={tuple(decay)}; allowed: increasing epochs >= 0')
  group = config.model.get('bn_group_size', 0)
  if group and config.global_batch_size % group:
    raise ConfigError(f'config.model.bn_group_size={group} must divide '
                      f'config.global_batch_size={config.global_batch_size} (0: BatchNorm '
                      'statistics over the whole batch)')
  bias_lr_mult = config.get('bias_lr_mult', 1.0)
  if isinstance(bias_lr_mult, bool) or not isinstance(bias_lr_mult, (int, float)) or \
      bias_lr_mult <= 0:
    raise ConfigError(f'config.bias_lr_mult={bias_lr_mult!r}; allowed: a number > 0 (1: biases '
                      'share the learning rate; 2: the released video code)')
  if not 0.0 <= config.label_smoothing < 1.0:
    raise ConfigError(f'config.label_smoothing={config.label_smoothing}; allowed: [0, 1)')
  if config.label_smoothing and loss != LOSSES[0]:
    raise ConfigError(f'config.label_smoothing={config.label_smoothing} applies to '
                      f"config.loss='{LOSSES[0]}' only (config.loss={loss!r}); set it to 0")
  if config.warmup_epochs < 0:
    raise ConfigError(f'config.warmup_epochs={config.warmup_epochs}; allowed: >= 0')
  granularity = config.get('warmup_granularity', 'step')
  if granularity not in optim.WARMUP_GRANULARITY:
    raise ConfigError(f'config.warmup_granularity={granularity!r}; allowed: '
                      f'{list(optim.WARMUP_GRANULARITY)}')
  if granularity == 'epoch' and config.warmup_epochs != int(config.warmup_epochs):
    raise ConfigError(f"config.warmup_epochs={config.warmup_epochs}: warmup_granularity='epoch' "
                      'needs a whole number of epochs')
  start_factor = config.get('warmup_start_factor', 0.0)
  if not isinstance(start_factor, (int, float)) or not 0.0 <= start_factor <= 1.0:
    raise ConfigError(f'config.warmup_start_factor={start_factor!r}; allowed: [0, 1] (the '
                      'warm-up starts at this fraction of the peak lr)')
  _validate_init_from(config)


def _validate_init_from(config: ml_collections.ConfigDict) -> None:
  """Video recipes start from ImageNet weights (every paper does; the released BAT video script
  passes ``--resume <ImageNet checkpoint> --soft_resume``): an empty ``init_from`` stops them;
  ``'scratch'`` says random weights are meant."""
  init_from = config.get('init_from', '')
  if init_from == INIT_FROM_SCRATCH:
    return
  if not init_from:
    if is_video(config.model):
      raise ConfigError(
          f'config.init_from is empty, but {config.model.name} is a video model: the papers '
          'initialise video models from ImageNet weights (the Charades and UCF-101 recipes from '
          'a Kinetics run of the config docs/recipes.md names). Get them by training an ImageNet '
          'config here (configs/imagenet_r50*.py; docs/recipes.md says which one fits which '
          'video config) or by importing torchvision / the authors\' released ImageNet '
          'checkpoints with `python -m bat_jax.tools.import_torch`, then pass '
          '--config.init_from=<that workdir>; or pass --config.init_from=scratch to train from '
          'random weights.')
    return
  try:
    resolve_state_dir(init_from)
  except ValueError as e:
    raise ConfigError(str(e)) from None


def _validate_data(data: ml_collections.ConfigDict) -> None:
  name = data.get('name')
  scale = data.get('random_resized_crop_scale')
  if scale is not None and not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
    raise ConfigError(f'config.data.random_resized_crop_scale={tuple(scale)}; allowed: (lo, hi) '
                      'area fractions with 0 < lo <= hi (hi may exceed 1, as the released SNL '
                      'code: such tries do not fit and are redrawn)')
  if name not in DATA_SOURCES:
    raise ConfigError(f'config.data.name={name!r} is not a known data set; allowed: '
                      f'{sorted(DATA_SOURCES)}')
  if 'train_augment' in data:
    try:
      video.check_train_augment(data.train_augment, data.get('train_short_side', (256, 256)))
    except ValueError as e:
      raise ConfigError(str(e)) from None
  if name == 'synthetic':
    for field in ('num_classes', 'crop_size', 'num_train_examples', 'num_eval_examples'):
      if not isinstance(data.get(field), int) or data.get(field) <= 0:
        raise ConfigError(f'config.data.{field}={data.get(field)!r}; allowed: positive integers')
    return
  for field in _DATA_DIR_FIELDS_BY_NAME.get(name, tuple(_DATA_DIR_FIELDS)):
    what = _DATA_DIR_FIELDS[field]
    if field in data or name in _DATA_DIR_FIELDS_BY_NAME:
      value = data.get(field)
      if not value:
        raise ConfigError(f'config.data.{field} is empty: set it to {what}')
      if not os.path.isdir(value):
        raise ConfigError(f'config.data.{field}={value!r} is not a directory: set it to {what}')


def check_devices(config: ml_collections.ConfigDict) -> None:
  """Raises ``ConfigError`` when the batch sizes or ``model.bn_group_size`` do not divide over this
  run's devices and processes."""
  try:
    mesh_lib.check_batch_divisible(config.global_batch_size)
    group = config.model.get('bn_group_size', 0)
    per_process = config.global_batch_size // jax.process_count()
    if group and per_process % group:
      raise ConfigError(f'config.model.bn_group_size={group} must divide the per-process batch '
                        f'{per_process} (global_batch_size {config.global_batch_size} over '
                        f'{jax.process_count()} processes), so no BatchNorm group spans two hosts')
    if config.get('eval_batch_size', -1) > 0:
      mesh_lib.check_batch_divisible(config.eval_batch_size, 'eval_batch_size')
  except ValueError as e:
    raise ConfigError(str(e)) from None
