"""ResNet backbones for images (ResNet-18/34/50/101/152) and video (C2D, I3D), one stage builder.

Images enter as ``(N, H, W, 3)`` and run as one-frame clips; videos enter as ``(N, T, H, W, 3)``.
The layout follows torchvision (stride on the 3x3 conv of a bottleneck, projection shortcut
``1x1 conv + BN``) so that torchvision and the BAT authors' weights map one to one. The video
variants follow ``bat_supplementary.md`` Table 1 (Wang et al.'s C2D / I3D):

* conv1 ``1x7x7`` (C2D) or ``5x7x7`` (I3D), stride ``(1, 2, 2)``;
* pool1 ``1x3x3`` max, stride ``(1, 2, 2)``, padding 1, so res2 is 56x56 at 224 input as in the table
  (the released code pads 0 and gets 55x55: 0.2 GMACs less, see docs/models.md);
* pool2 = ``2x1x1`` temporal max pool after res2;
* I3D inflates the first conv of chosen residual blocks to ``3x1x1``;
* head: global average pool, dropout, fully connected layer.

Non-local blocks of any family are inserted after chosen residual blocks of a stage; which ones,
and what they are, come from the model config through ``registry.build_model``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bat_jax.models.layers import Conv, batch_norm, max_pool_hw, max_pool_time

Array = jax.Array
STAGES = ('res2', 'res3', 'res4', 'res5')


class BasicBlock(nn.Module):
  """ResNet-18/34 residual block: 3x3, 3x3 (expansion 1)."""
  features: int
  strides: int = 1
  temporal_kernel: int = 1
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    s = (1, self.strides, self.strides)
    y = Conv(self.features, (self.temporal_kernel, 3, 3), s, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(batch_norm(train, name='bn1', dtype=self.dtype)(y))
    y = Conv(self.features, (1, 3, 3), dtype=self.dtype, name='conv2')(y)
    y = batch_norm(train, zero_init=self.zero_init_residual, name='bn2', dtype=self.dtype)(y)
    return nn.relu(y + _shortcut(self, x, train))


class Bottleneck(nn.Module):
  """ResNet-50+ residual block: ``t x 1 x 1``, ``1 x 3 x 3`` (carries the stride), ``1 x 1 x 1``."""
  features: int
  strides: int = 1
  temporal_kernel: int = 1
  zero_init_residual: bool = False
  dtype: Any = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    y = Conv(self.features, (self.temporal_kernel, 1, 1), dtype=self.dtype, name='conv1')(x)
    y = nn.relu(batch_norm(train, name='bn1', dtype=self.dtype)(y))
    y = Conv(self.features, (1, 3, 3), (1, self.strides, self.strides), dtype=self.dtype,
             name='conv2')(y)
    y = nn.relu(batch_norm(train, name='bn2', dtype=self.dtype)(y))
    y = Conv(self.features * 4, (1, 1, 1), dtype=self.dtype, name='conv3')(y)
    y = batch_norm(train, zero_init=self.zero_init_residual, name='bn3', dtype=self.dtype)(y)
    return nn.relu(y + _shortcut(self, x, train))


def _shortcut(block: BasicBlock | Bottleneck, x: Array, train: bool) -> Array:
  """Identity, or ``1x1`` conv + BN when the shape changes (torchvision's ``downsample``)."""
  out = block.features * block.expansion
  if block.strides == 1 and x.shape[-1] == out:
    return x
  y = Conv(out, (1, 1, 1), (1, block.strides, block.strides), dtype=block.dtype,
           name='downsample_conv')(x)
  return batch_norm(train, name='downsample_bn', dtype=block.dtype)(y)


RESIDUAL_BLOCKS: dict[str, type[nn.Module]] = {'basic': BasicBlock, 'bottleneck': Bottleneck}


class ResNet(nn.Module):
  """A ResNet for images or clips, with non-local blocks inserted after chosen residual blocks.

  Attributes:
    stage_sizes: residual blocks per stage (res2..res5), e.g. ``(3, 4, 6, 3)`` for ResNet-50.
    residual_block: ``'basic'`` or ``'bottleneck'``.
    num_classes: classifier outputs.
    width: channels of conv1 and of res2's inner convs (64 in the papers; tests use less).
    stem_temporal_kernel: ``t`` of conv1 (1 for images and C2D, 5 for I3D).
    temporal_kernels: per stage, ``t`` of each residual block's first conv (I3D's inflation plan);
      ``None`` means 1 everywhere.
    temporal_pool: apply pool2 (``2x1x1`` temporal max pool) after res2 (video models).
    insertions: stage name -> indices of the residual blocks a non-local block follows.
    insert_block: the inserted block's module class (``__call__(x, train)``, same shape out).
    insert_kwargs: its fields.
    insert_name: prefix of inserted blocks' names (``'bat'`` gives ``res3_bat1``).
    dropout_rate: dropout before the classifier.
    zero_init_residual: start each residual branch's last BN scale at 0 (off in the papers' runs).
    remat_stages: stages whose residual and inserted blocks are rematerialised in the backward pass.
  """
  stage_sizes: Sequence[int]
  residual_block: str = 'bottleneck'
  num_classes: int = 1000
  width: int = 64
  stem_temporal_kernel: int = 1
  temporal_kernels: Sequence[Sequence[int]] | None = None
  temporal_pool: bool = False
  insertions: Mapping[str, Sequence[int]] | None = None
  insert_block: type[nn.Module] | None = None
  insert_kwargs: Mapping[str, Any] | None = None
  insert_name: str = 'block'
  dropout_rate: float = 0.0
  zero_init_residual: bool = False
  remat_stages: Sequence[str] = ()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if x.ndim == 4:  # an image batch runs as one-frame clips
      x = x[:, None]
    if x.ndim != 5:
      raise ValueError(f'expected (N, H, W, C) images or (N, T, H, W, C) clips, got {x.shape}')
    x = Conv(self.width, (self.stem_temporal_kernel, 7, 7), (1, 2, 2), dtype=self.dtype,
             name='conv1')(x)
    x = nn.relu(batch_norm(train, name='bn1', dtype=self.dtype)(x))
    x = max_pool_hw(x, 3, 2, 1)
    residual_cls = RESIDUAL_BLOCKS[self.residual_block]
    insertions = dict(self.insertions or {})
    for stage, num_blocks in enumerate(self.stage_sizes):
      stage_name = STAGES[stage]
      remat = stage_name in self.remat_stages
      residual = nn.remat(residual_cls, static_argnums=(2,)) if remat else residual_cls
      inserted = (nn.remat(self.insert_block, static_argnums=(2,))
                  if remat and self.insert_block else self.insert_block)
      tks = self.temporal_kernels[stage] if self.temporal_kernels else (1,) * num_blocks
      for i in range(num_blocks):
        x = residual(self.width * 2**stage, strides=2 if (stage > 0 and i == 0) else 1,
                     temporal_kernel=tks[i], zero_init_residual=self.zero_init_residual,
                     dtype=self.dtype, name=f'{stage_name}_block{i}')(x, train)
        if i in insertions.get(stage_name, ()):
          x = inserted(**(self.insert_kwargs or {}), dtype=self.dtype,
                       name=f'{stage_name}_{self.insert_name}{i}')(x, train)
      if stage == 0 and self.temporal_pool:
        x = max_pool_time(x, 2, 2)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01), name='fc')(x)
