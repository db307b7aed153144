"""ResNet-50 + one ChebySNL block on ImageNet: chebysnl_unified_nonlocal.md §3.2 / Table 6 row
'+ SNL' (one block just before the last residual block of res4), trained as the released
``SNL-Classification/train_val.py`` (zh460045050/SNL_ICCV2021 @0ea458d) does.

Recipe (file:line of that train_val.py):
* batch 100 (177; on 2 GPUs, ``gpu_ids = [0, 1]`` 200, so each BN saw 50 images), lr 0.01
  (185), SGD momentum 0.9, weight decay 1e-4 on every parameter (361-365);
* warm-up forced on (180): 10 epochs (209) from ``lr * 0.1**3 = 1e-5`` (208, ``drop_ratio`` 0.1
  at 199) to 0.01, one lr per epoch (``np.linspace``, 550); the 10 epochs are added to the 100
  (183, 372) and to the decay epochs 31/61/81 (186, 373-374): x0.1 at 41, 71, 91, 110 epochs;
* RandomResizedCrop(224, scale=(0.08, 1.25)) + flip (234-236), ImageNet mean / std (238-240);
  eval resize 256 + centre crop 224 (246-248);
* dropout 0.5 before the classifier (model/resnet_snl.py 153, 247).
The paper (§3.2) says "the learning rate is divided by 31 at 61 and 81 epochs ... trained for
110 epochs": garbled; the code decays x0.1 at 41, 71, 91 (= 31, 61, 81 + the 10 warm-up epochs).
"""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnet50'
  config.model.block = blocks.snl()
  config.model.insertions = blocks.insertions({'res4': (4,)})
  config.model.dropout_rate = 0.5
  config.data.random_resized_crop_scale = (0.08, 1.25)
  config.global_batch_size = 100
  config.base_learning_rate = 0.01
  config.lr_base_batch_size = 100
  config.num_epochs = 110
  config.warmup_epochs = 10
  config.warmup_start_factor = 1e-3  # 1e-5 / 0.01
  config.warmup_granularity = 'epoch'
  config.lr_decay_epochs = (41, 71, 91)
  config.lr_decay_factor = 0.1
  return config
