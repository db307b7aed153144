"""PreResNet-56 on CIFAR-100: chebysnl Tables 2-5 'PreResNet56' row (75.33 top-1, 93.97 top-5).

3 stages (res1..res3) of 9 pre-activation basic blocks, 16/32/64 channels at 32/16/8 pixels,
3x3 stem, no max pool: 861,428 params, 0.126 GMACs (the paper prints no counts). The released
SNL code builds its "preresnet56" from 9 pre-activation *bottlenecks* per stage (64/128/256
channels) plus an extra 1x1 conv head; we build the network the paper names (docs/recipes.md)."""

from configs import base_cifar as base


def get_config():
  return base.get_config()
