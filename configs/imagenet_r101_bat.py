"""ResNet-101 + BAT on ImageNet: Table 6 (79.1 top-1, 49.2 M, 9.2 GFLOPs); released README plan `2 7`."""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnet101'
  config.model.block = blocks.bat(groups=4, normalization='sigmoid')
  config.model.insertions = blocks.insertions(
      blocks.every({'res3': 2, 'res4': 7}, 'resnet101'))
  return config
