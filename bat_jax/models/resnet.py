"""ResNet backbones for images (ResNet-18..152, SE-ResNet, ResNeXt, CIFAR PreResNet) and video
(C2D, I3D), one stage builder and one parametrised residual block.

Images enter as ``(N, H, W, 3)`` and run as one-frame clips; videos enter as ``(N, T, H, W, 3)``.
The layout follows torchvision (stride on the 3x3 conv of a bottleneck, projection shortcut
``1x1 conv + BN``) so that torchvision and the BAT authors' weights map one to one. The video
variants follow ``bat_supplementary.md`` Table 1 (Wang et al.'s C2D / I3D):

* conv1 ``1x7x7`` (C2D) or ``5x7x7`` (I3D), stride ``(1, 2, 2)``;
* pool1 ``1x3x3`` max, stride ``(1, 2, 2)``, padding 1, so res2 is 56x56 at 224 input as in the table
  (the released code pads 0 and gets 55x55: 0.2 GMACs less, see docs/models.md; ``pool1_padding=0``
  builds that);
* pool2 = ``2x1x1`` temporal max pool after res2;
* I3D inflates the first conv of chosen residual blocks to ``3x1x1``;
* head: global average pool, dropout, fully connected layer.

The Non-local paper's own 32-frame C2D / I3D (its Table 1) are the same module with
``stem_temporal_stride=2``, a ``3x3x3`` pool1 of stride 2, a ``3x1x1`` pool2 and, for I3D_3x3x3,
``inflation='3x3x3'`` (registry ``nlpaper_*``). Hara et al.'s 3D ResNets (ChebySNL's UCF-101
"I3D") are too: conv1 ``7x7x7``, a ``3x3x3`` pool1 of stride 2, ``3x3x3`` conv2 in every block,
and ``temporal_strides`` (registry ``hara3d_*``).

Variants are fields, not copies: ``groups`` / ``width_per_group`` (ResNeXt's grouped ``3x3``),
``se_reduction`` (squeeze-excitation before the add), ``preact`` (pre-activation blocks, final
BN-ReLU), ``stem='cifar'`` (one ``3x3`` conv, stride 1, no max pool), ``stage_names``,
``shift_fold_div`` (TSM's residual temporal shift) and ``conv2_module`` at ``conv2_positions``
(RSA layers in place of chosen bottlenecks' ``1x3x3`` conv). TSN (the RSA/TSM backbone) is C2D
without pool2.

Non-local blocks of any family are inserted after chosen residual blocks of a stage; which ones,
and what they are, come from the model config through ``registry.build_model``.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bat_jax.models.regularizers import drop_path, stochastic_depth_rates
from bat_jax.nn.layers import Conv, batch_norm, max_pool_hw, max_pool_time, remat
from bat_jax.ops.tsm import temporal_shift

Array = jax.Array
STAGES = ('res2', 'res3', 'res4', 'res5')
CIFAR_STAGES = ('res1', 'res2', 'res3')  # chebysnl §3.1 calls the first CIFAR stage "res1"
STEMS = ('imagenet', 'cifar')


def _bn(module: nn.Module, train: bool, **kwargs: Any) -> nn.Module:
  """``batch_norm`` in ``module``'s dtype and BatchNorm groups (``module.bn_group_size``)."""
  return batch_norm(train, dtype=module.dtype, group_size=module.bn_group_size, **kwargs)


