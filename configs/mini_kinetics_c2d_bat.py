"""C2D ResNet-50 + 5 BAT-Blocks on Mini-Kinetics-200: Table 7 rows BAT (k_s, k_t).

``get_config(arg)``: ``tk``, the temporal attention groups k_t (default 4; k_s = 4):
BAT (4, 4) (70.6 clip top-1, 24.77 GFLOPs, 28.60 M params with 200 classes); ``:tk=0`` BAT (4, 0)
(69.5, 24.76 GFLOPs: 2D BAT-Blocks, no temporal attention), ``:tk=1`` BAT (4, 1) (70.3),
``:tk=2`` BAT (4, 2) (70.5). Mini-Kinetics-200 (§4.1): 200 classes, 400 train / 25 val clips per
class; 50 epochs, 2-epoch linear warm-up, then cosine decay. The blocks start from ImageNet
(Pre-trained: Yes): ``--config.init_from=<an ImageNet ResNet-50 + BAT workdir>``.
"""

from configs import args
from configs import base_kinetics as base
from configs import blocks


def get_config(arg: str | None = None):
  arg = args.parse(arg, tk=4)
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_BAT
  config.model.name = 'c2d_resnet50'
  config.model.num_classes = 200
  config.model.block = blocks.bat(groups=4, temporal_groups=arg.tk, temporal_size=4)
  config.model.insertions = blocks.insertions(blocks.FIVE_BLOCKS)
  config.data.name = 'mini_kinetics200'
  config.num_epochs = 50
  config.warmup_epochs = 2
  config.schedule = 'cosine'
  # The cosine's phase is the global step from the first warm-up step (released main.py,
  # adjust_learning_rate: lr * 0.5 * (cos(step / nmax * pi) + 1), nmax = all steps).
  config.cosine_span = 'all_steps'
  return config
