"""ResNeXt-50 (32x4d) on ImageNet: Table 6 'ResNeXt-50 (32 x 4d)' (77.8 top-1, 4.3 GFLOPs, 25.0 M).

torchvision's resnext50_32x4d: 32 groups of width 4 in res2 (inner width 128, 256, 512, 1024 per
stage): 25,028,904 params, 4.23 GMACs."""

from configs import base_imagenet as base


def get_config():
  config = base.get_config()
  config.model.name = 'resnext50_32x4d'
  return config
