"""ResNet-18 on ImageNet: Table 5 baseline (70.2 top-1; 11.69 M params, 1.81 GMACs)."""

from configs import base_imagenet as base


def get_config():
  config = base.get_config()
  config.model.name = 'resnet18'
  return config
