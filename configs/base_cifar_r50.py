"""ResNet-50 on CIFAR-10 / CIFAR-100: chebysnl Table 5's two ResNet50 columns (base of the
``cifar_r50*.py`` recipes).

``get_config(arg, block)``: ``arg`` is the file's argument ``dataset`` (``cifar10`` or
``cifar100``; ``--config=configs/cifar_r50_snl.py:dataset=cifar10``), ``block`` the row ('' for
the backbone row, else a kind of ``blocks.cifar_nonlocal``).

Backbone: the released SNL code's CIFAR ResNet-50 (registry ``cifar_resnet50``): torchvision's
ResNet-50 (SNL-Classification/model/resnet_snl.py 127-154, 284-288) with conv1 replaced by a 3x3
stride-1 conv and no max pool (train_val.py 337-341), average pool 4 = global at 4x4
(train_val.py 152-155, 169-172), dropout 0.5 before fc (resnet_snl.py 153), fc 2048 -> classes
(train_val.py 344-346). Block row: one block "right before the last residual block" of res4
(resnet_snl.py 219: ``nl_nums == 1``, inserted before block ``i == 5`` of ``layer3``), i.e.
after res4 block 4, with C_s = 1024 / 2 (``div`` = 2, resnet_snl.py 215; train_val.py ``--div``).
Training: the CIFAR recipe of ``base_cifar.py`` unchanged: train_val.py's cifar10 and cifar100
branches (140-172) set the same batch 128, 300 epochs, lr 0.1, decays at 150 / 250, warm-up and
augmentation for both data sets and both backbones. From scratch (train_val.py ``--pretrained``
default False; the paper names no initialisation for CIFAR). The paper prints no parameter
counts for these columns.
"""

import ml_collections

from bat_jax.data.cifar import NUM_CLASSES
from configs import args
from configs import base_cifar
from configs import blocks

BACKBONE = 'cifar_resnet50'


def get_config(arg: str | None = None, block: str = '') -> ml_collections.ConfigDict:
  dataset = args.parse(arg, dataset='cifar100').dataset
  if dataset not in NUM_CLASSES:
    raise ValueError(f'config argument dataset={dataset!r}; allowed: {sorted(NUM_CLASSES)}')
  config = base_cifar.get_config()
  config.data.name = dataset
  config.model.name = BACKBONE
  config.model.num_classes = NUM_CLASSES[dataset]
  config.model.width = 64
  if block:
    config.model.block, _ = blocks.cifar_nonlocal(block)
    config.model.insertions = blocks.insertions(blocks.before_last(('res4',), BACKBONE))
  return config
