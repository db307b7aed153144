"""Which ImageNet config initialises which video config (docs/recipes.md): the ImageNet model's
arrays fit the video model's (``jax.eval_shape`` at full size, nothing allocated).

Per pair: nothing but the classifier differs in shape, every array of the video model's BAT
blocks other than the 3D temporal predictor loads (so ``groups`` k and ``size`` s match), and all
backbone convolutions load or inflate. Blocks the ImageNet model lacks (the Non-local rows started
from a plain ResNet-50, as the released ``scripts/train_c2d_nl.sh``; RSA layers) stay at init."""

import functools
import re

import pytest

from bat_jax import build_model
from bat_jax.training import transfer as inflate
from bat_jax.data import mesh as mesh_lib
from bat_jax.training import state as state_lib
from bat_jax.training.checkpoint import flat_shapes
from configs import args

# ImageNet config -> the video configs it initialises (released scripts/train_*.sh: --resume
# checkpoints/resnet50_bat.pth (k=8 blocks) for the BAT rows, checkpoints/resnet50.pth otherwise).
INIT_FROM = {
    'imagenet_r50_bat:k=8': ('kinetics_c2d_bat', 'kinetics_c2d_3dbat', 'kinetics_c2d_3dbat:frames=16',
                             'kinetics_i3d_bat'),
    'imagenet_r50_bat': ('mini_kinetics_c2d_bat', 'mini_kinetics_c2d_bat:tk=0'),
    'imagenet_r50': ('kinetics_c2d', 'kinetics_i3d', 'kinetics_c2d_nl', 'kinetics_i3d_nl',
                     'kinetics_tsm_r50', 'ssv1_rsa_r50', 'mini_kinetics_c2d',
                     'mini_kinetics_c2d_nl', 'rsa_ssv2_r50', 'rsa_diving48_r50', 'rsa_gym99_r50',
                     'rsa_gym288_r50'),
    'imagenet_r50_nl': ('mini_kinetics_c2d_nl_pretrained',),
    'demo_toy_image_r50_bat': ('demo_toy_c2d_3dbat',),  # the toy init_from chain (README)
}
_NEW_BLOCK = re.compile(r'_nonlocal\d+/|/conv2/(proj/|H1|H2|G|P1|I)|/predictor/predict_t/')


@functools.lru_cache(maxsize=None)
def _shapes(name: str) -> dict:
  config = args.load(name)
  model = build_model(config.model)
  return flat_shapes(state_lib.abstract_variables(
      model, state_lib.init_input_shape(config.model), mesh_lib.make_mesh()))


@pytest.mark.parametrize('source,target', [(s, t) for s, ts in INIT_FROM.items() for t in ts])
def test_imagenet_config_fits_the_video_config(source, target):
  plan = inflate.plan_transfer(_shapes(source), _shapes(target), video_from_image=True)
  assert not plan.mismatched, plan.describe()
  assert set(plan.reinit) == {'params/fc/kernel', 'params/fc/bias'}
  bat = [n for n in _shapes(target) if re.search(r'_bat\d+/', n)]
  assert [n for n in bat if n not in plan.load] == [n for n in bat if '/predict_t/' in n]
  stray = [n for n in plan.missing + plan.new if not _NEW_BLOCK.search(n)]
  assert not stray, stray
  assert len(plan.load) + len(plan.inflate) > 250


def test_every_video_recipe_has_an_imagenet_config():
  video = {t for ts in INIT_FROM.values() for t in ts}
  for name in ('kinetics_c2d', 'kinetics_c2d_bat', 'kinetics_c2d_3dbat', 'kinetics_c2d_nl',
               'kinetics_i3d', 'kinetics_i3d_bat', 'kinetics_i3d_nl', 'kinetics_tsm_r50',
               'mini_kinetics_c2d', 'mini_kinetics_c2d_bat', 'mini_kinetics_c2d_nl',
               'mini_kinetics_c2d_nl_pretrained', 'ssv1_rsa_r50', 'rsa_ssv2_r50',
               'rsa_diving48_r50', 'rsa_gym99_r50', 'rsa_gym288_r50'):
    assert name in video, name
