"""C2D ResNet-50 + 5 BAT-Blocks (k_s = 4, k_t = 1) on Mini-Kinetics-200: Table 7 'BAT (4, 1)' (70.3 val, 24.77 GFLOPs, 28.60 M).

BAT (4, 4) is configs/mini_kinetics_c2d_bat.py; the blocks start from ImageNet (Pre-trained: Yes):
--config.init_from=<an ImageNet ResNet-50 + BAT workdir>."""

from configs import mini_kinetics_c2d_bat


def get_config():
  config = mini_kinetics_c2d_bat.get_config()
  config.model.block.temporal_groups = 1
  return config
