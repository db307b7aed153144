"""C2D + 5 NL blocks, blocks pre-trained on ImageNet: Table 7 'NL, Pre-trained: Yes' (68.8, 30.69 GFLOPs, 31.28 M).

The model of configs/mini_kinetics_c2d_nl.py, started from an ImageNet ResNet-50 + NL checkpoint
(configs/imagenet_r50_nl.py trains one; its NL blocks sit at the same indices): pass
``--config.init_from=<that workdir>``. The 1000-class classifier is not loaded (``fc`` is kept at
its init); the image NL has no subsampling, which changes no parameter shape."""

from configs import mini_kinetics_c2d_nl


def get_config():
  config = mini_kinetics_c2d_nl.get_config()
  config.init_from_ignore = ('^params/fc/',)
  return config
