"""I3D_3x1x1 ResNet-101 (the first 1x1 of every other residual block inflated to 3x1x1, conv1
5x7x7): Table 2f (74.4 top-1); Table 2e I3D_3x1x1 (1.2x params, 1.5x FLOPs).
"""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r101', 'i3d')
