"""C2D ResNet-50 + 5 3D BAT-Blocks, 16-frame clips: Table 9 'ResNet-50, 16-frame' (76.9 top-1).

The table gives no params / GFLOPs. "For models with sequences longer than 8 frames, the
block-based matrix trick is adopted along time ... the number of blocks are set to 8 x 8":
temporal_size 8 (T = 8 after pool2, so the temporal matrix is 8 x 8 at full resolution here).
Frame stride: not given; 4 keeps the 8 x 8 clip's 64-frame span (an assumption)."""

from configs import kinetics_c2d_3dbat


def get_config():
  config = kinetics_c2d_3dbat.get_config()
  config.model.input_size = (16, 224, 224)
  config.model.block.temporal_size = 8
  config.data.num_frames = 16
  config.data.frame_stride = 4
  return config
