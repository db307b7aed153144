"""ResNet-18 + 2 NL blocks: Table 5 'ResNet-18 +NL' (70.9 top-1; +0.23 GFLOPs, +0.17 M params).

Released image code (``nl_mod 2 2 1000``: after residual block i when i % 2 == 1): one block after
block 1 of res3 and of res4. Image NL: embedded Gaussian with the C^-1/2 scale, no subsampling.
+165,568 params; +0.14 GMACs, +0.23 when the two affinity products count 2 per multiply-add as the
paper's counter does (docs/nonlocal.md)."""

from configs import base_imagenet as base
from configs import blocks


def get_config():
  config = base.get_config()
  config.model.name = 'resnet18'
  config.model.block = blocks.nonlocal_block(subsample=False)
  config.model.insertions = blocks.insertions({'res3': (1,), 'res4': (1,)})
  return config
