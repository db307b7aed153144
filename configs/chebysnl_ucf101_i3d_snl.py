"""Hara et al.'s 3D ResNet-50 + one block on UCF-101: chebysnl_unified_nonlocal.md Table 7,
UCF-101 column, row '+ Ours' (ChebySNL, Eq. 5; Top-1 84.39); the block after res4 block 4.
Recipe and sources: chebysnl_ucf101_i3d.py."""

from configs import chebysnl_ucf101_i3d as base


def get_config():
  return base.recipe('snl')
