"""``build_model(config.model)``: the one place where a config becomes modules.

The model config (``ml_collections.ConfigDict``) has these fields:

* ``name``: a backbone from ``BACKBONES`` (``resnet50``, ``se_resnet50``, ``resnext50_32x4d``,
  ``preresnet56``, ``preresnet56_bottleneck``, ``cifar_resnet50``, ``c2d_resnet50``,
  ``i3d_resnet101``, ...; ``nlpaper_{c2d,i3d,i3d333}_resnet{50,101}``: the Non-local paper's
  32-frame models; ``hara3d_resnet{50,101,152}``: Hara et al.'s 3D ResNets).
* ``num_classes``, ``width`` (64 for ImageNet ResNets and ``cifar_resnet50``, 16 for the CIFAR
  PreResNets; default: the backbone's), ``dropout_rate`` (before the classifier).
* ``input_size``: ``(H, W)`` for images, ``(T, H, W)`` for clips (the backbones whose registry
  entry has ``is_video``); tools take the input shape from it.
* ``block``: the inserted non-local block; ``block.type`` is a key of ``BLOCKS`` (or ``'none'``) and
  every other field is passed to that block's module unchanged (field names are the module's).
* ``insertions``: stage name -> residual-block indices (0-based) the block follows. ImageNet and
  video backbones have stages ``res2``..``res5``; CIFAR backbones ``res1``..``res3`` (chebysnl
  §3.1's naming: "res1" is the first, 16-channel stage at 32x32).
* optional: ``zero_init_residual``, ``remat_stages``, ``dtype`` (``'float32'`` or ``'bfloat16'``),
  ``pool1_padding`` (1, default: torchvision's stem pool; 0: the released BAT video code's, which
  released video checkpoints were trained with), ``bn_group_size`` (examples per BatchNorm statistics group in training; 0: the whole batch;
  ``layers.BatchNorm``).
* optional, RSA backbones (``rsa_resnet50``) only: ``rsa``, a dict with ``positions`` (stage ->
  indices of the bottlenecks whose conv2 becomes an RSA layer; default the released
  res2 {2}, res3 {1, 3}, res4 {1, 3, 5}, res5 {1}) and any ``RSALayer`` field (``num_queries``,
  ``kernel_size``, ``latent``, ``kernel_type``, ``context_type``, ``normalization``, ``eps``).
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from bat_jax.blocks.bat import BATBlock
from bat_jax.blocks.fields import validate_fields
from bat_jax.blocks.rsa import RELEASED_POSITIONS as RSA_POSITIONS
from bat_jax.blocks.rsa import RSALayer
from bat_jax.blocks.nonlocal_ import NonLocalBlock
from bat_jax.blocks.spectral import ChebyshevNonLocalBlock, SpectralNonLocalBlock
from bat_jax.models.resnet import CIFAR_STAGES, STAGES, ResNet

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
      out[f'se_{depth}'] = dict(stage_sizes=sizes, residual_block=residual, se_reduction=16)
      out[f'c2d_{depth}'] = dict(stage_sizes=sizes, residual_block=residual, temporal_pool=True,
                                 is_video=True)
      # TSN (Wang et al. 2016): the 2-D network on every frame, no pool2 (RSA's and TSM's base).
      out[f'tsn_{depth}'] = dict(stage_sizes=sizes, residual_block=residual, is_video=True)
      # TSM (Lin et al.): TSN + residual temporal shift of 1/8 + 1/8 channels in every block.
      out[f'tsm_{depth}'] = dict(stage_sizes=sizes, residual_block=residual, shift_fold_div=8,
                                 is_video=True)
      out[f'i3d_{depth}'] = dict(stage_sizes=sizes, residual_block=residual, temporal_pool=True,
                                 stem_temporal_kernel=5,
                                 temporal_kernels=i3d_temporal_kernels(sizes), is_video=True)
  # The Non-local paper's own 32-frame C2D / I3D (nonlocal_cvpr2018 Table 1; the released
  # video-nonlocal-net lib/models/resnet_video_org.py, "the original model architectures used in
  # the paper"): conv1 temporal stride 2, pool1 3x3x3 stride 2, pool2 3x1x1 stride 2; 32x224^2 ->
  # res2 8x56^2, res3..res5 4 frames. I3D: conv1 5x7x7 and the same inflation plan as above
  # (resnet_video_org.obtain_arc), inflating the 1x1 (3x1x1) or the 3x3 (3x3x3; Table 2e).
  for depth in ('resnet50', 'resnet101'):
    sizes = _DEPTHS[depth][0]
    wang = dict(stage_sizes=sizes, residual_block='bottleneck', temporal_pool=True,
                stem_temporal_stride=2, pool1_temporal_kernel=3, pool1_temporal_stride=2,
                pool2_kernel=3, is_video=True)
    out[f'nlpaper_c2d_{depth}'] = wang
    for name, inflation in (('i3d', '3x1x1'), ('i3d333', '3x3x3')):
      out[f'nlpaper_{name}_{depth}'] = dict(wang, stem_temporal_kernel=5, inflation=inflation,
                                            temporal_kernels=i3d_temporal_kernels(sizes))
  # Hara et al.'s 3D ResNets (kenshohara/3D-ResNets-PyTorch, CVPR2018 branch models/resnet.py;
  # chebysnl §3.2's UCF-101 "I3D"): conv1 7x7x7 stride (1, 2, 2) padding 3, max pool 3x3x3
  # stride 2 padding 1, 3x3x3 conv2 in every bottleneck, stride 2 in time and space on conv2 and
  # the 1x1x1 conv + BN projection shortcut (type B), no pool2; 16x112^2 -> res5 1x4^2.
  for depth in ('resnet50', 'resnet101', 'resnet152'):
    sizes = _DEPTHS[depth][0]
    out[f'hara3d_{depth}'] = dict(stage_sizes=sizes, residual_block='bottleneck',
                                  stem_temporal_kernel=7, pool1_temporal_kernel=3,
                                  pool1_temporal_stride=2, inflation='3x3x3',
                                  temporal_kernels=tuple((3,) * n for n in sizes),
                                  temporal_strides=True, is_video=True)
  # ResNeXt (Xie et al.; torchvision): cardinality x width of each group of the first stage.
  for name, depth, groups, d in (('resnext50_32x4d', 'resnet50', 32, 4),
                                 ('resnext101_32x4d', 'resnet101', 32, 4),
                                 ('resnext101_32x8d', 'resnet101', 32, 8)):
    out[name] = dict(stage_sizes=_DEPTHS[depth][0], residual_block='bottleneck', groups=groups,
                     width_per_group=d)
  # RSA (Kim et al.): TSN ResNet-50 whose conv2 in 7 bottlenecks is an RSA layer (released plan).
  out['rsa_resnet50'] = dict(stage_sizes=_DEPTHS['resnet50'][0], residual_block='bottleneck',
                             conv2_module=RSALayer, conv2_positions=RSA_POSITIONS, is_video=True)
  # CIFAR pre-activation ResNets (He et al. 2016b): depth 6n + 2, n basic blocks per stage.
  for depth in (20, 56, 110):
    n = (depth - 2) // 6
    out[f'preresnet{depth}'] = dict(stage_sizes=(n, n, n), residual_block='basic', stem='cifar',
                                    preact=True, stage_names=CIFAR_STAGES)
  # The released SNL code's ``preresnet56`` (SNL-Classification/model/preresnet_snl.py): 9
  # pre-activation bottlenecks per stage (16/32/64 planes, 64/128/256 out), conv + BN projection
  # on the raw input, a 1x1 conv-BN-ReLU head (fc1, bn2); the chebysnl CIFAR rows' backbone.
  out['preresnet56_bottleneck'] = dict(stage_sizes=(9, 9, 9), residual_block='bottleneck',
                                       stem='cifar', preact=True, stage_names=CIFAR_STAGES,
                                       preact_projection='conv_bn', head_conv=True)
  # The released SNL code's CIFAR ResNet-50 (chebysnl Table 5's ResNet50 columns): torchvision's
  # ResNet-50 (model/resnet_snl.py 127-154, 284-288) whose conv1 train_val.py 337-341 replaces by
  # a 3x3 stride-1 conv (64 channels) and whose max pool it removes; BN + ReLU stay. Res2..res5 at
  # 32/16/8/4 px; the 4x4 average pool (pool_size 4, train_val.py 155, 172) is the global pool.
  out['cifar_resnet50'] = dict(stage_sizes=_DEPTHS['resnet50'][0], residual_block='bottleneck',
                               stem='cifar')
  return out


# name -> the ``ResNet`` fields of the backbone, and ``is_video`` (registry only): True for the
# backbones taking clips (N, T, H, W, 3), whose model.input_size is (T, H, W), else (H, W).
BACKBONES: dict[str, dict[str, Any]] = _backbones()
# model.width when the config does not set it.
DEFAULT_WIDTH: dict[str, int] = {n: 16 if b.get('stage_names') == CIFAR_STAGES else 64
                                 for n, b in BACKBONES.items()}
BLOCKS: dict[str, type[nn.Module]] = {
    'bat': BATBlock,
    'nonlocal': NonLocalBlock,
    'snl': SpectralNonLocalBlock,
    'chebyshev': ChebyshevNonLocalBlock,
}
_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def is_video(model_config: Mapping[str, Any]) -> bool:
  """Whether the config's backbone takes clips (its registry entry's ``is_video``)."""
  return bool(BACKBONES.get(model_config.get('name'), {}).get('is_video', False))


def stage_names(name: str) -> tuple[str, ...]:
  """The insertion keys of a backbone's stages, e.g. ``('res2', ..., 'res5')``."""
  return tuple(BACKBONES[name].get('stage_names', STAGES))


