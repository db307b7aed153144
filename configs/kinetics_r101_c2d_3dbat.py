"""C2D ResNet-101 + 5 3D BAT-Blocks (k=8, tk=4, ts=4), 8 x 8 clips: Table 9 'ResNet-101, 8-frame' (76.2).

No params / GFLOPs in the table. Placement: the ImageNet ResNet-101 + BAT plan (released README
``nl_mod 2 7``: res3 {1,3}, res4 {6,13,20}), so an ImageNet ResNet-101 + BAT checkpoint
(configs/imagenet_r101_bat.py) initialises it as the released video code does for ResNet-50."""

from configs import blocks
from configs import kinetics_c2d_3dbat


def get_config():
  config = kinetics_c2d_3dbat.get_config()
  config.model.name = 'c2d_resnet101'
  config.model.insertions = blocks.insertions(
      blocks.every({'res3': 2, 'res4': 7}, blocks.RESNET101_STAGES))
  return config
