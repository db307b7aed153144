"""Kinetics-400 recipe shared by the video configs (``bat_cvpr2020.md`` §4.1; released BAT video code).

C2D ResNet-50, 8 frames at stride 8, 224 crops; SGD momentum 0.9, lr 0.01 at batch 64 (scaled
linearly with the global batch), x0.1 at epochs 40/80, 100 epochs, no warm-up; weight decay 1e-4
on conv/FC weights only (no decay on BN and biases), biases at 2x the learning rate; gradient-norm
clip 20; dropout 0.5 before the classifier; BAT blocks use channel dropout 0.2. BatchNorm groups
(``model.bn_group_size``) are set per recipe from the constants below. Data as the released BAT
video code: multi-scale corner crops (TSN's GroupMultiScaleCrop) + flip, RGB 0-255 minus
(103.939, 116.779, 123.68). Initialised from ImageNet (``init_from``; docs/recipes.md says from
which config).
"""

import ml_collections

# Released BAT video main.py: input_mean = [103.939, 116.779, 123.68], subtracted from R, G, B.
BAT_VIDEO_MEAN_255 = (103.939, 116.779, 123.68)
# Examples per BatchNorm statistics group (config.model.bn_group_size), as each paper's
# data-parallel run had per GPU (nn.DataParallel / Caffe2: one BN per GPU, no synchronisation):
# - BAT rows (Kinetics, Mini-Kinetics): bat_cvpr2020.md §4.1 "finetuned on 4 GPUs with a
#   mini-batch of 64 clips" -> 16 (the released scripts/train_c2d_3dbat.sh sets -b 64 and no GPU
#   count; main.py wraps the model in nn.DataParallel).
# - Non-local rows: video-nonlocal-net configs/DBG_kinetics_resnet_8gpu_c2d_nonlocal_400k.yaml
#   (used by scripts/run_{c2d,i3d}_nlnet_400k.sh): NUM_GPUS 8, TRAIN.BATCH_SIZE 64, per-GPU batch
#   BATCH_SIZE / NUM_GPUS (lib/models/resnet_video.py) -> 8.
# - RSA: rsa_neurips2021_supplementary.md §1 "batch size as 64 across 8 V100 GPU"; the released
#   main.py wraps the model in nn.DataParallel -> 8.
BN_GROUP_BAT = 16
BN_GROUP_NONLOCAL = 8
BN_GROUP_RSA = 8


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
  config.model.bn_group_size = 0  # 0: BN over the global batch; each recipe sets its paper's
  config.model.block = ml_collections.ConfigDict({'type': 'none'})
  config.model.insertions = ml_collections.ConfigDict()

  config.data = ml_collections.ConfigDict()
  config.data.name = 'kinetics400'  # or 'mini_kinetics200' (python -m bat_jax.data.mini_kinetics)
  config.data.root = ''  # required: the Kinetics folder (annotations + train/ val/)
  config.data.num_frames = 8
  config.data.frame_stride = 8
  config.data.crop_size = 224  # training crop; 'clip' and '250view' eval crops
  # Released BAT video main.py: GroupMultiScaleCrop(224, [1, .875, .75, .66]) + flip on frames
  # decoded at one short side (here 256, the size its validation resizes to); the Non-local rows
  # use scale jitter: train_augment='scale_jitter', train_short_side=(256, 320) (inclusive).
  config.data.train_augment = 'multiscale_crop'
  config.data.train_short_side = (256, 256)
  config.data.eval_short_side = 256  # eval resize; also the '30view' (fully-convolutional) crop
  config.data.random_flip = True
  # The pipeline computes (x / 255 - mean) / std on RGB; released BAT video main.py:
  # GroupNormalize([103.939, 116.779, 123.68], [1]) on RGB 0-255 frames (lintel RGB24,
  # Stack(roll=False)), i.e. x - (103.939, 116.779, 123.68) on R, G, B in that order, std 1.
  config.data.mean = tuple(m / 255.0 for m in BAT_VIDEO_MEAN_255)
  config.data.std = (1.0 / 255.0,) * 3
  config.data.decode_timeout_s = 60.0  # a slower decode is skipped, reported like a broken file
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
  config.cosine_span = 'after_warmup'  # schedule='cosine': or 'all_steps' (Mini-Kinetics)
  config.warmup_epochs = 0
  config.lr_decay_epochs = (40, 80)
  config.lr_decay_factor = 0.1
  config.weight_decay = 1e-4
  config.weight_decay_on = 'conv_fc_weights'  # released video code: no decay on BN and biases
  # Released video code (BAT utils.py TrainPolicy; RSA and TSM's TSN get_optim_policies): every
  # conv / linear bias (BAT/NL block convs, fc) has lr_mult 2, decay_mult 0.
  config.bias_lr_mult = 2.0
  config.grad_clip_norm = 20.0
  config.label_smoothing = 0.0
  config.loss = 'softmax_cross_entropy'  # or 'sigmoid_binary_cross_entropy' (multi-label)

  # Loop, evaluation and checkpoints (bat_jax/training/loop.py); -1 means "derive it".
  config.num_train_steps = -1  # > 0 overrides num_epochs
  config.steps_per_epoch = -1  # > 0 overrides (train-set size // global_batch_size)
  config.eval_batch_size = -1  # -1: global_batch_size
  config.log_every_steps = 50
  config.device_prefetch = 2  # batches put on the devices ahead (bat_jax/data/prefetch.py)
  config.eval_every_epochs = 5  # clip top-1 on the eval set during training (0: only at the end)
  config.eval_every_steps = -1  # > 0 overrides eval_every_epochs
  config.checkpoint_every_steps = 1000  # async saves; also at the end and on SIGTERM
  config.keep_checkpoints = 3
  # Faults (bat_jax/training/faults.py, docs/reliability.md).
  config.max_nonfinite_steps = 5  # consecutive skipped non-finite steps before exit status 3
  config.max_failed_saves = 3  # consecutive failed checkpoint saves before exit status 4
  config.device_memory_bytes = -1  # memory check before step 1; -1: device's (host RAM on CPU)
  # Required: the ImageNet weights to start from (a checkpoint step dir / checkpoints dir /
  # workdir; docs/recipes.md says which ImageNet config fits; released scripts: --resume
  # <ImageNet checkpoint> --soft_resume), or 'scratch' for random weights. Loading is soft: what
  # fits loads, the rest keeps its initialisation (WORKDIR/init_report.json).
  config.init_from = ''
  config.init_from_ignore = ()  # regexes of names kept at init even when they fit
  return config


