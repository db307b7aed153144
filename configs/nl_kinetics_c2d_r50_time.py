"""C2D ResNet-50 + 5 NL blocks, time-only (no 1x2x2 subsampling, which acts on space): Table 2d
(73.1 top-1).
"""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r50', 'c2d', '5block', mode='time', subsample=False)
