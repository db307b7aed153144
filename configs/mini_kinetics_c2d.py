"""C2D ResNet-50 on Mini-Kinetics-200: Table 7 'baseline' (66.4 val clip top-1, 19.55 GFLOPs, 23.92 M).

Mini-Kinetics-200 (§4.1): 200 classes, 400 train / 25 val clips per class; 50 epochs, 2-epoch
linear warm-up, then cosine decay (the same recipe as configs/mini_kinetics_c2d_bat.py).
23,917,832 params, 19.49 GMACs (res2 at 56x56)."""

from configs import base_kinetics as base


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_BAT
  config.model.name = 'c2d_resnet50'
  config.model.num_classes = 200
  config.data.name = 'mini_kinetics200'
  config.num_epochs = 50
  config.warmup_epochs = 2
  config.schedule = 'cosine'
  # The cosine's phase is the global step from the first warm-up step (released main.py,
  # adjust_learning_rate: lr * 0.5 * (cos(step / nmax * pi) + 1), nmax = all steps).
  config.cosine_span = 'all_steps'
  return config
