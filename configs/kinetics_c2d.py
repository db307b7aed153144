"""C2D ResNet-50 on Kinetics-400, 8x8 frames: Table 8 (72.0 top-1, 19.6 GFLOPs, 24.3 M)."""

from configs import base_kinetics as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_BAT
  config.model.name = 'c2d_resnet50'
  return config
