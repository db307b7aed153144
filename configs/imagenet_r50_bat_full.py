"""ResNet-50 + 5 BAT-Blocks, full-resolution P / Q: Table 2 'full resolution' (77.6 top-1, 31.86 M, 5.50 GFLOPs).

The predictor's convs span all H (W) rows of the map and output H x H (W x W) matrices, sized at
the 224 training input (res3 28, res4 14)."""

from configs import imagenet_r50_bat


def get_config():
  config = imagenet_r50_bat.get_config()
  config.model.block.matrix = 'full'
  return config
