"""ResNet-50 + one ChebySNL block on ImageNet (chebysnl_unified_nonlocal.md §3.2; released SNL code:
one block just before the last residual block of res4)."""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnet50'
  config.model.block = blocks.snl()
  config.model.insertions = blocks.insertions({'res4': (4,)})
  return config
