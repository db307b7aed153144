"""Config errors stop the run at start-up with a message naming the field and what is allowed,
before any device, data or compile work (nothing is written to the workdir)."""

import importlib
import importlib.util
import os

import ml_collections
import pytest

from bat_jax.data.registry import DATA_SOURCES
from bat_jax.training import config_checks, loop
from configs import base_imagenet, base_kinetics, demo_toy_c2d_3dbat
from tests import helpers_train as h


def _error(config) -> str:
  with pytest.raises(config_checks.ConfigError) as e:
    config_checks.validate_config(config)
  return str(e.value)


def test_unknown_model_through_train_py(tmp_path):
  workdir = str(tmp_path / 'run')
  proc = h.run([*h.train_cmd(workdir), '--config.model.name=resnet51'], h.env_for(1), timeout=60)
  assert proc.returncode == 1
  assert "config error: model.name='resnet51' is not a known model; allowed: [" in proc.stderr
  assert "'resnet50'" in proc.stderr and "'c2d_resnet50'" in proc.stderr
  assert 'Traceback' not in proc.stderr
  assert not os.path.exists(workdir)


def test_unknown_model():
  cfg = base_kinetics.get_config()
  cfg.model.name = 'c2d_resnet51'
  msg = _error(cfg)
  assert "model.name='c2d_resnet51'" in msg and 'allowed' in msg and "'i3d_resnet50'" in msg


def test_unknown_block():
  cfg = h.get_config('image_bat')
  cfg.model.block.type = 'batt'
  msg = _error(cfg)
  assert "model.block.type='batt' is not a known block; allowed:" in msg
  assert "'bat'" in msg and "'none'" in msg


def test_groups_that_do_not_divide_the_channels():
  cfg = h.get_config('image_bat')  # res3 of a width-4 ResNet-18: 8 channels, 4 in the transform
  cfg.model.block.groups = 3
  msg = _error(cfg)
  assert 'model.block.groups=3 must divide the 4 channels' in msg
  cfg = demo_toy_c2d_3dbat.get_config()  # 64 channels at res3, 32 in the transform
  cfg.model.block.temporal_groups = 5
  assert 'model.block.temporal_groups=5 must divide the 32 channels' in _error(cfg)


def test_batch_not_divisible_by_device_count(tmp_path):
  workdir = str(tmp_path / 'run')
  proc = h.run([*h.train_cmd(workdir), '--config.global_batch_size=6'], h.env_for(4),
               timeout=60)
  assert proc.returncode == 1
  assert ('config error: config.global_batch_size=6 is not divisible by the device count 4 '
          '(1 process(es) x 4 local device(s)); allowed: positive multiples of 4') in proc.stderr
  assert not os.path.exists(workdir)
  proc = h.run([*h.train_cmd(workdir), '--config.eval_batch_size=10'], h.env_for(4), timeout=60)
  assert proc.returncode == 1
  assert 'config.eval_batch_size=10 is not divisible by the device count 4' in proc.stderr
  assert not os.path.exists(workdir)


def test_missing_data_dir():
  cfg = base_kinetics.get_config()  # root defaults to ''
  msg = _error(cfg)
  assert 'config.data.root is empty' in msg and 'bat_jax.data.toy_video' in msg
  cfg.data.root = '/nonexistent/kinetics'
  assert "config.data.root='/nonexistent/kinetics' is not a directory" in _error(cfg)
  cfg = demo_toy_c2d_3dbat.get_config()
  cfg.data.root = os.path.join(os.path.dirname(__file__), 'no_such_toy_video')
  assert 'is not a directory: set it to the data set folder' in _error(cfg)


def test_unknown_or_unavailable_data_set():
  cfg = base_kinetics.get_config()
  cfg.data.name = 'kinetics700'
  msg = _error(cfg)
  assert "config.data.name='kinetics700' is not a known data set; allowed:" in msg
  assert "'kinetics400'" in msg and "'synthetic'" in msg
  # Every known name has its module (so validate_config needs no "not implemented" branch).
  assert all(importlib.util.find_spec(m) for m in DATA_SOURCES.values())


