"""``build_model(config.model)``: the one place where a config becomes modules.

The model config (``ml_collections.ConfigDict``) has these fields:

* ``name``: a backbone from ``BACKBONES`` (``resnet50``, ``c2d_resnet50``, ``i3d_resnet101``, ...).
* ``num_classes``, ``width`` (64 in the papers), ``dropout_rate`` (before the classifier).
* ``input_size``: ``(H, W)`` for images, ``(T, H, W)`` for clips; tools take the input shape from it.
* ``block``: the inserted non-local block; ``block.type`` is a key of ``BLOCKS`` (or ``'none'``) and
  every other field is passed to that block's module unchanged (field names are the module's).
* ``insertions``: stage name (``res2``..``res5``) -> residual-block indices the block follows.
* optional: ``zero_init_residual``, ``remat_stages``, ``dtype`` (``'float32'`` or ``'bfloat16'``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from bat_jax.blocks.bat import BATBlock
from bat_jax.blocks.nonlocal_ import NonLocalBlock
from bat_jax.blocks.spectral import ChebyshevNonLocalBlock, SpectralNonLocalBlock
from bat_jax.models.resnet import STAGES, ResNet

# name -> (stage_sizes, residual block)
_DEPTHS: dict[str, tuple[tuple[int, ...], str]] = {
    'resnet18': ((2, 2, 2, 2), 'basic'),
    'resnet34': ((3, 4, 6, 3), 'basic'),
    'resnet50': ((3, 4, 6, 3), 'bottleneck'),
    'resnet101': ((3, 4, 23, 3), 'bottleneck'),
    'resnet152': ((3, 8, 36, 3), 'bottleneck'),
}


def i3d_temporal_kernels(stage_sizes: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
  """I3D's inflation plan (Wang et al.): ``t = 3`` for the first conv of every res2 block and of
  every other block of res3 and res4 (from the first) and res5 (from the second).

  For ResNet-50 this is res2 [1,1,1], res3 [1,0,1,0], res4 [1,0,1,0,1,0], res5 [0,1,0].
  """
  first_inflated = (0, 0, 0, 1)
  step = (1, 2, 2, 2)
  return tuple(
      tuple(3 if (i >= first_inflated[s] and (i - first_inflated[s]) % step[s] == 0) else 1
            for i in range(n))
      for s, n in enumerate(stage_sizes))


def _backbones() -> dict[str, dict[str, Any]]:
  out: dict[str, dict[str, Any]] = {}
  for depth, (sizes, residual) in _DEPTHS.items():
    out[depth] = dict(stage_sizes=sizes, residual_block=residual)
    if residual == 'bottleneck':
      out[f'c2d_{depth}'] = dict(stage_sizes=sizes, residual_block=residual, temporal_pool=True)
      out[f'i3d_{depth}'] = dict(stage_sizes=sizes, residual_block=residual, temporal_pool=True,
                                 stem_temporal_kernel=5,
                                 temporal_kernels=i3d_temporal_kernels(sizes))
  return out


BACKBONES: dict[str, dict[str, Any]] = _backbones()
BLOCKS: dict[str, type[nn.Module]] = {
    'bat': BATBlock,
    'nonlocal': NonLocalBlock,
    'snl': SpectralNonLocalBlock,
    'chebyshev': ChebyshevNonLocalBlock,
}
_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def is_video(model_config: ml_collections.ConfigDict) -> bool:
  return model_config.name.split('_')[0] in ('c2d', 'i3d')


def _block_fields(cls: type[nn.Module]) -> set[str]:
  return {f.name for f in dataclasses.fields(cls) if f.name not in ('parent', 'name', 'dtype')}


def build_model(model_config: ml_collections.ConfigDict | Mapping[str, Any]) -> ResNet:
  """Returns the (unbound) flax module the config describes; errors name the bad field."""
  cfg = ml_collections.ConfigDict(dict(model_config))
  if cfg.get('name') not in BACKBONES:
    raise ValueError(f"model.name={cfg.get('name')!r} is not a known model; "
                     f'allowed: {sorted(BACKBONES)}')
  backbone = dict(BACKBONES[cfg.name])
  dtype = cfg.get('dtype', 'float32')
  if dtype not in _DTYPES:
    raise ValueError(f'model.dtype={dtype!r}; allowed: {sorted(_DTYPES)}')

  insertions = {k: tuple(int(i) for i in v) for k, v in dict(cfg.get('insertions') or {}).items()}
  block_cfg = dict(cfg.get('block') or {'type': 'none'})
  block_type = block_cfg.pop('type', 'none')
  if block_type != 'none' and block_type not in BLOCKS:
    raise ValueError(f'model.block.type={block_type!r} is not a known block; '
                     f"allowed: {sorted(BLOCKS) + ['none']}")
  for stage, indices in insertions.items():
    if stage not in STAGES:
      raise ValueError(f'model.insertions has stage {stage!r}; allowed: {list(STAGES)}')
    num_blocks = backbone['stage_sizes'][STAGES.index(stage)]
    bad = [i for i in indices if not 0 <= i < num_blocks]
    if bad:
      raise ValueError(f'model.insertions.{stage}={indices}: {stage} of {cfg.name} has residual '
                       f'blocks 0..{num_blocks - 1}')
  insert_block = None
  if block_type != 'none' and any(insertions.values()):
    insert_block = BLOCKS[block_type]
    unknown = set(block_cfg) - _block_fields(insert_block)
    if unknown:
      raise ValueError(f'model.block has unknown field(s) {sorted(unknown)} for block '
                       f'{block_type!r}; allowed: {sorted(_block_fields(insert_block))}')
    channels = {s: cfg.get('width', 64) * 2**i * (4 if backbone['residual_block'] == 'bottleneck'
                                                   else 1) for i, s in enumerate(STAGES)}
    if hasattr(insert_block, 'validate'):
      for stage, indices in insertions.items():
        if indices:
          insert_block.validate(channels[stage], block_cfg)

  return ResNet(
      **backbone,
      num_classes=int(cfg.num_classes),
      width=int(cfg.get('width', 64)),
      insertions=insertions,
      insert_block=insert_block,
      insert_kwargs=block_cfg,
      insert_name=block_type,
      dropout_rate=float(cfg.get('dropout_rate', 0.0)),
      zero_init_residual=bool(cfg.get('zero_init_residual', False)),
      remat_stages=tuple(cfg.get('remat_stages', ())),
      dtype=_DTYPES[dtype],
  )
