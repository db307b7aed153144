"""ResNet-50 + 5 NL blocks (embedded Gaussian) at the BAT positions on ImageNet: Table 5 (77.5)."""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnet50'
  config.model.block = blocks.nonlocal_block()
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  return config
