"""NL I3D ResNet-101 (I3D_3x1x1 + 5 NL blocks) on Charades, fine-tuned from
configs/nl_kinetics_i3d_r101_nl.py: Table 4 'NL I3D [ours]' (37.5 mAP train/val). Recipe:
configs/base_nl_charades.py.
"""

from configs import base_nl_charades as base


def get_config():
  return base.get_config('5block')
