"""ResNet-18 + 2 BAT-Blocks (k=4, s=7): Table 5 'ResNet-18 +BAT' (71.3 top-1; +0.03 GFLOPs, +0.13 M).

Placement as ``nl_mod 2 2 1000`` (res3 {1}, res4 {1}); the released README uses block dropout 0.2
only "for models deeper than ResNet-34", so it is 0 here. +128,232 params, +0.034 GMACs."""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnet18'
  config.model.block = blocks.image_bat(groups=4, dropout_rate=0.0)
  config.model.insertions = blocks.insertions({'res3': (1,), 'res4': (1,)})
  return config
