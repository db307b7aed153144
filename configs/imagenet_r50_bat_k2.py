"""ResNet-50 + 5 BAT-Blocks with 2 attention groups: Table 4 row k = 2 (78.0 top-1, 30.19 M, 5.44 GFLOPs).

k = 4 is configs/imagenet_r50_bat.py."""

from configs import imagenet_r50_bat


def get_config():
  config = imagenet_r50_bat.get_config()
  config.model.block.groups = 2
  return config
