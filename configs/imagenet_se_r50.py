"""SE-ResNet-50 on ImageNet: Table 6 'SE-ResNet-50' (76.9 top-1, 4.2 GFLOPs, 28.1 M).

Squeeze-excitation (reduction 16, FCs with bias) after bn3 of every bottleneck, before the add,
as torchvision / SENet and the released BAT image code's ``use_se``: 28,088,024 params."""

from configs import base_imagenet as base


def get_config():
  config = base.get_config()
  config.model.name = 'se_resnet50'
  return config
