"""ResNet-50 + 5 BAT-Blocks (k=4, s=7) on ImageNet: Table 2 'block-based', Table 4 k=4, Table 6 (78.3 top-1, 30.23 M, 5.44 GFLOPs).

The released image code normalises P, Q with a sigmoid and an L1 norm; the ablations override
`model.block.matrix` ('full' / 'downsample', Table 2) and `model.block.groups` (Table 4; 0 fixes
P = Q = I)."""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnet50'
  config.model.block = blocks.bat(groups=4, normalization='sigmoid')
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  return config
