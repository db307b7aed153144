"""ResNet-152 + BAT on ImageNet: Table 6 (79.4 top-1, 64.9 M, 12.9 GFLOPs); released README plan `4 12`."""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnet152'
  config.model.block = blocks.bat(groups=4, normalization='sigmoid')
  config.model.insertions = blocks.insertions(
      blocks.every({'res3': 4, 'res4': 12}, 'resnet152'))
  return config
