"""I3D_3x1x1 ResNet-50 (the first 1x1 of every other residual block inflated to 3x1x1, conv1
5x7x7): Table 2f (73.3 top-1).
"""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r50', 'i3d')
