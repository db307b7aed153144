"""ResNet-50 + 1 CGNL block on CIFAR-10 / CIFAR-100: chebysnl Table 5 row '+ CGNL', ResNet50 columns
(Top-1 94.49 on CIFAR-10, 74.88 on CIFAR-100).

``get_config(dataset)`` picks the column,
``--config=configs/cifar_r50_cgnl.py:dataset=cifar10`` (default ``cifar100``).
Backbone, insertion and recipe: ``base_cifar_r50.py``."""

from configs import base_cifar_r50 as base


def get_config(arg: str | None = None):
  return base.get_config(arg, block='cgnl')
