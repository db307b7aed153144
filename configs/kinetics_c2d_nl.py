"""C2D ResNet-50 + 5 NL blocks (embedded Gaussian, spacetime, 1x2x2 subsampling): Table 8 (73.8, 30.7 GFLOPs, 31.7 M)."""

from configs import base_kinetics as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_NONLOCAL
  config.model.name = 'c2d_resnet50'
  config.model.block = blocks.nonlocal_block()
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  # The Non-local paper's augmentation (Wang et al.; BAT §4.1 cites it): scale jitter
  # [256, 320], random 224 crop.
  config.data.train_augment = 'scale_jitter'
  config.data.train_short_side = (256, 320)
  return config
