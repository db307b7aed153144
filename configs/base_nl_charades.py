"""The Non-local paper's Charades recipe (``nonlocal_cvpr2018_slides.md`` Table 4: I3D and NL I3D,
ResNet-101, fine-tuned from Kinetics), shared by ``configs/nl_charades_i3d_r101{,_nl}.py``.

The Non-local release (facebookresearch/video-nonlocal-net) has no Charades code or config; every
field below cites its authors' follow-up release that fine-tunes the same R101 I3D-NL from
Kinetics on Charades (facebookresearch/video-long-term-feature-banks, ``LFB.yaml`` =
``configs/charades_r101_baseline.yaml``, its "3D CNN" R101-I3D-NL baseline; ``lib/core/config.py``
for defaults). Model: the paper's backbones (``configs/base_nl_kinetics.py``: Table 1 I3D_3x1x1,
5 NL blocks in res3 / res4 for the NL row) with a 157-way classifier.
"""

from __future__ import annotations

import ml_collections

from configs import base_nl_kinetics


def get_config(plan: str = '') -> ml_collections.ConfigDict:
  """Table 4 'I3D [ours]' (``plan=''``) or 'NL I3D [ours]' (``plan='5block'``), ResNet-101."""
  config = base_nl_kinetics.get_config('r101', 'i3d', plan)
  config.model.num_classes = 157  # Charades_v1_classes.txt; LFB.yaml MODEL.NUM_CLASSES 157
  config.model.dropout_rate = 0.3  # LFB.yaml TRAIN.DROPOUT_RATE 0.3
  # LFB.yaml MODEL.MULTI_LABEL True: SigmoidCrossEntropyLoss (lib/models/resnet_video.py).
  config.loss = 'sigmoid_binary_cross_entropy'
  config.label_smoothing = 0.0

  d = config.data
  d.name = 'charades'
  d.root = ''  # required: the Charades folder (CSVs, classes file, Charades_v1_rgb/ or mp4s)
  d.videos = ''  # optional: the frame-folder / mp4 folder (default: found under root)
  d.train_split = 'train'  # Charades_v1_train.csv
  d.eval_split = 'test'  # Charades_v1_test.csv: Table 4's "train/val" column
  d.num_frames = 32  # LFB.yaml TRAIN.VIDEO_LENGTH 32, TEST.VIDEO_LENGTH 32
  d.frame_stride = 4  # LFB.yaml TRAIN.SAMPLE_RATE 4, TEST.SAMPLE_RATE 4 (24 fps frames)
  d.train_augment = 'scale_jitter'  # LFB.yaml TRAIN.JITTER_SCALES [256, 320]
  d.train_short_side = (256, 320)
  d.crop_size = 224  # LFB.yaml TRAIN.CROP_SIZE 224
  d.eval_short_side = 256  # LFB.yaml TEST.SCALE 256, TEST.CROP_SIZE 256: --protocol=charades
  # mean / std 0.45 / 0.225: base_nl_kinetics (LFB lib/core/config.py DATA_MEAN / DATA_STD).

  config.global_batch_size = 16  # LFB.yaml TRAIN.BATCH_SIZE 16 (8 GPUs x 2 clips)
  config.base_learning_rate = 0.02  # LFB.yaml SOLVER.BASE_LR 0.02
  config.lr_base_batch_size = 16
  config.momentum = 0.9  # LFB.yaml SOLVER.MOMENTUM 0.9
  config.nesterov = True  # LFB.yaml SOLVER.NESTEROV True
  config.weight_decay = 1.25e-5  # LFB.yaml SOLVER.WEIGHT_DECAY 0.0000125
  config.weight_decay_on = 'conv_fc_weights'  # LFB.yaml SOLVER.WEIGHT_DECAY_BN 0.0
  config.warmup_epochs = 0  # LFB lib/core/config.py SOLVER.WARMUP.WARMUP_ON False
  # LFB.yaml SOLVER: steps_with_relative_lrs, STEP_SIZES [20000, 4000], LRS [1, 0.1],
  # MAX_ITER 24000; the solver counts iterations, so one "epoch" here is 1,000 iterations.
  config.steps_per_epoch = 1_000
  config.num_epochs = 24
  config.lr_decay_epochs = (20,)
  config.lr_decay_factor = 0.1
  config.eval_every_epochs = 4  # LFB.yaml TRAIN.EVAL_PERIOD 4000
  config.checkpoint_every_steps = 4_000  # LFB.yaml CHECKPOINT.CHECKPOINT_PERIOD 4000
  # Required: the Kinetics run of the same model (LFB.yaml TRAIN.PARAMS_FILE
  # r101_k400_pretrained.pkl): the workdir of configs/nl_kinetics_i3d_r101.py (I3D) or
  # configs/nl_kinetics_i3d_r101_nl.py (NL I3D). Its 400-way classifier is not loaded.
  config.init_from = ''
  config.init_from_ignore = ('^params/fc/',)
  return config
