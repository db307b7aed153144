"""I3D ResNet-101 (I3D_3x1x1) on Charades, fine-tuned from configs/nl_kinetics_i3d_r101.py: Table 4
'I3D [ours]' (35.5 mAP train/val). Recipe: configs/base_nl_charades.py.
"""

from configs import base_nl_charades as base


def get_config():
  return base.get_config()
