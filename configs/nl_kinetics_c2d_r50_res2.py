"""C2D ResNet-50 + 1 NL block (embedded Gaussian) before the last residual block of res2: Table 2b
(72.7 top-1).
"""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r50', 'c2d', 'res2')
