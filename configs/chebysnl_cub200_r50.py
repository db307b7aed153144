"""ResNet-50 on CUB-200-2011 (fine-grained, 200 classes): chebysnl_unified_nonlocal.md §3.2 /
Table 7, CUB-200 column, row 'Backbone' (Top-1 85.43). ``recipe(block)`` gives the block rows
(``chebysnl_cub200_r50_{nl,ns,a2,cgnl,snl}.py``).

The paper (§3.2): ResNet-50 pre-trained on ImageNet, 5,994 training / 5,794 test images ("as Yue
et al. (2018)", i.e. the official ``train_test_split.txt``), 110 epochs, initial lr 0.1 divided
by 10 at 31, 61, 81; one block "right before the last residual block of res4" (§3.2, as the
ImageNet rows). The released SNL code (zh460045050/SNL_ICCV2021 @0ea458d,
``SNL-Classification/train_val.py``) lists ``cub`` (43, 212-216) but its settings branch is the
ImageNet one (175-186: 1000 classes, 224 crops, no pre-training); its CUB pipeline is the one of
the code it was built on (its README), CGNL's ``train_val.py`` (kaiyuyue/cgnl-network.pytorch
@2b76f38), which every other field follows:

* input 448: RandomResizedCrop(448, scale=(0.08, 1.25)) + flip (CGNL train_val.py 75,
  104-106; README "The input size is 448"); eval resize 512, centre crop 448 (63, 75, 117-118);
  ImageNet mean / std (108-110, 120-122);
* batch 256 (66, on 8 GPUs: 32 per BatchNorm), SGD momentum 0.9, weight decay 1e-4 on every
  parameter (160-164);
* lr 0.1 from the paper (CGNL's ``--lr`` default is 0.01, line 45); decays x0.1 at 31/61/81 of
  100 epochs (71-72) and, with ``--warmup`` (the README's command for the NL / CGNL rows),
  10 warm-up epochs from ``lr * 0.1**3`` to lr, one lr per epoch (83-84, 313), added to the
  epochs and the decay epochs (170-173): 110 epochs with decays at 41/71/91, the paper's "110
  epochs" (the same reading as ``imagenet_r50_snl.py``). The CGNL README trains its baseline
  without ``--warmup``: ``--config.warmup_epochs=0 --config.num_epochs=100
  --config.lr_decay_epochs='(31,61,81)'``;
* dropout 0.5 before the classifier (SNL ``model/resnet_snl.py`` 153), global average pool
  (``pool_size`` 14 at 448, CGNL 64);
* ImageNet initialisation (CGNL 141 ``pretrained=True``, the block rows load everything but the
  blocks): ``--config.init_from=<an imagenet_r50.py workdir>``; the 1000-way ``fc`` does not fit
  the 200-way one and keeps its initialisation (CGNL 147-150 replaces it).

Data: ``data.name='cub200'`` (tfds ``caltech_birds2011``, ``data.data_dir``) or
``'cub200_folder'`` (the official ``CUB_200_2011/`` layout, ``data.root``); docs/data.md.
"""

import ml_collections

from bat_jax.data import cub200
from configs import base_imagenet
from configs import blocks

BACKBONE = 'resnet50'


def recipe(block: str = '') -> ml_collections.ConfigDict:
  """The CUB-200 recipe; ``block`` the Table 7 row ('' for the backbone, else a kind of
  ``blocks.cifar_nonlocal``: the released SNL code's blocks, inserted after res4 block 4)."""
  config = base_imagenet.get_config()
  config.model.name = BACKBONE
  config.model.num_classes = cub200.NUM_CLASSES
  config.model.input_size = (448, 448)
  config.model.dropout_rate = 0.5
  if block:
    config.model.block, _ = blocks.cifar_nonlocal(block)
    config.model.insertions = blocks.insertions(blocks.before_last(('res4',), BACKBONE))
  config.data.name = 'cub200'  # or 'cub200_folder' with data.root = the CUB_200_2011/ folder
  config.data.image_size = 448
  config.data.eval_resize = 512
  config.data.random_resized_crop_scale = (0.08, 1.25)
  config.data.train_split = 'train'
  config.data.eval_split = 'test'
  config.global_batch_size = 256
  config.base_learning_rate = 0.1
  config.lr_base_batch_size = 256
  config.num_epochs = 110
  config.warmup_epochs = 10
  config.warmup_start_factor = 1e-3  # lr * 0.1**3
  config.warmup_granularity = 'epoch'
  config.lr_decay_epochs = (41, 71, 91)  # 31 / 61 / 81 after the 10 warm-up epochs
  config.lr_decay_factor = 0.1
  return config


def get_config() -> ml_collections.ConfigDict:
  return recipe('')
