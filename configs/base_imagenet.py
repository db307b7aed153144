"""ImageNet recipe shared by the image configs (``bat_cvpr2020.md`` §4.1; released BAT image code).

SGD momentum 0.9, lr 0.1 per 256 images (scaled linearly with the global batch), 5-epoch linear
warm-up, x0.1 at epochs 30/60/80, 90 epochs, weight decay 1e-4 on all parameters (released image
code), RandomResizedCrop 224 + flip; eval: resize 256, centre crop 224.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = 'resnet50'
  config.model.num_classes = 1000
  config.model.width = 64
  config.model.input_size = (224, 224)
  config.model.dropout_rate = 0.0
  config.model.dtype = 'float32'
  config.model.block = ml_collections.ConfigDict({'type': 'none'})
  config.model.insertions = ml_collections.ConfigDict()

  config.data = ml_collections.ConfigDict()
  config.data.name = 'imagenet2012'
  config.data.data_dir = ''  # tfds data dir (ArrayRecord); required
  config.data.image_size = 224
  config.data.eval_resize = 256
  config.data.num_workers = 8

  config.global_batch_size = 256
  config.num_epochs = 90
  config.optimizer = 'sgd'
  config.momentum = 0.9
  config.base_learning_rate = 0.1  # per lr_base_batch_size images
  config.lr_base_batch_size = 256
  config.schedule = 'step'
  config.warmup_epochs = 5
  config.lr_decay_epochs = (30, 60, 80)
  config.lr_decay_factor = 0.1
  config.weight_decay = 1e-4
  config.weight_decay_on = 'all'  # released image code decays every parameter
  config.grad_clip_norm = 0.0  # 0: off
  config.label_smoothing = 0.0
  return config
