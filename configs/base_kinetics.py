"""Kinetics-400 recipe shared by the video configs (``bat_cvpr2020.md`` §4.1; released BAT video code).

C2D ResNet-50, 8 frames at stride 8, 224 crops; SGD momentum 0.9, lr 0.01 at batch 64 (scaled
linearly with the global batch), x0.1 at epochs 40/80, 100 epochs, no warm-up; weight decay 1e-4
on conv/FC weights only (no decay on BN and biases); gradient-norm clip 20; dropout 0.5 before
the classifier; BAT blocks use channel dropout 0.2.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = 'c2d_resnet50'
  config.model.num_classes = 400
  config.model.width = 64
  config.model.input_size = (8, 224, 224)
  config.model.dropout_rate = 0.5
  config.model.dtype = 'float32'
  config.model.block = ml_collections.ConfigDict({'type': 'none'})
  config.model.insertions = ml_collections.ConfigDict()

  config.data = ml_collections.ConfigDict()
  config.data.name = 'kinetics400'  # or 'mini_kinetics200' (python -m bat_jax.data.mini_kinetics)
  config.data.root = ''  # required: the Kinetics folder (annotations + train/ val/)
  config.data.num_frames = 8
  config.data.frame_stride = 8
  config.data.crop_size = 224  # training crop; 'clip' and '250view' eval crops
  config.data.train_short_side = (256, 320)  # scale jittering, inclusive
  config.data.eval_short_side = 256  # eval resize; also the '30view' (fully-convolutional) crop
  config.data.random_flip = True
  config.data.decode_timeout_s = 60.0  # a slower decode is skipped, reported like a broken file
  config.data.mean = (0.485, 0.456, 0.406)  # 0-1 RGB
  config.data.std = (0.229, 0.224, 0.225)
  config.data.train_split = 'train'
  config.data.eval_split = 'val'  # also finds validate.csv / validate/
  config.data.num_workers = 8  # grain worker processes (0: decode in the main process)
  config.data.num_threads = 2  # read threads per worker

  config.global_batch_size = 64
  config.num_epochs = 100
  config.optimizer = 'sgd'
  config.momentum = 0.9
  config.base_learning_rate = 0.01  # per lr_base_batch_size clips
  config.lr_base_batch_size = 64
  config.schedule = 'step'
  config.warmup_epochs = 0
  config.lr_decay_epochs = (40, 80)
  config.lr_decay_factor = 0.1
  config.weight_decay = 1e-4
  config.weight_decay_on = 'conv_fc_weights'  # released video code: no decay on BN and biases
  config.grad_clip_norm = 20.0
  config.label_smoothing = 0.0

  # Loop, evaluation and checkpoints (bat_jax/training/loop.py); -1 means "derive it".
  config.num_train_steps = -1  # > 0 overrides num_epochs
  config.steps_per_epoch = -1  # > 0 overrides (train-set size // global_batch_size)
  config.eval_batch_size = -1  # -1: global_batch_size
  config.log_every_steps = 50
  config.eval_every_epochs = 5  # clip top-1 on the eval set during training (0: only at the end)
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
