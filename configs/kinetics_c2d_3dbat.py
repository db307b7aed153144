"""C2D ResNet-50 + 5 3D BAT-Blocks (k=8, tk=4, ts=4): Table 8 'C2D + 3D-BAT' (75.5, 24.8 GFLOPs, 29.2 M).

Table 9's longer clips: `--config.model.input_size='(16, 224, 224)' --config.data.num_frames=16
--config.model.block.temporal_size=8` (and 64 frames likewise)."""

from configs import base_kinetics as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_BAT
  config.model.name = 'c2d_resnet50'
  config.model.block = blocks.bat(groups=8, temporal_groups=4, temporal_size=4)
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  return config
