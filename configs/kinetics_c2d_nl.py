"""C2D ResNet-50 + 5 NL blocks (embedded Gaussian, spacetime, 1x2x2 subsampling): Table 8 (73.8, 30.7 GFLOPs, 31.7 M)."""

from configs import base_kinetics as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_NONLOCAL
  config.model.name = 'c2d_resnet50'
  config.model.block = blocks.nonlocal_block()
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  return config