def stage_sizes(name: str) -> dict[str, int]:
  """Residual blocks per stage; ``resnet50``: ``{'res2': 3, 'res3': 4, 'res4': 6, 'res5': 3}``."""
  return dict(zip(stage_names(name), BACKBONES[name]['stage_sizes']))


def stage_channels(name: str, width: int) -> dict[str, int]:
  """Output channels ``D`` of each stage (what an inserted block sees)."""
  b = BACKBONES[name]
  expansion = 4 if b['residual_block'] == 'bottleneck' else 1
  return {s: width * 2**i * expansion for i, s in enumerate(stage_names(name))}


def _rsa_fields(cfg: ml_collections.ConfigDict, backbone: dict[str, Any],
                width: int) -> dict[str, Any]:
  """``conv2_positions`` / ``conv2_kwargs`` from ``model.rsa``, checked against the backbone."""
  rsa = dict(cfg.get('rsa') or {})
  positions = {k: tuple(int(i) for i in v)
               for k, v in dict(rsa.pop('positions', backbone['conv2_positions'])).items()}
  stages = stage_names(cfg.name)
  for stage, indices in positions.items():
    if stage not in stages:
      raise ValueError(f'model.rsa.positions has stage {stage!r}; allowed: {list(stages)}')
    num_blocks = backbone['stage_sizes'][stages.index(stage)]
    if any(not 0 <= i < num_blocks for i in indices):
      raise ValueError(f'model.rsa.positions.{stage}={indices}: {stage} of {cfg.name} has '
                       f'residual blocks 0..{num_blocks - 1}')
  validate_fields(RSALayer, rsa, prefix='model.rsa', exclude=('features', 'strides', 'train'))
  if 'kernel_size' in rsa:
    rsa['kernel_size'] = tuple(int(k) for k in rsa['kernel_size'])
  for i, stage in enumerate(stages):
    if positions.get(stage):
      inner = width * 2**i
      try:
        RSALayer.validate(inner, {'features': inner, **rsa})
      except ValueError as e:
        raise ValueError(f'model.rsa: {e}') from None
  return dict(conv2_positions=positions, conv2_kwargs=rsa)


