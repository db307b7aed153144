"""Demo of ``config.init_from``: a short 2-D (image) run whose weights start the toy video demo.

    python train.py --config=configs/demo_toy_image_r50_bat.py --workdir=workdirs/demo_2d
    python train.py --config=configs/demo_toy_c2d_3dbat.py --workdir=workdirs/demo_init \\
        --config.init_from=workdirs/demo_2d

The first line trains, for 40 steps on synthetic 64x64 images (``bat_jax.data.synthetic``), the
image ResNet-50 whose names and shapes are the demo's C2D-ResNet-50 + 3D-BAT
(``configs/demo_toy_c2d_3dbat.py``): width 8, 2D BAT-Blocks (k=4, s=4) after res3 block 1 and
res4 block 1. It stands in for the ImageNet run (``configs/imagenet_r50_bat.py:k=8``) that starts
the Kinetics recipes. The second line loads it as the released ``--soft_resume`` does and writes
``workdirs/demo_init/init_report.json``: every array loads except the 3D blocks' temporal
predictors (new in 3-D) and the classifier (10 synthetic classes, 8 toy ones).
"""

from bat_jax.data import synthetic
from configs import demo_toy_c2d_3dbat


def get_config():
  config = demo_toy_c2d_3dbat.get_config()
  config.model.name = 'resnet50'
  config.model.num_classes = 10
  config.model.input_size = (64, 64)
  config.model.block.temporal_groups = 0  # 2D blocks
  config.data = synthetic.get_config(num_classes=10, num_frames=0, crop_size=64,
                                     num_train_examples=640, num_eval_examples=64)
  config.init_from = ''  # an image model: random initialisation
  config.num_train_steps = 40
  config.warmup_epochs = 0
  config.eval_every_epochs = 0  # evaluates at the last step only
  config.checkpoint_every_steps = 0
  return config