def test_training_field_values():
  cfg = h.get_config('image')
  cfg.schedule = 'linear'
  assert "config.schedule='linear'; allowed: ['step', 'cosine']" in _error(cfg)
  cfg = h.get_config('image')
  cfg.weight_decay_on = 'bn'
  assert "config.weight_decay_on='bn'; allowed: ['all', 'conv_fc_weights']" in _error(cfg)
  cfg = h.get_config('image')
  cfg.lr_decay_epochs = (60, 30)
  assert 'config.lr_decay_epochs=(60, 30); allowed: increasing epochs' in _error(cfg)
  cfg = h.get_config('image')
  cfg.init_from = '/nonexistent/run'
  assert "config.init_from='/nonexistent/run': no checkpoint there" in _error(cfg)


@pytest.mark.parametrize('field, value, message', [
    ('warmup_granularity', 'iteration', "config.warmup_granularity='iteration'; allowed"),
    ('warmup_start_factor', 1.5, 'config.warmup_start_factor=1.5; allowed: [0, 1]'),
    ('warmup_epochs', 2.5, "config.warmup_epochs=2.5: warmup_granularity='epoch'"),
])
def test_warmup_field_values(field, value, message):
  cfg = h.get_config('image').to_dict()  # a plain dict: warmup_epochs may become a float
  cfg.update({'warmup_granularity': 'epoch', field: value})
  assert message in _error(ml_collections.ConfigDict(cfg))


def test_crop_scale_values():
  cfg = base_imagenet.get_config()
  cfg.data.data_dir = '/tmp'
  cfg.data.random_resized_crop_scale = (0.5, 0.2)
  assert 'config.data.random_resized_crop_scale=(0.5, 0.2); allowed' in _error(cfg)


def test_multiscale_crop_needs_one_short_side():
  """Caught before any data work (the Non-local rows jitter the short side: scale_jitter)."""
  cfg = h.get_config('video')
  cfg.data.train_augment = 'multiscale_crop'
  cfg.data.train_short_side = (256, 320)
  assert "config.data.train_short_side=(256, 320): train_augment='multiscale_crop'" in _error(cfg)
  cfg.data.train_augment = 'scale_jitter'
  config_checks.validate_config(cfg)
VIDEO_RECIPES = ('kinetics_c2d_3dbat', 'kinetics_i3d_nl', 'kinetics_tsm_r50',
                 'mini_kinetics_c2d_bat', 'ssv1_rsa_r50')


@pytest.mark.parametrize('name', VIDEO_RECIPES)
def test_video_recipes_need_init_from(name):
  """A video recipe without ``init_from`` stops naming the field and the ways to get weights;
  ``'scratch'`` says random weights are meant."""
  cfg = importlib.import_module(f'configs.{name}').get_config()
  cfg.data = h.get_config('video').data  # a data set that needs no folder
  cfg.init_from = ''
  msg = _error(cfg)
  assert msg.startswith('config.init_from is empty, but ') and 'is a video model' in msg
  assert 'configs/imagenet_r50*.py' in msg and 'python -m bat_jax.tools.import_torch' in msg
  assert '--config.init_from=scratch' in msg
  cfg.init_from = 'scratch'
  config_checks.validate_config(cfg)


def test_missing_init_from_stops_before_any_work(tmp_path):
  cfg = h.get_config('video')
  cfg.init_from = ''
  workdir = tmp_path / 'run'
  with pytest.raises(config_checks.ConfigError, match='config.init_from is empty'):
    loop.train_and_evaluate(cfg, str(workdir))
  assert not workdir.exists()
  image = h.get_config('image')  # image recipes start at random weights by default
  image.init_from = ''
  config_checks.validate_config(image)
