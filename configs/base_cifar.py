"""CIFAR-100 recipe shared by the CIFAR configs (chebysnl_unified_nonlocal.md §3.1; released SNL
CIFAR code, zh460045050/SNL_ICCV2021 ``train_val.py``).

PreResNet-56 as the released code builds it (``preresnet56_bottleneck``: model/preresnet_snl.py
lines 89-125, 128-213, 241-245: 9 pre-activation bottlenecks per stage, 64/128/256 output
channels, a 1x1 conv-BN-ReLU head, dropout 0.5 before the classifier at line 155), 32x32 inputs;
SGD momentum 0.9, lr 0.1, weight decay 1e-4 (all parameters, as the released optimizer,
train_val.py 361-365), x0.1 at epochs 150 and 250, 300 epochs (§3.1; train_val.py 164-167).
Batch 128 (train_val.py 160; the paper does not say). Augmentation: 4-pixel zero padding + random
32 crop + flip (train_val.py 291-298), its CIFAR mean / std (bat_jax/data/cifar.py). The released
script also forces a warm-up (162): 10 extra epochs from lr 0.1 * 0.1**2 = 0.001 (208-209), one
lr per epoch, and shifts the decays by 10 (371-374); the paper does not mention it, so it is off
here; ``--config.warmup_epochs=10 --config.warmup_start_factor=0.01
--config.warmup_granularity=epoch --config.num_epochs=310 --config.lr_decay_epochs='(160, 260)'``
follows the code. (The released model also keeps PreResNet's default 1000-way ``fc2`` for
CIFAR, model_hub passes no ``num_classes``; we use 100.) Data: ``tfds build cifar100
--file_format=array_record --data_dir=DIR`` once (needs TensorFlow), then
``--config.data.data_dir=DIR``.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.model = ml_collections.ConfigDict()
  config.model.name = 'preresnet56_bottleneck'
  config.model.num_classes = 100
  config.model.width = 16
  config.model.input_size = (32, 32)
  config.model.dropout_rate = 0.5
  config.model.dtype = 'float32'
  config.model.block = ml_collections.ConfigDict({'type': 'none'})
  config.model.insertions = ml_collections.ConfigDict()

  config.data = ml_collections.ConfigDict()
  config.data.name = 'cifar100'
  config.data.data_dir = ''  # tfds data dir (ArrayRecord); required
  config.data.crop_size = 32
  config.data.padding = 4
  config.data.random_flip = True
  config.data.mean = (0.4914, 0.4822, 0.4465)
  config.data.std = (0.2023, 0.1994, 0.2010)
  config.data.num_workers = 4

  config.global_batch_size = 128
  config.num_epochs = 300
  config.optimizer = 'sgd'
  config.momentum = 0.9
  config.base_learning_rate = 0.1  # per lr_base_batch_size images
  config.lr_base_batch_size = 128
  config.schedule = 'step'
  config.warmup_epochs = 0
  config.warmup_start_factor = 0.0
  config.warmup_granularity = 'step'
  config.lr_decay_epochs = (150, 250)
  config.lr_decay_factor = 0.1
  config.weight_decay = 1e-4
  config.weight_decay_on = 'all'
  config.grad_clip_norm = 0.0  # 0: off
  config.label_smoothing = 0.0
  config.loss = 'softmax_cross_entropy'  # or 'sigmoid_binary_cross_entropy' (multi-label)

  # Loop, evaluation and checkpoints (bat_jax/training/loop.py); -1 means "derive it".
  config.num_train_steps = -1
  config.steps_per_epoch = -1
  config.eval_batch_size = -1
  config.log_every_steps = 100
  config.device_prefetch = 2  # batches put on the devices ahead (bat_jax/data/prefetch.py)
  config.eval_every_epochs = 5  # released code: every 5 epochs
  config.eval_every_steps = -1
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  # Faults (bat_jax/training/faults.py, docs/reliability.md).
  config.max_nonfinite_steps = 5  # consecutive skipped non-finite steps before exit status 3
  config.max_failed_saves = 3  # consecutive failed checkpoint saves before exit status 4
  config.device_memory_bytes = -1  # memory check before step 1; -1: device's (host RAM on CPU)
  config.init_from = ''
  config.init_from_ignore = ()
  return config
