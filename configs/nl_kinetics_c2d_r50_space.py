"""C2D ResNet-50 + 5 NL blocks, space-only: Table 2d (72.9 top-1)."""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r50', 'c2d', '5block', mode='space')
