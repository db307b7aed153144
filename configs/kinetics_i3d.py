"""I3D ResNet-50 (5x7x7 stem, 3x1x1 inflation plan) on Kinetics-400: Table 8 (72.7, 28.4 GFLOPs, 28.4 M)."""

from configs import base_kinetics as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_BAT
  config.model.name = 'i3d_resnet50'
  return config
