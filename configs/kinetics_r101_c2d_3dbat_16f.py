"""C2D ResNet-101 + 5 3D BAT-Blocks, 16-frame clips: Table 9 'ResNet-101, 16-frame' (77.4 top-1).

configs/kinetics_r101_c2d_3dbat.py at 16 frames with temporal_size 8 and frame stride 4, as
configs/kinetics_c2d_3dbat_16f.py. No params / GFLOPs in the table."""

from configs import kinetics_r101_c2d_3dbat


def get_config():
  config = kinetics_r101_c2d_3dbat.get_config()
  config.model.input_size = (16, 224, 224)
  config.model.block.temporal_size = 8
  config.data.num_frames = 16
  config.data.frame_stride = 4
  return config
