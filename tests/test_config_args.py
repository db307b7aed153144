"""Config arguments (``--config=configs/<file>.py:key=value``): the parser, and every command the
docs write parses through ``ml_collections.config_flags`` and passes the model registry's checks."""

import pathlib
import re

import pytest
from ml_collections.config_flags import config_flags

from bat_jax.models.registry import build_model
from configs import args

ROOT = pathlib.Path(__file__).resolve().parent.parent
# `--config=configs/<file>.py[:arg]` as written in a doc; `<name>` placeholders are not commands.
COMMAND = re.compile(r'--config=(configs/[a-z0-9_]+\.py(?::[^\s`|\\]*)?)')


def _commands(doc: str) -> list[str]:
  return sorted(set(COMMAND.findall((ROOT / doc).read_text())))


def test_parse_types_each_value_as_its_default():
  got = args.parse('k=16,matrix=full,on=false,scale=0.5', k=4, matrix='block', on=True,
                   scale=1.0, one_in='')
  assert got.to_dict() == dict(k=16, matrix='full', on=False, scale=0.5, one_in='')
  assert args.parse(None, k=4).to_dict() == args.parse('', k=4).to_dict() == dict(k=4)
  assert args.parse(' k = 2 ', k=4).k == 2


def test_a_bare_value_sets_the_first_argument():
  assert args.parse('cs4', variant='', other=1).to_dict() == dict(variant='cs4', other=1)
  assert (args.load('cifar100_preresnet56_snl:cs4').to_dict()
          == args.load('configs/cifar100_preresnet56_snl.py:variant=cs4').to_dict())


@pytest.mark.parametrize('arg,message', [
    ('kk=3', "unknown config argument 'kk'; allowed: ['k', 'matrix']"),
    ('k=a', "config argument k='a': expected int"),
    ('k=1,k=2', "config argument 'k' is given twice"),
    ('k=1,matrix', "config argument 'matrix' has no value"),
])
def test_bad_arguments_are_named(arg, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    args.parse(arg, k=4, matrix='block')


@pytest.mark.parametrize('spec,message', [
    ('imagenet_r50_bat:groups=2',
     "unknown config argument 'groups'; allowed: ['k', 'matrix', 'one_in']"),
    ('kinetics_c2d_3dbat:frames=32', 'frames=32; allowed (Table 9): [8, 16, 64]'),
    ('kinetics_r101_c2d_3dbat:frames=64', 'frames=64; allowed (Table 9, ResNet-101): 8, 16'),
    ('imagenet_r50_bat:one_in=res9', "resnet50 has no stage ['res9']"),
    ('cifar100_preresnet56_nl:cs3', "CIFAR variant 'cs3'"),
])
def test_recipe_files_reject_bad_arguments(spec, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    args.load(spec)


def test_config_flags_passes_the_argument_to_get_config():
  parser = config_flags.ConfigFileFlagParser('config')
  assert parser.parse('configs/imagenet_r50_bat.py:k=16').model.block.groups == 16
  assert parser.parse('configs/imagenet_r50_bat.py').model.block.groups == 4
  clip = parser.parse('configs/kinetics_c2d_3dbat.py:frames=64')
  assert tuple(clip.model.input_size) == (64, 224, 224) and clip.data.frame_stride == 1


@pytest.mark.parametrize('command', _commands('docs/recipes.md') + _commands('README.md'))
def test_every_documented_command_parses_and_builds(command):
  """The tables of docs/recipes.md (and the README) map paper rows to these commands."""
  config = config_flags.ConfigFileFlagParser('config').parse(str(ROOT / command))
  build_model(config.model)  # the registry's field checks, nothing traced


def test_recipes_tables_hold_the_arguments_rows():
  """Every row that a file's argument now gives has its command in docs/recipes.md."""
  commands = _commands('docs/recipes.md')
  for row in ('imagenet_r50_bat.py:k=0', 'imagenet_r50_bat.py:k=1', 'imagenet_r50_bat.py:k=2',
              'imagenet_r50_bat.py:k=16', 'imagenet_r50_bat.py:matrix=full',
              'imagenet_r50_bat.py:matrix=downsample', 'imagenet_r50_bat.py:one_in=res3',
              'imagenet_r50_bat.py:one_in=res4', 'imagenet_r50_bat.py:one_in=res5',
              'imagenet_r50_bat.py:one_in=res3+res4', 'mini_kinetics_c2d_bat.py:tk=0',
              'mini_kinetics_c2d_bat.py:tk=1', 'mini_kinetics_c2d_bat.py:tk=2',
              'kinetics_c2d_3dbat.py:frames=16', 'kinetics_c2d_3dbat.py:frames=64',
              'kinetics_r101_c2d_3dbat.py:frames=16'):
    assert f'configs/{row}' in commands, row
