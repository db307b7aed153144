"""Hara et al.'s 3D ResNet-50 ("I3D") on UCF-101, split 1: chebysnl_unified_nonlocal.md §3.2 /
Table 7, UCF-101 column, row 'Backbone' (Top-1 81.57). ``recipe(block)`` gives the block rows
(``chebysnl_ucf101_i3d_{nl,ns,a2,cgnl,snl}.py``).

The paper (§3.2): "the I3D structure Hara et al. (2018) which uses k x k x k kernels" (registry
``hara3d_resnet50``, docs/models.md), "initialized by the pre-trained I3D model on Kinetics",
initial lr 0.01 divided by 10 every 40 epochs, 100 epochs, "other hyper-parameters ... the same as
in Sec. 3.1" (momentum 0.9, weight decay 1e-4, C_s = C_1 / 2); 7,912 / 1,625 videos (the
official lists of split 1 hold 9,537 / 3,783: the paper's numbers are not one of them). The
released SNL code has no video part (its README credits kenshohara/3D-ResNets-PyTorch), so the
fields the paper leaves open follow that code's CVPR2018 branch (``opts.py``, ``main.py``,
``mean.py``), which trained the Kinetics model the paper starts from:

* 16 consecutive frames (``sample_duration`` 16, ``TemporalRandomCrop``; short videos loop,
  ``LoopPadding``), 112 x 112 crops (``sample_size`` 112) from frames whose short side is 240
  (its ``video_jpg_ucf101_hmdb51.py``: ``scale=-1:240``); training: multi-scale crop + flip
  (main.py 60-74; Hara's ``MultiScaleCornerCrop`` takes square crops of 240 x {1, 0.84, 0.71, 0.59,
  0.5} at the centre or a corner; here TSN's multi-scale crop, ``train_augment='multiscale_crop'``,
  the closest one the pipeline has); evaluation: short side 112, centre crop 112 (105-110);
* RGB 0-255 minus the ActivityNet mean (114.7748, 107.7354, 99.4750), std 1 (mean.py 4-7,
  main.py 39, 55-56; ``norm_value`` 1);
* batch 128 (opts.py ``batch_size``; also the SNL code's CIFAR batch, §3.1) over 2 GPUs (§3:
  "2 Nvidia RTX 2080 Ti GPUs"): BatchNorm groups of 64; SGD momentum 0.9 without dampening (the
  SNL code's optimiser; Hara's uses ``dampening`` 0.9), weight decay 1e-4 on every parameter, no
  gradient clipping, no dropout (Hara's ResNet has none);
* the block after res4 block 4 ("right before the last residual block of res4", §3.2's placement
  for ResNet-50; the paper does not restate it for I3D).

Initialisation: ``--config.init_from=<a Kinetics-400 run of hara3d_resnet50>``; the 400-way
``fc`` does not fit the 101-way one and keeps its initialisation. ``--config.data.split_id=2``
(or 3) trains another official split.
"""

import ml_collections

from bat_jax.data import ucf101
from configs import base_kinetics
from configs import blocks

BACKBONE = 'hara3d_resnet50'
# mean.py get_mean(1, 'activitynet'): subtracted from RGB 0-255, std 1.
ACTIVITYNET_MEAN_255 = (114.7748, 107.7354, 99.4750)


def recipe(block: str = '') -> ml_collections.ConfigDict:
  """The UCF-101 recipe; ``block`` the Table 7 row ('' for the backbone, else a kind of
  ``blocks.cifar_nonlocal``: the released SNL code's blocks, after res4 block 4)."""
  config = base_kinetics.get_config()
  config.model.name = BACKBONE
  config.model.num_classes = ucf101.NUM_CLASSES
  config.model.input_size = (16, 112, 112)
  config.model.dropout_rate = 0.0
  config.model.bn_group_size = 64
  if block:
    config.model.block, _ = blocks.cifar_nonlocal(block)
    config.model.insertions = blocks.insertions(blocks.before_last(('res4',), BACKBONE))
  config.data.name = 'ucf101'
  config.data.root = ''  # required: holds UCF-101/ and ucfTrainTestlist/
  config.data.split_id = 1
  config.data.num_frames = 16
  config.data.frame_stride = 1
  config.data.crop_size = 112
  config.data.train_augment = 'multiscale_crop'
  config.data.train_short_side = (240, 240)
  config.data.eval_short_side = 112
  config.data.mean = tuple(m / 255.0 for m in ACTIVITYNET_MEAN_255)
  config.data.std = (1.0 / 255.0,) * 3
  config.data.train_split = 'train'
  config.data.eval_split = 'test'
  config.global_batch_size = 128
  config.base_learning_rate = 0.01
  config.lr_base_batch_size = 128
  config.num_epochs = 100
  config.lr_decay_epochs = (40, 80)
  config.lr_decay_factor = 0.1
  config.weight_decay = 1e-4
  config.weight_decay_on = 'all'
  config.bias_lr_mult = 1.0
  config.grad_clip_norm = 0.0
  return config


def get_config() -> ml_collections.ConfigDict:
  return recipe('')
