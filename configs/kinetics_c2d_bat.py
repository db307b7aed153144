"""C2D ResNet-50 + 5 2D BAT-Blocks (k=8): Table 8 'C2D + BAT' (74.6, 24.8 GFLOPs, 29.2 M)."""

from configs import base_kinetics as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_BAT
  config.model.name = 'c2d_resnet50'
  config.model.block = blocks.bat(groups=8)
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  return config
