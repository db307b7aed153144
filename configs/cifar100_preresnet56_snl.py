"""PreResNet-56 + 1 ChebySNL block on CIFAR-100: chebysnl §3.1 row '+ Ours' of Tables 2, 3, 4 (and Table 5's
PreResNet56 column).

``get_config(variant)`` picks the column (``--config=configs/cifar100_preresnet56_snl.py:cs4``):
'' (default: one block after the second residual block of res1, C_s = C_1/2; Top-1 76.41),
'cs1' / 'cs2' / 'cs4' (Table 2: C_s = C_1, C_1/2, C_1/4), 'stage1' / 'stage2' / 'stage3'
(Table 3: after the second block of res1 / res2 / res3), 'x3' (Table 4's bracket: one in each
stage). The tables give accuracy only.
ChebySNL as released (Eq. 5): z = x + ReLU(BN(W_0 Z + W_1 A Z)), A the symmetric-normalised
ReLU kernel."""

from configs import args
from configs import base_cifar as base
from configs import blocks


def get_config(arg: str | None = None):
  variant = args.parse(arg, variant='').variant
  config = base.get_config()
  config.model.block, config.model.insertions = blocks.cifar_nonlocal('snl', variant)
  return config
