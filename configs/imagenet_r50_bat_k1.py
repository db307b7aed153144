"""ResNet-50 + 5 BAT-Blocks with 1 attention groups: Table 4 row k = 1 (77.9 top-1, 30.18 M, 5.44 GFLOPs).

k = 4 is configs/imagenet_r50_bat.py."""

from configs import imagenet_r50_bat


def get_config():
  config = imagenet_r50_bat.get_config()
  config.model.block.groups = 1
  return config
