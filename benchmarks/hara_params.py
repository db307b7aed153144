r"""Parameters of Hara et al.'s released 3D ResNet-50, counted by PyTorch from their own code.

    git clone -b CVPR2018 https://github.com/kenshohara/3D-ResNets-PyTorch /tmp/hara
    .venv-torch/bin/python benchmarks/hara_params.py --checkout /tmp/hara

Imports ``models/resnet.py`` of that checkout (the CVPR 2018 code chebysnl's UCF-101 "I3D"
cites), builds ``resnet50(num_classes=N, shortcut_type='B', sample_size=112,
sample_duration=16)`` for N = 400 (Kinetics) and 101 (UCF-101), and prints
``sum(p.numel() for p in model.parameters())`` and the BatchNorm buffers. docs/models.md compares
these with ``hara3d_resnet50``'s count (tests/test_hara3d.py). Runs the checkout's code: point it
at a checkout you trust.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys


def released_resnet(checkout: str):
  """The ``models.resnet`` module of ``checkout``."""
  path = os.path.join(checkout, 'models', 'resnet.py')
  if not os.path.isfile(path):
    sys.exit(f'{path} does not exist: --checkout must be a kenshohara/3D-ResNets-PyTorch '
             'checkout of the CVPR2018 branch')
  spec = importlib.util.spec_from_file_location('hara_resnet', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--checkout', required=True,
                      help='a kenshohara/3D-ResNets-PyTorch checkout (CVPR2018 branch)')
  args = parser.parse_args()
  resnet = released_resnet(args.checkout)
  for n in (400, 101):
    model = resnet.resnet50(num_classes=n, shortcut_type='B', sample_size=112,
                            sample_duration=16)
    params = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    print(f'resnet50 num_classes={n}: {params:,} parameters, {buffers:,} BatchNorm buffer values')


if __name__ == '__main__':
  main()
