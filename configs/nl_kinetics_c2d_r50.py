"""C2D ResNet-50 baseline, 32x224^2 (Table 1; Table 2 71.8 top-1)."""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r50')
