"""I3D ResNet-50 + 5 2D BAT-Blocks (k=8): Table 8 (75.1, 33.6 GFLOPs, 32.9 M)."""

from configs import base_kinetics as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_BAT
  config.model.name = 'i3d_resnet50'
  config.model.block = blocks.bat(groups=8)
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  return config
