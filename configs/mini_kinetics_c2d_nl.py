"""C2D ResNet-50 + 5 NL blocks on Mini-Kinetics-200: Table 7 'NL, Pre-trained: No' (67.7, 30.69 GFLOPs, 31.28 M).

Embedded Gaussian, spacetime, (1,2,2) subsampling of phi / g (released video code), res3 {1,3},
res4 {1,3,5}; the blocks start from their zero-initialised BN (identity). 31,276,296 params; 27.62
GMACs, 30.61 with the affinity products counted 2 per multiply-add as the paper does
(docs/nonlocal.md). The 'Pre-trained: Yes' row is configs/mini_kinetics_c2d_nl_pretrained.py."""

from configs import blocks
from configs import mini_kinetics_c2d


def get_config():
  config = mini_kinetics_c2d.get_config()
  config.model.block = blocks.nonlocal_block()
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  # The Non-local paper's augmentation (Wang et al.; BAT §4.1 cites it): scale jitter
  # [256, 320], random 224 crop.
  config.data.train_augment = 'scale_jitter'
  config.data.train_short_side = (256, 320)
  return config
