"""C2D ResNet-101 + 10 NL blocks (embedded Gaussian, spacetime): Table 2c (75.1 top-1)."""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r101', 'c2d', '10block')
