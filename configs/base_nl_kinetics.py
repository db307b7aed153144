"""The Non-local paper's Kinetics-400 recipe (``nonlocal_cvpr2018_slides.md`` Tables 1-2), shared by
``configs/nl_kinetics_*.py``; every field cites the released video-nonlocal-net (@c253ed5) file
that sets it (``DBG.yaml`` = ``configs/DBG_kinetics_resnet_8gpu_c2d_nonlocal_400k.yaml``,
``run_*_32f.sh`` = ``scripts/run_{c2d,i3d}_{baseline,nlnet}_400k_32f.sh``).

Model: the paper's 32-frame C2D / I3D (``nlpaper_*`` backbones: Table 1; ``MODEL_NAME
resnet_video_org`` in ``run_*_32f.sh``). ``get_config(depth, arch, blocks_plan, **block)`` builds
one Table 2 row; each ``nl_kinetics_*.py`` is a call of it.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from configs import base_kinetics
from configs import blocks

DEPTHS = {'r50': 'resnet50', 'r101': 'resnet101'}
ARCHS = ('c2d', 'i3d', 'i3d333')


def plans(depth: str) -> dict[str, dict[str, tuple[int, ...]]]:
  """Where the NL blocks go (slides "Non-local networks"; ``resnet_helper.res_stage_nonlocal``
  puts block ``idx`` after residual block ``idx % mod == mod - 1``).

  * ``res2``..``res5``: one block "right before the last residual block of a stage" (Table 2b);
    ``1block`` is ``res4`` (Table 2a, 2c).
  * ``5block``: "3 to res4 and 2 to res3, to every other residual block"; ResNet-101 as
    ``resnet_video_org.py`` spaces them (res3 mod 2, res4 mod ``2 * 4 - 1 = 7``: {6, 13, 20}).
  * ``10block``: "to every residual block in res3 and res4" (ResNet-50: 4 + 6). For ResNet-101
    (4 + 23 residual blocks) neither the paper nor the released code gives the ten (its
    ``LAYER_MOD 1`` gives res3 {1, 3} + res4 mod 3 = 9 blocks); ours: all 4 of res3 and 6 of res4
    spaced like the 5-block plan, mod 4 from 1: {1, 5, 9, 13, 17, 21}.
  """
  backbone = DEPTHS[depth]
  out = {stage: blocks.before_last((stage,), backbone) for stage in ('res2', 'res3', 'res4', 'res5')}
  out['1block'] = out['res4']
  if depth == 'r50':
    out['5block'] = dict(blocks.FIVE_BLOCKS)
    out['10block'] = {'res3': tuple(range(4)), 'res4': tuple(range(6))}
  else:
    out['5block'] = blocks.every({'res3': 2, 'res4': 7}, backbone)
    out['10block'] = {'res3': tuple(range(4)), 'res4': tuple(range(1, 23, 4))}
  return out


def get_config(depth: str = 'r50', arch: str = 'c2d', plan: str = '',
               **block: Any) -> ml_collections.ConfigDict:
  """A Table 2 row: ``depth`` ('r50' / 'r101'), ``arch`` ('c2d', 'i3d' = I3D_3x1x1, 'i3d333'),
  ``plan`` (a key of :func:`plans`, '' for none) and ``block`` (``blocks.nonlocal_block``
  arguments: ``instantiation``, ``mode``, ``subsample``)."""
  if depth not in DEPTHS:
    raise ValueError(f'depth={depth!r}; allowed: {sorted(DEPTHS)}')
  if arch not in ARCHS:
    raise ValueError(f'arch={arch!r}; allowed: {ARCHS}')
  config = base_kinetics.get_config()
  m = config.model
  m.name = f'nlpaper_{arch}_{DEPTHS[depth]}'
  m.input_size = (32, 224, 224)  # run_*_32f.sh: TRAIN.VIDEO_LENGTH 32; Table 1 input 32x224x224
  m.dropout_rate = 0.5  # run_*_32f.sh: TRAIN.DROPOUT_RATE 0.5
  m.zero_init_residual = True  # DBG.yaml MODEL.BN_INIT_GAMMA 0.0 (branch2c's BN; ImageNet init
  #                              replaces it when init_from is set)
  if plan:
    available = plans(depth)
    if plan not in available:
      raise ValueError(f'plan={plan!r}; allowed: {sorted(available)}')
    m.block = blocks.nonlocal_block(**block)
    m.insertions = blocks.insertions(available[plan])
  elif block:
    raise ValueError(f'block fields {sorted(block)} given without a plan')

  d = config.data
  d.num_frames = 32  # run_*_32f.sh: TRAIN.VIDEO_LENGTH 32, TEST.VIDEO_LENGTH 32
  d.frame_stride = 2  # run_*_32f.sh: TRAIN.SAMPLE_RATE 2, TEST.SAMPLE_RATE 2
  d.crop_size = 224  # DBG.yaml TRAIN.CROP_SIZE 224, TEST.CROP_SIZE 224
  d.train_augment = 'scale_jitter'  # lib/datasets: short side resized U[256, 320], random crop
  d.train_short_side = (256, 320)  # DBG.yaml TRAIN.JITTER_SCALES [256, 320]
  d.eval_short_side = 256  # DBG.yaml TEST.SCALE 256; NUM_TEST_CLIPS 30: --protocol=30view
  d.mean = (0.45, 0.45, 0.45)  # lib/core/config.py MODEL.MEAN 114.75 (of 255), every channel
  d.std = (0.225, 0.225, 0.225)  # lib/core/config.py MODEL.STD 57.375 (of 255)

  config.global_batch_size = 64  # DBG.yaml TRAIN.BATCH_SIZE 64 (8 GPUs x 8 clips)
  config.base_learning_rate = 0.01  # DBG.yaml SOLVER.BASE_LR 0.01
  config.lr_base_batch_size = 64
  config.momentum = 0.9  # DBG.yaml SOLVER.MOMENTUM 0.9
  config.nesterov = True  # DBG.yaml SOLVER.NESTEROV True
  config.weight_decay = 1e-4  # DBG.yaml SOLVER.WEIGHT_DECAY 0.0001
  config.weight_decay_on = 'conv_fc_weights'  # DBG.yaml SOLVER.WEIGHT_DECAY_BN 0.0
  config.grad_clip_norm = 0.0  # the released Caffe2 solver clips nothing
  config.warmup_epochs = 0  # DBG.yaml SOLVER.WARMUP.WARMUP_ON False
  # DBG.yaml SOLVER: MAX_ITER 400000, STEP_SIZES [150000, 150000, 100000], LRS [1, 0.1, 0.01]:
  # the solver counts iterations, so one "epoch" of this recipe is 10,000 iterations.
  config.steps_per_epoch = 10_000
  config.num_epochs = 40
  config.lr_decay_epochs = (15, 30)
  config.lr_decay_factor = 0.1
  config.eval_every_epochs = 2  # DBG.yaml TRAIN.EVAL_PERIOD 20000
  config.checkpoint_every_steps = 10_000  # DBG.yaml CHECKPOINT.CHECKPOINT_PERIOD 10000
  # Required: the ImageNet weights (run_*_32f.sh: TRAIN.PARAMS_FILE
  # r50_pretrain_c2_model_iter450450_clean.pkl): a configs/imagenet_r50.py run, or for ResNet-101
  # torchvision's resnet101 converted with bat_jax/tools/import_torch.py; 'scratch' trains from
  # random weights. The I3D rows get them inflated (init_from: bat_jax/training/transfer.py).
  config.init_from = ''
  return config
