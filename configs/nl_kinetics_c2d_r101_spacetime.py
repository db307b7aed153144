"""C2D ResNet-101 + 5 NL blocks, spacetime: Table 2d (75.1 top-1); the same model as Table 2c's
5-block row.
"""

from configs import nl_kinetics_c2d_r101_5block as row


def get_config():
  return row.get_config()