class SqueezeExcite(nn.Module):
  """Squeeze-and-excitation (Hu et al.; torchvision ``SqueezeExcitation``, the BAT image code's
  ``SEBlock``): ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))``.

  ``fc1``/``fc2`` are ``1x1x1`` convs with bias, ``D -> D // reduction -> D`` (``nn.Linear`` in the
  BAT code: the same parameters). The squeeze averages each frame over ``H, W`` (images: the whole
  map), so a C2D built from an SE-ResNet stays a per-frame 2-D network.
  """
  reduction: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    d = x.shape[-1]
    s = jnp.mean(x.astype(jnp.float32), axis=(2, 3), keepdims=True).astype(self.dtype)
    s = nn.relu(Conv(d // self.reduction, use_bias=True, dtype=self.dtype, name='fc1')(s))
    s = nn.sigmoid(Conv(d, use_bias=True, dtype=self.dtype, name='fc2')(s))
    return x * s


PREACT_PROJECTIONS = ('preactivated', 'conv_bn')
INFLATIONS = ('3x1x1', '3x3x3')


class _ResidualBlock(nn.Module):
  """What every residual block shares; subclasses only list their convolutions (``_convs``).

  Post-activation (ResNet v1, torchvision): ``conv-BN-ReLU`` ... ``conv-BN`` [SE] ``+ shortcut``,
  ReLU. Pre-activation (He et al. 2016b, ``preact``): ``BN-ReLU-conv`` ... [SE] ``+ shortcut``, no
  ReLU after the add; the identity shortcut reads the raw input, the projection shortcut is set by
  ``preact_projection``.

  Attributes:
    features: ``planes``, the inner width of a plain block (the output is ``features * expansion``).
    strides: spatial stride (on the ``3x3`` conv, torchvision style).
    temporal_strides: ``strides`` also in time, on that conv and the projection shortcut (Hara et
      al.'s 3D ResNets: ``Conv3d(..., stride=2)``); False: space only.
    temporal_kernel: ``t`` of the first conv (I3D inflation).
    zero_init_residual: start the branch's last BN scale at 0 (post-activation only).
    preact: pre-activation ordering (CIFAR PreResNets).
    preact_projection: a pre-activation block's projection shortcut: ``'preactivated'`` (He et al.
      2016b: a ``1x1`` conv without BN on the pre-activated input) or ``'conv_bn'`` (the released
      SNL code's ``preresnet_snl.py``: ``1x1`` conv + BN on the raw input).
    se_reduction: add squeeze-excitation after the last BN, before the add (0: none; 16 in SENet).
    shift_fold_div: TSM's residual shift (``place='blockres'``): ``temporal_shift(., fold_div)``
      on the input of conv1 inside the branch; the shortcut reads the unshifted input (0: none;
      8 in TSM).
    drop_path_rate: stochastic depth: the whole branch of a clip is dropped with this probability
      in training (kept branches scaled by ``1 / (1 - rate)``), as the released RSA code.
    bn_group_size: examples per BatchNorm statistics group in training (``layers.BatchNorm``).
  """
  features: int
  strides: int = 1
  temporal_strides: bool = False
  temporal_kernel: int = 1
  zero_init_residual: bool = False
  preact: bool = False
  preact_projection: str = 'preactivated'
  se_reduction: int = 0
  shift_fold_div: int = 0
  drop_path_rate: float = 0.0
  bn_group_size: int = 0
  dtype: Any = jnp.float32
  expansion = 1

  def _convs(self, train: bool) -> list[Callable[..., nn.Module]]:
    raise NotImplementedError

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    convs = self._convs(train)
    out = self.features * self.expansion
    project = self.strides != 1 or x.shape[-1] != out
    shortcut = x
    if self.preact:
      if self.preact_projection not in PREACT_PROJECTIONS:
        raise ValueError(f'preact_projection={self.preact_projection!r}; allowed: '
                         f'{PREACT_PROJECTIONS}')
      y = _bn(self, train, name='bn1', relu=True)(x)
      if project:
        raw = self.preact_projection == 'conv_bn'
        shortcut = Conv(out, (1, 1, 1), self._strides(self.strides), dtype=self.dtype,
                        name='downsample_conv')(x if raw else y)
        if raw:
          shortcut = _bn(self, train, name='downsample_bn')(shortcut)
      for i, conv in enumerate(convs, 1):
        if i > 1:
          y = _bn(self, train, name=f'bn{i}', relu=True)(y)
        y = conv(name=f'conv{i}')(self._shift(y) if i == 1 else y)
    else:
      y = x
      for i, conv in enumerate(convs, 1):
        y = conv(name=f'conv{i}')(self._shift(y) if i == 1 else y)
        last = i == len(convs)
        y = _bn(self, train, zero_init=last and self._zero_init_last(), name=f'bn{i}',
                relu=not last)(y)
      if project:
        shortcut = Conv(out, (1, 1, 1), self._strides(self.strides), dtype=self.dtype,
                        name='downsample_conv')(x)
        shortcut = _bn(self, train, name='downsample_bn')(shortcut)
    if self.se_reduction:
      y = SqueezeExcite(self.se_reduction, dtype=self.dtype, name='se')(y)
    if self.drop_path_rate and train:
      y = drop_path(y, self.drop_path_rate, self.make_rng('dropout'), deterministic=False)
    y = y + shortcut
    return y if self.preact else nn.relu(y)

  def _shift(self, x: Array) -> Array:
    return temporal_shift(x, self.shift_fold_div) if self.shift_fold_div else x

  def _zero_init_last(self) -> bool:
    return self.zero_init_residual

  def _strides(self, strides: int) -> tuple[int, int, int]:
    return (strides if self.temporal_strides else 1, strides, strides)

  def _conv(self, features: int, kernel: tuple[int, int, int], strides: int = 1,
            groups: int = 1) -> Callable[..., nn.Module]:
    return functools.partial(Conv, features, kernel, self._strides(strides), groups=groups,
                             dtype=self.dtype)


class BasicBlock(_ResidualBlock):
  """ResNet-18/34 and CIFAR residual block: ``t x 3 x 3`` (carries the stride), ``1 x 3 x 3``."""
  expansion = 1

  def _convs(self, train: bool) -> list[Callable[..., nn.Module]]:
    return [self._conv(self.features, (self.temporal_kernel, 3, 3), self.strides),
            self._conv(self.features, (1, 3, 3))]


class Bottleneck(_ResidualBlock):
  """ResNet-50+ / ResNeXt residual block: ``t x 1 x 1``, ``1 x 3 x 3`` (carries the stride; grouped
  for ResNeXt), ``1 x 1 x 1`` to ``4 * features``.

  Attributes (beyond :class:`_ResidualBlock`):
    groups: cardinality of the ``3x3`` conv (32 for ResNeXt-50 32x4d).
    width_per_group: ResNeXt's ``d``; the inner width is ``int(features * width_per_group / 64)
      * groups`` (torchvision), which is ``features`` for a plain ResNet (1, 64).
    conv2_module: a module class replacing the ``1x3x3`` conv2 (RSA's ``RSALayer``): called as
      ``conv2_module(inner, strides=..., train=..., dtype=..., **conv2_kwargs, name='conv2')(y)``
      (``train``: the block's mode, for normalisations with batch statistics), followed
      by the usual ``bn2`` + ReLU. A block holding one starts its ``bn3`` scale at 0 (RSA
      supplement §1: "set the gamma parameter of the last batch normalization layer to zero").
    conv2_kwargs: its fields.
    inflation: which conv ``temporal_kernel`` inflates: ``'3x1x1'`` (the first ``1x1``; Wang et
      al.'s I3D_3x1x1, the released video-nonlocal-net ``bottleneck_transformation_3d``) or
      ``'3x3x3'`` (the ``3x3``; their I3D_3x3x3, Table 2e).
  """
  groups: int = 1
  width_per_group: int = 64
  conv2_module: type[nn.Module] | None = None
  conv2_kwargs: Mapping[str, Any] | None = None
  inflation: str = '3x1x1'
  expansion = 4

  def _convs(self, train: bool) -> list[Callable[..., nn.Module]]:
    if self.inflation not in INFLATIONS:
      raise ValueError(f'inflation={self.inflation!r}; allowed: {INFLATIONS}')
    inner = int(self.features * (self.width_per_group / 64.0)) * self.groups
    t1, t2 = ((self.temporal_kernel, 1) if self.inflation == '3x1x1'
              else (1, self.temporal_kernel))
    if self.conv2_module is None:
      conv2 = self._conv(inner, (t2, 3, 3), self.strides, self.groups)
    elif t2 != 1:
      raise ValueError("inflation='3x3x3' inflates conv2, which conv2_module replaces")
    else:
      conv2 = functools.partial(self.conv2_module, inner, strides=self.strides, train=train,
                                dtype=self.dtype, **(self.conv2_kwargs or {}))
    return [self._conv(inner, (t1, 1, 1)), conv2,
            self._conv(self.features * 4, (1, 1, 1))]

  def _zero_init_last(self) -> bool:
    return self.zero_init_residual or self.conv2_module is not None


RESIDUAL_BLOCKS: dict[str, type[nn.Module]] = {'basic': BasicBlock, 'bottleneck': Bottleneck}


class ResNet(nn.Module):
  """A ResNet for images or clips, with non-local blocks inserted after chosen residual blocks.

  Attributes:
    stage_sizes: residual blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50 (res2..res5) or
      ``(9, 9, 9)`` for PreResNet-56 (res1..res3). Stage ``i`` has inner width ``width * 2**i``;
      its first block has stride 2, except in stage 0.
    residual_block: ``'basic'`` or ``'bottleneck'``.
    num_classes: classifier outputs.
    width: channels of the stem and of the first stage's inner convs (64 for ImageNet ResNets, 16
      for CIFAR PreResNets; tests use less).
    stem: ``'imagenet'`` (``t x 7 x 7`` conv stride 2, BN, ReLU, ``3x3`` max pool stride 2) or
      ``'cifar'`` (``3x3`` conv stride 1; BN + ReLU only without ``preact``).
    stage_names: names of the stages (parameter scopes ``<stage>_block<i>`` and insertion keys).
    groups, width_per_group: ResNeXt's grouped ``3x3`` in every bottleneck (1, 64: plain ResNet).
    se_reduction: squeeze-excitation in every residual block (0: none).
    shift_fold_div: TSM's residual shift in every residual block (0: none; 8 in TSM).
    conv2_module, conv2_kwargs: the module replacing a bottleneck's ``1x3x3`` conv2 (RSA) and its
      fields, in the residual blocks ``conv2_positions`` names (stage -> block indices).
    preact: pre-activation residual blocks and a final BN + ReLU before the pooling.
    preact_projection: the pre-activation blocks' projection shortcut (see ``_ResidualBlock``).
    head_conv: after the final BN + ReLU, a ``1x1`` conv (same width, no bias) + BN + ReLU before
      the pooling (the released SNL code's PreResNet: ``fc1``, ``bn2``).
    stem_temporal_kernel: ``t`` of conv1 (1 for images and C2D, 5 for I3D).
    stem_temporal_stride: temporal stride of conv1 (1; 2 in the Non-local paper's 32-frame models,
      Table 1 "stride 2, 2, 2").
    pool1_temporal_kernel, pool1_temporal_stride: temporal window and stride of pool1, padded with
      ``(kernel - 1) // 2`` frames (1, 1: a per-frame pool; 3, 2 in the Non-local paper's Table 1).
    temporal_kernels: per stage, ``t`` of each residual block's first conv (I3D's inflation plan);
      ``None`` means 1 everywhere.
    temporal_pool: apply pool2 (temporal max pool, stride 2) after the first stage (video models).
    pool2_kernel: pool2's temporal window, padded with ``(kernel - 1) // 2`` frames (2: BAT's
      Table 1 and the released code; 3: the Non-local paper's Table 1).
    inflation: which conv of a bottleneck ``temporal_kernels`` inflates (``Bottleneck.inflation``).
    temporal_strides: the stride-2 residual blocks of res3..res5 also halve time (Hara et al.'s 3D
      ResNets; ``_ResidualBlock.temporal_strides``).
    pool1_padding: padding of the ImageNet stem's ``3x3`` stride-2 max pool: 1 (torchvision, the
      supplement's 56x56 res2) or 0 (the released BAT video code's ``MaxPool3d``: 55x55).
    insertions: stage name -> indices of the residual blocks a non-local block follows.
    insert_block: the inserted block's module class (``__call__(x, train)``, same shape out).
    insert_kwargs: its fields.
    insert_name: prefix of inserted blocks' names (``'bat'`` gives ``res3_bat1``).
    dropout_rate: dropout before the classifier.
    stochastic_depth: drop rate of the last residual block's branch; earlier blocks get linearly
      less, the first none (RSA recipe: 0.2).
    zero_init_residual: start each residual branch's last BN scale at 0 (off in the papers' runs).
    remat_stages: stages whose residual and inserted blocks are rematerialised in the backward pass
      (``bat_jax.nn.layers.remat``: only each block's input is kept; its activations are
      recomputed).
    bn_group_size: examples per BatchNorm statistics group in training, for every BN of the
      backbone and of the inserted blocks (``layers.BatchNorm``; 0: the whole batch).
  """
  stage_sizes: Sequence[int]
  residual_block: str = 'bottleneck'
  num_classes: int = 1000
  width: int = 64
  stem: str = 'imagenet'
  stage_names: Sequence[str] = STAGES
  groups: int = 1
  width_per_group: int = 64
  se_reduction: int = 0
  shift_fold_div: int = 0
  conv2_module: type[nn.Module] | None = None
  conv2_kwargs: Mapping[str, Any] | None = None
  conv2_positions: Mapping[str, Sequence[int]] | None = None
  preact: bool = False
  preact_projection: str = 'preactivated'
  head_conv: bool = False
  stem_temporal_kernel: int = 1
  stem_temporal_stride: int = 1
  pool1_temporal_kernel: int = 1
  pool1_temporal_stride: int = 1
  temporal_kernels: Sequence[Sequence[int]] | None = None
  temporal_pool: bool = False
  pool2_kernel: int = 2
  inflation: str = '3x1x1'
  temporal_strides: bool = False
  pool1_padding: int = 1
  insertions: Mapping[str, Sequence[int]] | None = None
  insert_block: type[nn.Module] | None = None
  insert_kwargs: Mapping[str, Any] | None = None
  insert_name: str = 'block'
  dropout_rate: float = 0.0
  stochastic_depth: float = 0.0
  zero_init_residual: bool = False
  remat_stages: Sequence[str] = ()
  bn_group_size: int = 0
  dtype: Any = jnp.float32

  def _residual_kwargs(self) -> dict[str, Any]:
    kw: dict[str, Any] = dict(zero_init_residual=self.zero_init_residual, preact=self.preact,
                              preact_projection=self.preact_projection,
                              se_reduction=self.se_reduction, shift_fold_div=self.shift_fold_div,
                              temporal_strides=self.temporal_strides,
                              bn_group_size=self.bn_group_size, dtype=self.dtype)
    if self.residual_block == 'bottleneck':
      kw.update(groups=self.groups, width_per_group=self.width_per_group,
                inflation=self.inflation)
    elif ((self.groups, self.width_per_group, self.inflation) != (1, 64, '3x1x1')
          or self.conv2_module is not None):
      raise ValueError('basic residual blocks support only groups=1, width_per_group=64, '
                       "inflation='3x1x1' and no conv2 replacement")
    return kw

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    if x.ndim == 4:  # an image batch runs as one-frame clips
      x = x[:, None]
    if x.ndim != 5:
      raise ValueError(f'expected (N, H, W, C) images or (N, T, H, W, C) clips, got {x.shape}')
    if self.stem == 'imagenet':
      x = Conv(self.width, (self.stem_temporal_kernel, 7, 7), (self.stem_temporal_stride, 2, 2),
               dtype=self.dtype, name='conv1')(x)
      x = _bn(self, train, name='bn1', relu=True)(x)
      x = max_pool_hw(x, 3, 2, self.pool1_padding)  # a box max pool is separable: space, then time
      if (self.pool1_temporal_kernel, self.pool1_temporal_stride) != (1, 1):
        x = max_pool_time(x, self.pool1_temporal_kernel, self.pool1_temporal_stride,
                          (self.pool1_temporal_kernel - 1) // 2)
    elif self.stem == 'cifar':
      x = Conv(self.width, (self.stem_temporal_kernel, 3, 3), dtype=self.dtype, name='conv1')(x)
      if not self.preact:
        x = _bn(self, train, name='bn1', relu=True)(x)
    else:
      raise ValueError(f'stem={self.stem!r}; allowed: {STEMS}')
    residual_cls = RESIDUAL_BLOCKS[self.residual_block]
    block_kwargs = self._residual_kwargs()
    insertions = dict(self.insertions or {})
    replaced = dict(self.conv2_positions or {}) if self.conv2_module is not None else {}
    drop_rates = iter(stochastic_depth_rates(self.stochastic_depth, sum(self.stage_sizes)))
    for stage, num_blocks in enumerate(self.stage_sizes):
      stage_name = self.stage_names[stage]
      rematted = stage_name in self.remat_stages
      residual = remat(residual_cls) if rematted else residual_cls
      inserted = (remat(self.insert_block)
                  if rematted and self.insert_block else self.insert_block)
      tks = self.temporal_kernels[stage] if self.temporal_kernels else (1,) * num_blocks
      for i in range(num_blocks):
        extra = (dict(conv2_module=self.conv2_module, conv2_kwargs=self.conv2_kwargs)
                 if i in replaced.get(stage_name, ()) else {})
        x = residual(self.width * 2**stage, strides=2 if (stage > 0 and i == 0) else 1,
                     temporal_kernel=tks[i], drop_path_rate=next(drop_rates), **block_kwargs,
                     **extra, name=f'{stage_name}_block{i}')(x, train)
        if i in insertions.get(stage_name, ()):
          x = inserted(**(self.insert_kwargs or {}), dtype=self.dtype,
                       bn_group_size=self.bn_group_size,
                       name=f'{stage_name}_{self.insert_name}{i}')(x, train)
      if stage == 0 and self.temporal_pool:
        x = max_pool_time(x, self.pool2_kernel, 2, (self.pool2_kernel - 1) // 2)
    if self.preact:
      x = _bn(self, train, name='final_bn', relu=True)(x)
    if self.head_conv:
      x = Conv(x.shape[-1], dtype=self.dtype, name='head_conv')(x)
      x = _bn(self, train, name='head_bn', relu=True)(x)
    x = jnp.mean(x.astype(jnp.float32), axis=(1, 2, 3))
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    return nn.Dense(self.num_classes, kernel_init=nn.initializers.normal(0.01), name='fc')(x)