# bat_cvpr2020.md Table 9: clip length -> (frame stride, 3D BAT temporal_size). "For models with
# sequences longer than 8 frames, the block-based matrix trick is adopted along time ... the
# number of blocks are set to 8 x 8": temporal_size 8 (16 frames: T = 8 after pool2, an 8 x 8
# temporal matrix; 64 frames: T = 32 in 8 cells of 4). Strides are not given: 4 (16 frames) and 1
# (64 frames) keep the 8 x 8 clips' 64-frame span (an assumption); 8 frames: §4.1, stride 8, ts 4.
TABLE9_CLIPS = {8: (8, 4), 16: (4, 8), 64: (1, 8)}


def set_clip_frames(config: ml_collections.ConfigDict, frames: int) -> None:
  """Sets a 3D-BAT recipe's clip to ``frames`` frames (the ``frames`` argument, Table 9)."""
  if frames not in TABLE9_CLIPS:
    raise ValueError(f'config argument frames={frames}; allowed (Table 9): {sorted(TABLE9_CLIPS)}')
  stride, temporal_size = TABLE9_CLIPS[frames]
  config.model.input_size = (frames, *config.model.input_size[1:])
  config.model.block.temporal_size = temporal_size
  config.data.num_frames = frames
  config.data.frame_stride = stride
