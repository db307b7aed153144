"""C2D ResNet-50 + 1 NL block (concatenation) before the last residual block of res4: Table 2a
(72.8 top-1).
"""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r50', 'c2d', '1block', instantiation='concatenation')
