"""ResNet-50 + 5 BAT-Blocks with k=8 on ImageNet: the initialisation of the BAT video recipes.

Not a row of the paper's image tables (Table 4 has k = 0, 1, 2, 4, 16): the video recipes'
blocks have k = 8 (``configs/kinetics_c2d_bat.py``, ``kinetics_c2d_3dbat.py``,
``kinetics_i3d_bat.py``; released ``scripts/train_c2d_3dbat.sh``: ``--k 8``), and the released
script starts them from an ImageNet BAT checkpoint (``--resume checkpoints/resnet50_bat.pth
--soft_resume``), so the ImageNet blocks must have k = 8 for their predictors to load. Same
recipe as configs/imagenet_r50_bat.py otherwise; docs/recipes.md lists which ImageNet config
initialises which video config."""

from configs import imagenet_r50_bat


def get_config():
  config = imagenet_r50_bat.get_config()
  config.model.block.groups = 8
  return config
