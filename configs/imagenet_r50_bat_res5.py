"""ResNet-50 + one BAT-Block in res5 (7x7 maps, D = 2048): Table 3 row 'Res5 +1' (top-1 76.7); the table gives no params / GFLOPs.

Position: right before the last residual block of the stage (Wang et al.'s NL Table 2c rule; the
BAT paper does not say which block), i.e. after block res5 {1} (configs/blocks.py before_last).
The five-block row '+2 +3' is configs/imagenet_r50_bat.py."""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnet50'
  config.model.block = blocks.image_bat(groups=4)
  config.model.insertions = blocks.insertions(
      blocks.before_last(('res5',), blocks.RESNET50_STAGES))
  return config
