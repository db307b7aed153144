"""I3D_3x1x1 ResNet-101: Table 2e (1.2x params, 1.5x FLOPs, 74.4 top-1); the same model as Table
2f's I3D row.
"""

from configs import nl_kinetics_i3d_r101 as row


def get_config():
  return row.get_config()
