"""C2D ResNet-101 + 1 NL block (embedded Gaussian, spacetime): Table 2c (74.3 top-1)."""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r101', 'c2d', '1block')
