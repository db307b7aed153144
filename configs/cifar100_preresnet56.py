"""PreResNet-56 on CIFAR-100: chebysnl Tables 2-5 'PreResNet56' row (75.33 top-1, 93.97 top-5).

The released SNL code's network (``preresnet56_bottleneck``, base_cifar.py): 3 stages (res1..res3)
of 9 pre-activation bottlenecks, 64/128/256 output channels at 32/16/8 pixels, 3x3 stem, no max
pool, 1x1 conv-BN-ReLU head, dropout 0.5: 958,708 params (derived by hand from
model/preresnet_snl.py in tests/test_preresnet_bottleneck.py; the paper prints no counts).
He et al.'s basic-block PreResNet-56 (16/32/64 channels, 861,428 params) stays available as
``--config.model.name=preresnet56``."""

from configs import base_cifar as base


def get_config():
  return base.get_config()