def build_model(model_config: ml_collections.ConfigDict | Mapping[str, Any]) -> ResNet:
  """Returns the (unbound) flax module the config describes; errors name the bad field."""
  cfg = ml_collections.ConfigDict(dict(model_config))
  if cfg.get('name') not in BACKBONES:
    raise ValueError(f"model.name={cfg.get('name')!r} is not a known model; "
                     f'allowed: {sorted(BACKBONES)}')
  backbone = dict(BACKBONES[cfg.name])
  backbone.pop('is_video', None)
  dtype = cfg.get('dtype', 'float32')
  if dtype not in _DTYPES:
    raise ValueError(f'model.dtype={dtype!r}; allowed: {sorted(_DTYPES)}')

  insertions = {k: tuple(int(i) for i in v) for k, v in dict(cfg.get('insertions') or {}).items()}
  block_cfg = dict(cfg.get('block') or {'type': 'none'})
  block_type = block_cfg.pop('type', 'none')
  if block_type != 'none' and block_type not in BLOCKS:
    raise ValueError(f'model.block.type={block_type!r} is not a known block; '
                     f"allowed: {sorted(BLOCKS) + ['none']}")
  stages = stage_names(cfg.name)
  width = int(cfg.get('width', DEFAULT_WIDTH[cfg.name]))
  for stage, indices in insertions.items():
    if stage not in stages:
      raise ValueError(f'model.insertions has stage {stage!r}; allowed for {cfg.name}: '
                       f'{list(stages)}')
    num_blocks = backbone['stage_sizes'][stages.index(stage)]
    bad = [i for i in indices if not 0 <= i < num_blocks]
    if bad:
      raise ValueError(f'model.insertions.{stage}={indices}: {stage} of {cfg.name} has residual '
                       f'blocks 0..{num_blocks - 1}')
  insert_block = None
  if block_type != 'none' and any(insertions.values()):
    insert_block = BLOCKS[block_type]
    validate_fields(insert_block, block_cfg)
    channels = stage_channels(cfg.name, width)
    for stage, indices in insertions.items():
      if indices:
        insert_block.validate(channels[stage], block_cfg)

  if backbone.get('conv2_module') is not None:
    backbone.update(_rsa_fields(cfg, backbone, width))
  elif cfg.get('rsa'):
    raise ValueError(f'model.rsa is set but {cfg.name} has no RSA layers; use rsa_resnet50')

  pool1_padding = cfg.get('pool1_padding', 1)
  if pool1_padding not in (0, 1) or isinstance(pool1_padding, bool):
    raise ValueError(f'model.pool1_padding={pool1_padding!r}; allowed: 0 (released BAT video '
                     'code) or 1 (torchvision)')
  bn_group_size = cfg.get('bn_group_size', 0)
  if not isinstance(bn_group_size, int) or bn_group_size < 0:
    raise ValueError(f'model.bn_group_size={bn_group_size!r}; allowed: 0 (statistics over the '
                     'whole batch) or a positive number of examples per BatchNorm group')
  zero_init_residual = bool(cfg.get('zero_init_residual', False))
  if zero_init_residual and backbone.get('preact'):
    raise ValueError(f'model.zero_init_residual=True: {cfg.name} is a pre-activation network, '
                     'whose residual branches end in a conv, not a BN')
  return ResNet(
      **backbone,
      num_classes=int(cfg.num_classes),
      width=width,
      insertions=insertions,
      insert_block=insert_block,
      insert_kwargs=block_cfg,
      insert_name=block_type,
      dropout_rate=float(cfg.get('dropout_rate', 0.0)),
      stochastic_depth=float(cfg.get('stochastic_depth', 0.0)),
      pool1_padding=int(pool1_padding),
      zero_init_residual=zero_init_residual,
      remat_stages=tuple(cfg.get('remat_stages', ())),
      bn_group_size=bn_group_size,
      dtype=_DTYPES[dtype],
  )
