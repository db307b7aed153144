"""ResNet-50 + 1 NS block on CIFAR-10 / CIFAR-100: chebysnl Table 5 row '+ NS', ResNet50 columns
(Top-1 95.15 on CIFAR-10, 77.90 on CIFAR-100).

``get_config(dataset)`` picks the column,
``--config=configs/cifar_r50_ns.py:dataset=cifar10`` (default ``cifar100``).
Backbone, insertion and recipe: ``base_cifar_r50.py``."""

from configs import base_cifar_r50 as base


def get_config(arg: str | None = None):
  return base.get_config(arg, block='ns')
