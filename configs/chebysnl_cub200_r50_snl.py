"""ResNet-50 + one block on CUB-200-2011: chebysnl_unified_nonlocal.md Table 7, CUB-200 column,
row '+ Ours' (ChebySNL, Eq. 5; Top-1 86.02); the block right before the last residual block of res4 (§3.2).
Recipe and sources: chebysnl_cub200_r50.py."""

from configs import chebysnl_cub200_r50 as base


def get_config():
  return base.recipe('snl')
