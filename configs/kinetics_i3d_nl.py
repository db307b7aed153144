"""I3D ResNet-50 + 5 NL blocks: Table 8 (73.5, 39.5 GFLOPs, 35.4 M)."""

from configs import base_kinetics as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_NONLOCAL
  config.model.name = 'i3d_resnet50'
  config.model.block = blocks.nonlocal_block()
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  return config
