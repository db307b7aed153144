"""I3D_3x3x3 ResNet-101 (the 3x3 of every other residual block inflated to 3x3x3, conv1 5x7x7):
Table 2e (1.5x params, 1.8x FLOPs, 74.1 top-1).
"""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r101', 'i3d333')
