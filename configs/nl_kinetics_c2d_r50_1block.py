"""C2D ResNet-50 + 1 NL block (embedded Gaussian, spacetime): Table 2c (72.7 top-1)."""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r50', 'c2d', '1block')
