"""C2D ResNet-50 + 5 BAT-Blocks on Mini-Kinetics-200: Table 7 rows BAT (k_s, k_t).

Default BAT (4, 4) (70.6 clip top-1, 24.77 GFLOPs, 28.60 M params with 200 classes); the other rows
are overrides: ``--config.model.block.temporal_groups=0`` (BAT (4, 0)), ``=1``, ``=2``.
Mini-Kinetics-200 (§4.1): 200 classes, 400 train / 25 val clips per class; 50 epochs, 2-epoch linear
warm-up, then cosine decay. The papers initialise the blocks from ImageNet (``init_from``).
"""

from configs import base_kinetics as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_BAT
  config.model.name = 'c2d_resnet50'
  config.model.num_classes = 200
  config.model.block = blocks.bat(groups=4, temporal_groups=4, temporal_size=4)
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  config.data.name = 'mini_kinetics200'
  config.num_epochs = 50
  config.warmup_epochs = 2
  config.schedule = 'cosine'
  # The cosine's phase is the global step from the first warm-up step (released main.py,
  # adjust_learning_rate: lr * 0.5 * (cos(step / nmax * pi) + 1), nmax = all steps).
  config.cosine_span = 'all_steps'
  return config
