"""C2D ResNet-50 + 5 NL blocks, spacetime: Table 2d (73.8 top-1); the same model as Table 2c's
5-block row.
"""

from configs import nl_kinetics_c2d_r50_5block as row


def get_config():
  return row.get_config()
