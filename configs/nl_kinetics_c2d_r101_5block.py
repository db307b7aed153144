"""C2D ResNet-101 + 5 NL blocks (embedded Gaussian, spacetime): Table 2c (75.1 top-1); Table 2e NL
C2D 5-block.
"""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r101', 'c2d', '5block')
