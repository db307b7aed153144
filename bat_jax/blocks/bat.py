"""BAT-Blocks: grouped bilinear attentional transforms (``bat_cvpr2020.md`` §3.2-3.4).

``TransformPredictor`` learns P, Q (and the temporal T) from the features; ``BATBlock`` wraps the
transform in the released code's residual block:

  x -> 1x1 conv D->C + BN + ReLU -> BA-transform (C channels) -> 1x1 conv C->C + BN + ReLU
    -> 1x1 conv C->D + BN + ReLU -> channel dropout -> + x

The math is in :mod:`bat_jax.ops.bilinear`.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from bat_jax.blocks.fields import validate_fields
from bat_jax.nn.layers import Conv, batch_norm, cell_matmul, kaiming_fan_out
from bat_jax.ops import bilinear

Array = jax.Array
MatrixMode = Literal['block', 'full', 'downsample']


class WindowPredictor(nn.Module):
  """Predicts ``size x size`` matrices for ``groups`` groups from pooled features ``(B, n, k)``.

  A convolution whose kernel spans ``size`` pooled cells with ``size * size * groups`` outputs
  (the ``s x 1`` conv of P, the ``1 x s`` conv of Q, the ``ts x 1 x 1`` conv of T). On a grid
  larger than ``size`` it slides with stride 1 and the windows are assembled on the diagonal
  (supplement §2); on a smaller one it sees zero-padded features and is cropped.
  Returns normalised matrices ``(B, groups, n, n)``; rows sum to 1 (``axis=-1``) or columns do
  (``axis=-2``). ``uncovered``: what entries no window covers become (``bilinear.normalize``).
  """
  size: int
  groups: int
  axis: int
  normalization: bilinear.Normalization = 'softmax'
  dtype: Any = jnp.float32
  uncovered: bilinear.Uncovered = 'zero_weight'

  @nn.compact
  def __call__(self, pooled: Array) -> Array:
    bsz, n, _ = pooled.shape
    if n < self.size:
      pooled = jnp.pad(pooled, ((0, 0), (0, self.size - n), (0, 0)))
    logits = nn.Conv(self.size * self.size * self.groups, (self.size,), padding='VALID',
                     kernel_init=kaiming_fan_out, dtype=self.dtype, name='conv')(pooled)
    windows = logits.reshape(bsz, -1, self.groups, self.size, self.size)
    logits, covered = bilinear.assemble_windows(windows.astype(jnp.float32), n)
    return bilinear.normalize(logits, self.axis, self.normalization, covered, self.uncovered)


class TransformPredictor(nn.Module):
  """The transformation predictor (§3.2-3.4, Figure 2 right).

  ``F = ReLU(BN(1x1 conv C -> k))``; row / column max pooling on the block grid (Eqs. 5-6); P from
  the row-pooled and Q from the column-pooled features; with ``temporal_groups > 0`` also T from F
  averaged over H, W and over time cells (§3.4).

  Returns ``p (N*T, k, n_h, n_h)``, ``q (N*T, k, n_w, n_w)``, and ``t (N, tk, n_t, n_t)`` or None.
  """
  groups: int
  sizes: tuple[int, int]
  layout_h: tuple[int, int]
  layout_w: tuple[int, int]
  temporal_groups: int = 0
  temporal_size: int = 4
  layout_t: tuple[int, int] = (1, 1)
  normalization: bilinear.Normalization = 'softmax'
  dtype: Any = jnp.float32
  bn_group_size: int = 0
  uncovered: bilinear.Uncovered = 'zero_weight'

  @nn.compact
  def __call__(self, x: Array, train: bool) -> tuple[Array, Array, Array | None]:
    n, t, h, w, _ = x.shape
    f = Conv(self.groups, use_bias=True, dtype=self.dtype, name='conv')(x)
    f = batch_norm(train, name='bn', dtype=self.dtype, relu=True,
                   group_size=self.bn_group_size)(f)
    rows, cols = bilinear.row_column_pool(f.reshape(n * t, h, w, self.groups),
                                          *self.layout_h, *self.layout_w)
    p = WindowPredictor(self.sizes[0], self.groups, -1, self.normalization, self.dtype,
                        self.uncovered, name='predict_p')(rows)
    q = WindowPredictor(self.sizes[1], self.groups, -2, self.normalization, self.dtype,
                        self.uncovered, name='predict_q')(cols)
    tmat = None
    if self.temporal_groups:
      frames = bilinear.cell_mean_pool(jnp.mean(f, axis=(2, 3)), 1, *self.layout_t)
      tmat = WindowPredictor(self.temporal_size, self.temporal_groups, -1, self.normalization,
                             self.dtype, self.uncovered, name='predict_t')(frames)
    return p, q, tmat


class BATBlock(nn.Module):
  """A (3D) BAT-Block on ``(N, T, H, W, D)`` clips; images are one-frame clips.

  Attributes:
    groups: ``k``, attention groups sharing one (P, Q) (Table 4); 0 fixes P = Q = I (no predictor).
    size: ``s``, the block grid (Eqs. 5-6; 7 in the papers). Ignored by ``matrix='full'``.
    matrix: ``'block'`` (block-based, Figure 3), ``'full'`` (P, Q at the initialisation input's
      full resolution) or ``'downsample'`` (transform a downsampled X and upsample; Table 2).
    temporal_groups: ``tk``, temporal transform groups (3D BAT, §3.4); 0 for the 2D block.
    temporal_size: ``ts``, the temporal block grid (Table 9 uses 8 for 16 and 64 frames).
    normalization: ``'softmax'`` (released video code) or ``'sigmoid'`` (released image code).
    reduction: ``C = D / reduction`` (2).
    dropout_rate: channel-wise dropout before the residual add (0.2).
    uncovered: where windows slide (a grid larger than ``size``, e.g. res3/res4 at 256² input),
      entries no window covers get weight 0 (``'zero_weight'``, supplement §2) or logit 0 before
      the normalisation (``'zero_logit'``, the released video code); ``bilinear.normalize``.
  """
  groups: int = 4
  size: int = 7
  matrix: MatrixMode = 'block'
  temporal_groups: int = 0
  temporal_size: int = 4
  normalization: bilinear.Normalization = 'softmax'
  reduction: int = 2
  dropout_rate: float = 0.2
  uncovered: bilinear.Uncovered = 'zero_weight'
  dtype: Any = jnp.float32
  bn_group_size: int = 0  # model.bn_group_size (layers.BatchNorm)

  @classmethod
  def validate(cls, channels: int, fields: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` naming the config field when the block cannot run on ``channels``."""
    get = validate_fields(cls, fields, choices=dict(
        matrix=('block', 'full', 'downsample'), uncovered=bilinear.UNCOVERED,
        normalization=('softmax', 'sigmoid'))).__getitem__
    if channels % get('reduction'):
      raise ValueError(f"model.block.reduction={get('reduction')} does not divide {channels} "
                       'block input channels')
    inner = channels // get('reduction')
    for field in ('groups', 'temporal_groups'):
      if get(field) < 0 or (get(field) and inner % get(field)):
        allowed = [0] + [g for g in range(1, inner + 1) if inner % g == 0]
        raise ValueError(f'model.block.{field}={get(field)} must divide the {inner} channels of '
                         f'the transform (block input {channels} / reduction); allowed: {allowed}')
    for field in ('size', 'temporal_size'):
      if get(field) < 1:
        raise ValueError(f'model.block.{field}={get(field)} must be >= 1')

  def _sizes(self, h: int, w: int) -> tuple[int, int]:
    """The predictor's window sizes (s_h, s_w). For ``'full'`` they are fixed by the parameters
    (the resolution at initialisation), so another resolution slides windows like ``'block'``."""
    if self.matrix != 'full':
      return self.size, self.size
    if self.has_variable('params', 'predictor'):
      predictor = self.variables['params']['predictor']
      return (predictor['predict_p']['conv']['kernel'].shape[0],
              predictor['predict_q']['conv']['kernel'].shape[0])
    return h, w

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    self.validate(x.shape[-1], {f: getattr(self, f) for f in (
        'groups', 'size', 'matrix', 'temporal_groups', 'temporal_size', 'normalization',
        'reduction', 'uncovered')})
    n, t, h, w, d = x.shape
    c = d // self.reduction
    y = Conv(c, use_bias=True, dtype=self.dtype, name='conv1')(x)
    y = batch_norm(train, name='bn1', dtype=self.dtype, relu=True,
                   group_size=self.bn_group_size)(y)
    if self.groups:
      y = self._transform(y, train)
    y = Conv(c, use_bias=True, dtype=self.dtype, name='conv2')(y)
    y = batch_norm(train, name='bn2', dtype=self.dtype, relu=True,
                   group_size=self.bn_group_size)(y)
    y = Conv(d, use_bias=True, dtype=self.dtype, name='conv3')(y)
    y = batch_norm(train, name='bn3', dtype=self.dtype, relu=True,
                   group_size=self.bn_group_size)(y)
    y = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2, 3), deterministic=not train)(y)
    return x + y

  def _transform(self, y: Array, train: bool) -> Array:
    n, t, h, w, c = y.shape
    s_h, s_w = self._sizes(h, w)
    layout_h, layout_w = bilinear.block_layout(h, s_h), bilinear.block_layout(w, s_w)
    layout_t = bilinear.block_layout(t, self.temporal_size)
    p, q, tmat = TransformPredictor(
        self.groups, (s_h, s_w), layout_h, layout_w, self.temporal_groups, self.temporal_size,
        layout_t, self.normalization, self.dtype, self.bn_group_size, self.uncovered,
        name='predictor')(y, train)
    if self.matrix == 'downsample':
      out = bilinear.downsample_transform(y.reshape(n * t, h, w, c), p, q, *layout_h, *layout_w)
      out = out.reshape(n, t, h, w, c)
      if tmat is not None:
        out = bilinear.temporal_transform(out, tmat, layout_t[1])
    else:
      out = bilinear.bat_transform(y, p, q, tmat, layout_h[1], layout_w[1], layout_t[1],
                                    matmul=cell_matmul)
    if self.is_mutable_collection('intermediates'):
      full = lambda m, b, length: bilinear.resize_matrix(m, b, length)  # noqa: E731
      self.sow('intermediates', 'P', full(p, layout_h[1], h).reshape(n, t, *p.shape[1:2], h, h))
      self.sow('intermediates', 'Q', full(q, layout_w[1], w).reshape(n, t, *q.shape[1:2], w, w))
      if tmat is not None:
        self.sow('intermediates', 'T', full(tmat, layout_t[1], t))
    return out
