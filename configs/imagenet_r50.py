"""ResNet-50 on ImageNet: Tables 2-6 baseline (76.3 top-1, 25.56 M params, 4.14 GFLOPs)."""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnet50'
  return config
