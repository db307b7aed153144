"""NL I3D ResNet-101: I3D_3x1x1 + 5 NL blocks: Table 2f (76.0 top-1)."""

from configs import base_nl_kinetics as base


def get_config():
  return base.get_config('r101', 'i3d', '5block')
