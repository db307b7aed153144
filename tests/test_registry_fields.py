"""Registry fields: ``is_video`` per backbone entry, stage sizes for insertion plans, and the one
``validate_fields`` check the blocks and ``build_model`` share."""

import re

import pytest

from bat_jax.blocks.bat import BATBlock
from bat_jax.blocks.fields import config_fields, validate_fields
from bat_jax.blocks.nonlocal_ import NonLocalBlock
from bat_jax.blocks.rsa import RSALayer
from bat_jax.blocks.spectral import ChebyshevNonLocalBlock, SpectralNonLocalBlock
from bat_jax.models import registry
from configs import blocks


# Clip backbones by family (Wang et al. C2D / I3D, TSN, TSM, RSA, the Non-local paper's own
# 32-frame models, Hara et al.'s 3D ResNets); everything else takes images.
VIDEO_FAMILIES = ('c2d_', 'i3d_', 'tsn_', 'tsm_', 'rsa_', 'nlpaper_', 'hara3d_')


@pytest.mark.parametrize('name', sorted(registry.BACKBONES))
def test_is_video_is_the_entrys_field(name):
  assert registry.is_video({'name': name}) == name.startswith(VIDEO_FAMILIES)
  assert registry.BACKBONES[name].get('is_video', False) == registry.is_video({'name': name})


def test_is_video_is_not_a_module_field():
  """The field stays in the registry: build_model does not pass it to ResNet."""
  model = registry.build_model(dict(name='c2d_resnet50', num_classes=4))
  assert not hasattr(model, 'is_video')
  assert registry.is_video({'name': 'resnet50'}) is False
  assert registry.is_video({'name': 'no_such_net'}) is False


def test_stage_sizes_come_from_the_registry():
  assert registry.stage_sizes('resnet50') == {'res2': 3, 'res3': 4, 'res4': 6, 'res5': 3}
  assert registry.stage_sizes('i3d_resnet101') == {'res2': 3, 'res3': 4, 'res4': 23, 'res5': 3}
  assert registry.stage_sizes('preresnet56') == {'res1': 9, 'res2': 9, 'res3': 9}
  assert blocks.every({'res3': 4, 'res4': 12}, 'resnet152') == {'res3': (3, 7),
                                                               'res4': (11, 23, 35)}
  assert blocks.before_last(('res3', 'res5'), 'resnet50') == {'res3': (2,), 'res5': (1,)}
  with pytest.raises(ValueError, match=re.escape("resnet50 has no stage ['res1']")):
    blocks.before_last(('res1',), 'resnet50')


def test_validate_fields_fills_defaults_and_names_bad_fields():
  got = validate_fields(BATBlock, {'groups': 8}, choices={'matrix': ('block', 'full')})
  assert got['groups'] == 8 and got['size'] == 7 and got['matrix'] == 'block'
  assert 'dtype' not in got and 'bn_group_size' not in got
  with pytest.raises(ValueError, match=re.escape("model.block has unknown field(s) ['window']")):
    validate_fields(BATBlock, {'window': 3})
  with pytest.raises(ValueError, match=re.escape("model.block.matrix='full'; allowed: ['block']")):
    validate_fields(BATBlock, {'matrix': 'full'}, choices={'matrix': ('block',)})
  with pytest.raises(ValueError, match=re.escape("model.rsa has unknown field(s) ['features']")):
    validate_fields(RSALayer, {'features': 8}, prefix='model.rsa', exclude=('features',))
  with pytest.raises(ValueError, match=re.escape("kernel_type='Q'; allowed")):
    validate_fields(RSALayer, {'kernel_type': 'Q'}, prefix='', choices={'kernel_type': ('V',)})


@pytest.mark.parametrize('block', [BATBlock, NonLocalBlock, SpectralNonLocalBlock,
                                   ChebyshevNonLocalBlock])
def test_every_block_rejects_an_unknown_field_by_name(block):
  assert 'reduction' in config_fields(block) and 'dtype' not in config_fields(block)
  with pytest.raises(ValueError, match=re.escape("model.block has unknown field(s) ['window']")):
    block.validate(16, {'window': 3})
