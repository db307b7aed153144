"""C2D ResNet-50 + 5 BAT-Blocks (k_s = 4, k_t = 0) on Mini-Kinetics-200: Table 7 'BAT (4, 0)' (69.5 val, 24.76 GFLOPs, 28.60 M): 2D BAT-Blocks, no temporal attention.

BAT (4, 4) is configs/mini_kinetics_c2d_bat.py; the blocks start from ImageNet (Pre-trained: Yes):
--config.init_from=<an ImageNet ResNet-50 + BAT workdir>."""

from configs import mini_kinetics_c2d_bat


def get_config():
  config = mini_kinetics_c2d_bat.get_config()
  config.model.block.temporal_groups = 0
  return config
