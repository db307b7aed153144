"""ResNeXt-50 (32x4d) + 5 BAT-Blocks (k=4): Table 6 'ResNext-50 (32 x 4d) + BAT' (78.6, 5.6 GFLOPs, 29.7 M).

The released image code's ``nlnext50_32x4d`` with ``nl_mod 2 2 1000``: blocks at res3 {1,3},
res4 {1,3,5} on D = 512 / 1024 (a ResNeXt stage outputs what a ResNet stage does):
29,706,092 params, 5.53 GMACs."""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnext50_32x4d'
  config.model.block = blocks.image_bat(groups=4)
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  return config
