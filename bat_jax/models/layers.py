"""Layers shared by every backbone and block.

All models work on 5-D activations ``(N, T, H, W, C)``; an image is a clip with ``T = 1``. A single
convolution module therefore serves ResNet, C2D and I3D, its kernel always has the layout
``(t, h, w, in, out)`` (so a 2-D checkpoint goes into C2D unchanged and inflates to I3D along ``t``),
and it picks the cheapest XLA convolution for its kernel shape:

* ``1 x k x k`` kernels fold the frames into the batch and run a 2-D convolution;
* ``t x 1 x 1`` kernels run a 2-D convolution over ``(T, H*W)``;
* anything else (the I3D stem) runs a 3-D convolution.

XLA:CPU runs a ``(1,3,3)`` Conv3D train step 5.7x slower than the folded 2-D form (DEVELOPERS.md);
the two are the same function, which ``tests/test_layers.py`` checks.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array
Dtype = Any

# PyTorch's kaiming_normal_(mode='fan_out', nonlinearity='relu'): N(0, 2 / fan_out), untruncated.
kaiming_fan_out = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def _triple(v: int | Sequence[int]) -> tuple[int, int, int]:
  if isinstance(v, int):
    return (v, v, v)
  v = tuple(int(i) for i in v)
  if len(v) != 3:
    raise ValueError(f'expected 3 values (t, h, w), got {v}')
  return v  # type: ignore[return-value]


class Conv(nn.Module):
  """A ``t x h x w`` convolution on ``(N, T, H, W, C)`` with PyTorch-style symmetric padding.

  Attributes:
    features: output channels.
    kernel_size: ``(t, h, w)``.
    strides: ``(t, h, w)``.
    padding: ``(t, h, w)`` zeros added on both sides; ``None`` means ``k // 2``.
    use_bias: add a bias (the BAT and NL blocks' convs have one; backbone convs do not).
    groups: grouped convolution (ResNeXt's cardinality): input and output channels are split into
      ``groups`` contiguous groups and group ``g`` of the output sees only group ``g`` of the
      input. The kernel is ``(t, h, w, in / groups, out)``, PyTorch's ``(out, in / groups, ...)``
      transposed, so grouped checkpoints map one to one.
  """
  features: int
  kernel_size: Sequence[int] = (1, 1, 1)
  strides: Sequence[int] = (1, 1, 1)
  padding: Sequence[int] | None = None
  use_bias: bool = False
  groups: int = 1
  kernel_init: Any = kaiming_fan_out
  bias_init: Any = nn.initializers.zeros
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kt, kh, kw = _triple(self.kernel_size)
    st, sh, sw = _triple(self.strides)
    pt, ph, pw = (kt // 2, kh // 2, kw // 2) if self.padding is None else _triple(self.padding)
    in_features = x.shape[-1]
    g = self.groups
    if g < 1 or in_features % g or self.features % g:
      raise ValueError(f'Conv groups={g} must divide the {in_features} input and '
                       f'{self.features} output channels')
    kernel = self.param('kernel', self.kernel_init, (kt, kh, kw, in_features // g, self.features),
                        jnp.float32)
    x = x.astype(self.dtype)
    kernel = kernel.astype(self.dtype)
    n, t, h, w, _ = x.shape
    if kt == 1 and st == 1 and pt == 0:
      y = jax.lax.conv_general_dilated(
          x.reshape(n * t, h, w, in_features), kernel[0], (sh, sw), ((ph, ph), (pw, pw)),
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=g)
      y = y.reshape(n, t, *y.shape[1:])
    elif kh == 1 and kw == 1 and sh == 1 and sw == 1 and ph == 0 and pw == 0:
      y = jax.lax.conv_general_dilated(
          x.reshape(n, t, h * w, in_features), kernel[:, 0], (st, 1), ((pt, pt), (0, 0)),
          dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=g)
      y = y.reshape(n, y.shape[1], h, w, self.features)
    else:
      y = jax.lax.conv_general_dilated(
          x, kernel, (st, sh, sw), ((pt, pt), (ph, ph), (pw, pw)),
          dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'), feature_group_count=g)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


def batch_norm(train: bool, *, zero_init: bool = False, name: str | None = None,
               dtype: Dtype = jnp.float32) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here, eps 1e-5).

  Under ``jax.jit`` over a device mesh the batch statistics are those of the global batch.
  ``zero_init`` starts the scale at 0 (the NL and SNL blocks' last BN, so a new block is an identity).
  """
  return nn.BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
      scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones, name=name)


def max_pool_hw(x: Array, window: int, stride: int, padding: int) -> Array:
  """Spatial max pooling per frame of ``(N, T, H, W, C)`` (PyTorch padding semantics: pads are -inf)."""
  n, t, h, w, c = x.shape
  y = nn.max_pool(x.reshape(n * t, h, w, c), (window, window), (stride, stride),
                  ((padding, padding), (padding, padding)))
  return y.reshape(n, t, *y.shape[1:])


def max_pool_time(x: Array, window: int, stride: int) -> Array:
  """Temporal max pooling of ``(N, T, H, W, C)`` without padding (the video models' pool2)."""
  n, t, h, w, c = x.shape
  y = nn.max_pool(x.reshape(n, t, h * w, c), (window, 1), (stride, 1))
  return y.reshape(n, y.shape[1], h, w, c)
