"""ResNet-50 + 5 BAT-Blocks with 16 attention groups: Table 4 row k = 16 (78.4 top-1, 31.09 M, 5.45 GFLOPs).

k = 4 is configs/imagenet_r50_bat.py."""

from configs import imagenet_r50_bat


def get_config():
  config = imagenet_r50_bat.get_config()
  config.model.block.groups = 16
  return config
