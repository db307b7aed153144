"""PreResNet-56 + 1 A^2 block (double attention) on CIFAR-100: chebysnl §3.1 row '+ A^2' of Tables 2, 3, 4 (and Table 5's
PreResNet56 column).

``get_config(variant)`` picks the column (``--config=configs/cifar100_preresnet56_a2.py:cs4``):
'' (default: one block after the second residual block of res1, C_s = C_1/2; Top-1 75.58),
'cs1' / 'cs2' / 'cs4' (Table 2: C_s = C_1, C_1/2, C_1/4), 'stage1' / 'stage2' / 'stage3'
(Table 3: after the second block of res1 / res2 / res3), 'x3' (Table 4's bracket: one in each
stage). The tables give accuracy only.
Table 1's form (chebysnl B.3): A Z W on A^2's graph, W_0 = 0 (model.block.weights='table1';
'free' adds a free W_0)."""

from configs import args
from configs import base_cifar as base
from configs import blocks


def get_config(arg: str | None = None):
  variant = args.parse(arg, variant='').variant
  config = base.get_config()
  config.model.block, config.model.insertions = blocks.cifar_nonlocal('a2', variant)
  return config
