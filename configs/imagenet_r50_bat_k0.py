"""ResNet-50 + 5 BAT-Blocks with 0 attention groups: Table 4 row k = 0, P = Q = I and no predictor (76.5 top-1, 30.17 M, 5.43 GFLOPs).

k = 4 is configs/imagenet_r50_bat.py."""

from configs import imagenet_r50_bat


def get_config():
  config = imagenet_r50_bat.get_config()
  config.model.block.groups = 0
  return config
