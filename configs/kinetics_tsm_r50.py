"""TSM ResNet-50 on Kinetics-400, 8 frames: BAT Table 8 'TSM [32]' (74.1 top-1, 32.8 GFLOPs, 24.3 M).

A TSN ResNet-50 (the 2-D network on every frame, no pool2) whose every bottleneck shifts 1/8 of
conv1's input channels one frame back and 1/8 one frame forward inside the residual branch
(``place='blockres'``, ``n_div=8``; nonlocal_cvpr2018_slides.md: "shifts part of the channels
along the temporal dimension (1/4)"). No parameters or multiply-adds of its own: 24,327,632
params, 32.70 GMACs. Training fields are the BAT Kinetics recipe's; TSM's own (8 segments, lr
0.01 per 64 for 50 epochs, x0.1 at 20/40, dropout 0.5) are not in the papers here. BatchNorm groups
of 16 clips as the BAT rows (the released scripts/train_tsm_kinetics_rgb_8f.sh trains batch 128
under nn.DataParallel without naming the GPU count)."""

from configs import base_kinetics as base


def get_config():
  config = base.get_config()
  config.model.bn_group_size = base.BN_GROUP_BAT
  config.model.name = 'tsm_resnet50'
  return config
