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
  config.data.name = 'imagenet2012'  # or 'imagenet_folder' (JPEG folders under data.root)
  config.data.data_dir = ''  # tfds data dir (ArrayRecord); required for imagenet2012
  config.data.root = ''  # train/<wnid>/*.JPEG, val/<wnid>/*.JPEG; required for imagenet_folder
  config.data.image_size = 224  # RandomResizedCrop output (training), centre crop (eval)
  config.data.eval_resize = 256  # eval: short side resized to this, then centre crop image_size
  config.data.random_resized_crop_scale = (0.08, 1.0)
  config.data.random_resized_crop_ratio = (3 / 4, 4 / 3)
  config.data.random_flip = True
  config.data.mean = (0.485, 0.456, 0.406)  # 0-1 RGB
  config.data.std = (0.229, 0.224, 0.225)
  config.data.train_split = 'train'
  config.data.eval_split = 'validation'  # tfds name; the folder source also accepts val/
  config.data.num_workers = 8  # grain worker processes (0: decode in the main process)
  config.data.num_threads = 2  # read threads per worker

  config.global_batch_size = 256
  config.num_epochs = 90
  config.optimizer = 'sgd'
  config.momentum = 0.9
  config.base_learning_rate = 0.1  # per lr_base_batch_size images
  config.lr_base_batch_size = 256
  config.schedule = 'step'
  config.warmup_epochs = 5
  config.warmup_start_factor = 0.0  # the warm-up starts at this fraction of the peak lr
  config.warmup_granularity = 'step'  # 'step': per-update ramp; 'epoch': one lr per epoch
  config.lr_decay_epochs = (30, 60, 80)
  config.lr_decay_factor = 0.1
  config.weight_decay = 1e-4
  config.weight_decay_on = 'all'  # released image code decays every parameter
  config.grad_clip_norm = 0.0  # 0: off
  config.label_smoothing = 0.0
  config.loss = 'softmax_cross_entropy'  # or 'sigmoid_binary_cross_entropy' (multi-label)

  # Loop, evaluation and checkpoints (bat_jax/training/loop.py); -1 means "derive it".
  config.num_train_steps = -1  # > 0 overrides num_epochs
  config.steps_per_epoch = -1  # > 0 overrides (train-set size // global_batch_size)
  config.eval_batch_size = -1  # -1: global_batch_size
  config.log_every_steps = 100
  config.device_prefetch = 2  # batches put on the devices ahead (bat_jax/data/prefetch.py)
  config.eval_every_epochs = 1  # clip top-1 on the eval set during training (0: only at the end)
  config.eval_every_steps = -1  # > 0 overrides eval_every_epochs
  config.checkpoint_every_steps = 1000  # async saves; also at the end and on SIGTERM
  config.keep_checkpoints = 3
  # Faults (bat_jax/training/faults.py, docs/reliability.md).
  config.max_nonfinite_steps = 5  # consecutive skipped non-finite steps before exit status 3
  config.max_failed_saves = 3  # consecutive failed checkpoint saves before exit status 4
  config.device_memory_bytes = -1  # memory check before step 1; -1: device's (host RAM on CPU)
  config.init_from = ''  # a checkpoint step dir / checkpoints dir / workdir to load weights from
  config.init_from_ignore = ()  # regexes of names kept at init, e.g. ('^params/fc/',)
  return config
