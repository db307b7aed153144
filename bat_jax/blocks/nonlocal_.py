"""The non-local block of Wang et al. (CVPR 2018), as in the released Caffe2 / PySlowFast code.

``z = x + BN(W y)``, ``y_i = 1/C(x) sum_j f(x_i, x_j) g(x_j)`` over the positions chosen by
``mode``; the pairwise functions are in ``bat_jax.ops.affinity``. Where the code and the paper
differ the code is followed: the ``(1, 2, 2)`` max pool acts on the input of ``phi`` and ``g`` (the
paper draws it after them), the embedded Gaussian scales ``theta^T phi`` by ``C^-1/2``, the final BN
starts with scale 0 (the block is an identity at initialisation) and there is no ReLU. See
docs/nonlocal.md.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from bat_jax.blocks.fields import validate_fields
from bat_jax.nn.layers import Conv, batch_norm, kaiming_fan_out, max_pool_hw
from bat_jax.ops import affinity as ops

Array = jax.Array
INSTANTIATIONS = ('embedded_gaussian', 'dot_product', 'gaussian', 'concatenation')


class NonLocalBlock(nn.Module):
  """Non-local block on ``(N, T, H, W, D)`` clips or ``(N, H, W, D)`` maps (one-frame clips).

  Attributes:
    reduction: ``C = D // reduction`` channels for ``theta``, ``phi`` and ``g`` (2 in the papers).
    instantiation: the pairwise function ``f``: ``'embedded_gaussian'`` (softmax of
      ``C^-1/2 theta^T phi``), ``'dot_product'`` (``theta^T phi / Np``), ``'gaussian'`` (softmax of
      ``x_i^T x_j`` on the raw input, no ``theta``/``phi``), ``'concatenation'``
      (``ReLU(w_f^T [theta_i; phi_j]) / Np``).
    mode: attend over ``'spacetime'`` (all ``T*H*W`` positions), ``'space'`` (within each frame) or
      ``'time'`` (across frames at each spatial position).
    subsample: max pool ``(1, 2, 2)`` the input of ``phi`` and ``g`` (keys and values), so each
      query sees ``Np = N / 4`` positions. Not available with ``mode='time'``.
  """
  reduction: int = 2
  instantiation: str = 'embedded_gaussian'
  mode: str = 'spacetime'
  subsample: bool = True
  dtype: Any = jnp.float32
  bn_group_size: int = 0  # model.bn_group_size (layers.BatchNorm)

  @classmethod
  def validate(cls, channels: int, fields: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` naming ``model.block.<field>`` when the settings cannot work."""
    f = validate_fields(cls, fields, choices=dict(instantiation=INSTANTIATIONS, mode=ops.MODES))
    if not isinstance(f['reduction'], int) or not 1 <= f['reduction'] <= channels:
      raise ValueError(f"model.block.reduction={f['reduction']!r} must be an integer in "
                       f'[1, {channels}] for a block on {channels} channels')
    if f['subsample'] and f['mode'] == 'time':
      raise ValueError("model.block.subsample=True pools space (1, 2, 2) before phi and g, which "
                       "a time-only block (model.block.mode='time') cannot pair with its queries; "
                       'set model.block.subsample=False')

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    """``z`` for ``(N, T, H, W, D)`` clips, or for ``(N, H, W, D)`` feature maps (a 2-D block, as
    in the paper's COCO Tables 5-6: run as one-frame clips)."""
    maps = x.ndim == 4
    if maps:
      x = x[:, None]
    if x.ndim != 5:
      raise ValueError(f'expected (N, H, W, D) maps or (N, T, H, W, D) clips, got {x.shape}')
    self.validate(x.shape[-1], dict(reduction=self.reduction, instantiation=self.instantiation,
                                    mode=self.mode, subsample=self.subsample))
    d = x.shape[-1]
    c = d // self.reduction
    conv = functools.partial(Conv, use_bias=True, dtype=self.dtype)
    pooled = x
    if self.subsample:
      if x.shape[2] < 2 or x.shape[3] < 2:
        raise ValueError(f'model.block.subsample=True needs H, W >= 2, got input {x.shape}')
      pooled = max_pool_hw(x, 2, 2, 0)
    g = conv(c, name='g')(pooled)
    if self.instantiation == 'gaussian':
      q, k = x.astype(self.dtype), pooled.astype(self.dtype)
    else:
      q, k = conv(c, name='theta')(x), conv(c, name='phi')(pooled)
    q, k, g = (ops.group_positions(a, self.mode) for a in (q, k, g))

    if self.instantiation == 'embedded_gaussian':
      f = ops.softmax_affinity(q, k, c ** -0.5)
    elif self.instantiation == 'gaussian':
      f = ops.softmax_affinity(q, k)
    elif self.instantiation == 'dot_product':
      f = ops.dot_product_affinity(q, k)
    else:
      w_f = self.param('w_f', kaiming_fan_out, (2 * c, 1), jnp.float32)
      f = ops.concatenation_affinity(q, k, w_f[:, 0])
    if self.is_mutable_collection('intermediates'):
      self.sow('intermediates', 'affinity', f)

    y = ops.ungroup_positions(ops.aggregate(f, g), self.mode, x.shape)
    y = conv(d, name='w')(y)
    y = batch_norm(train, zero_init=True, name='bn', dtype=self.dtype,
                   group_size=self.bn_group_size)(y)
    return (x + y)[:, 0] if maps else x + y
