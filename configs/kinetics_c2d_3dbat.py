"""C2D ResNet-50 + 5 3D BAT-Blocks (k=8, tk=4, ts=4): Table 8 'C2D + 3D-BAT' (75.5, 24.8 GFLOPs, 29.2 M).

``get_config(arg)``: ``frames`` (8, 16 or 64; default 8), Table 9's 'ResNet-50, 8/16/64-frame'
rows (76.9 top-1 at 16 frames, 77.7 at 64; the table gives no params / GFLOPs):
``--config=configs/kinetics_c2d_3dbat.py:frames=64``. Longer clips use temporal_size 8 (the
block-based trick along time) and a frame stride that keeps the 64-frame span
(``base_kinetics.TABLE9_CLIPS``, which cites the caption)."""

from configs import args
from configs import base_kinetics as base
from configs import blocks


def get_config(arg: str | None = None):
  arg = args.parse(arg, frames=8)
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_BAT
  config.model.name = 'c2d_resnet50'
  config.model.block = blocks.bat(groups=8, temporal_groups=4, temporal_size=4)
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  base.set_clip_frames(config, arg.frames)
  return config
