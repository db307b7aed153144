"""C2D ResNet-101 + 5 3D BAT-Blocks (k=8, tk=4, ts=4), 8 x 8 clips: Table 9 'ResNet-101, 8-frame' (76.2).

``get_config(arg)``: ``frames`` (8 or 16; default 8): ``:frames=16`` is Table 9 'ResNet-101,
16-frame' (77.4), with temporal_size 8 and frame stride 4 as configs/kinetics_c2d_3dbat.py.
No params / GFLOPs in the table. Placement: the ImageNet ResNet-101 + BAT plan (released README
``nl_mod 2 7``: res3 {1,3}, res4 {6,13,20}), so an ImageNet ResNet-101 + BAT checkpoint
(configs/imagenet_r101_bat.py) initialises it as the released video code does for ResNet-50."""

from configs import args
from configs import base_kinetics as base
from configs import blocks
from configs import kinetics_c2d_3dbat


def get_config(arg: str | None = None):
  arg = args.parse(arg, frames=8)
  if arg.frames not in (8, 16):
    raise ValueError(f'config argument frames={arg.frames}; allowed (Table 9, ResNet-101): 8, 16')
  config = kinetics_c2d_3dbat.get_config()
  config.model.name = 'c2d_resnet101'
  config.model.insertions = blocks.insertions(
      blocks.every({'res3': 2, 'res4': 7}, 'resnet101'))
  base.set_clip_frames(config, arg.frames)
  return config
