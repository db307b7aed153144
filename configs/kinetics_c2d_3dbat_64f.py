"""C2D ResNet-50 + 5 3D BAT-Blocks, 64-frame clips: Table 9 'ResNet-50, 64-frame' (77.7 top-1).

No params / GFLOPs in the table. temporal_size 8: T = 32 after pool2 is cut into 8 cells of 4
frames (the block-based trick along time, §4 / Table 9 caption). Frame stride 1 (not given; 64
consecutive frames keep the 64-frame span of the 8 x 8 clips, an assumption)."""

from configs import kinetics_c2d_3dbat


def get_config():
  config = kinetics_c2d_3dbat.get_config()
  config.model.input_size = (64, 224, 224)
  config.model.block.temporal_size = 8
  config.data.num_frames = 64
  config.data.frame_stride = 1
  return config
