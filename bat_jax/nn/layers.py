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

Two more forms exist only for speed on XLA:CPU (docs/performance.md), with the same values:

* ``t x 1 x 1`` kernels (``1x1x1`` included) have a custom VJP made of matrix products: the
  forward is still one ``conv_general_dilated`` (so multiply-add counts from the jaxpr are
  unchanged), the input gradient is ``sum_k shift_k(dy @ W_k^T)`` and the weight gradient
  ``dW_k = shift_k(x)^T dy``, plain GEMMs. XLA:CPU's own transposed convolutions for these are 3-9x
  slower and write the activations' gradients in a transposed layout first.
* max pooling is a chain of ``where(v > m, v, m)`` over the window's strided slices, first maximum
  winning as in ``reduce_window``'s gradient; its gradient is selects and pads instead of
  XLA:CPU's scatter-based ``select_and_scatter`` (7x faster for the stem pool).
"""

from __future__ import annotations

from typing import Any, Sequence

import functools

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


def _time_conv_lax(x: Array, kernel: Array, stride: int, pad: int) -> Array:
  """``x (N, T, P, C)`` convolved along ``T`` with ``kernel (t, C, O)`` (stride, zero padding)."""
  return jax.lax.conv_general_dilated(
      x, kernel[:, None], (stride, 1), ((pad, pad), (0, 0)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _time_slices(x: Array, kt: int, stride: int, pad: int) -> list[Array]:
  """The ``kt`` inputs ``x_pad[:, k::stride]`` (``T_out`` frames each) a ``kt x 1 x 1`` kernel's taps
  read, as ``(N * T_out * P, C)`` matrices."""
  n, t, p, c = x.shape
  if pad:
    x = jnp.pad(x, ((0, 0), (pad, pad), (0, 0), (0, 0)))
  out_t = (t + 2 * pad - kt) // stride + 1
  return [jax.lax.slice_in_dim(x, k, k + (out_t - 1) * stride + 1, stride, axis=1).reshape(-1, c)
          for k in range(kt)]


def _time_conv_dots(x: Array, kernel: Array, stride: int, pad: int) -> Array:
  """The same function as ``_time_conv_lax`` written as ``sum_k x[k::stride] @ W_k``."""
  n, t, p, _ = x.shape
  kt = kernel.shape[0]
  out_t = (t + 2 * pad - kt) // stride + 1
  y = sum(xk @ kernel[k] for k, xk in enumerate(_time_slices(x, kt, stride, pad)))
  return y.reshape(n, out_t, p, kernel.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def time_conv(x: Array, kernel: Array, stride: int, pad: int) -> Array:
  """A ``t x 1 x 1`` convolution on ``(N, T, P, C)`` (``P`` positions): one ``conv_general_dilated``
  forward; its gradients are ``dot`` s (see the module docstring)."""
  return _time_conv_lax(x, kernel, stride, pad)


def _time_conv_fwd(x: Array, kernel: Array, stride: int, pad: int):
  return _time_conv_lax(x, kernel, stride, pad), (x, kernel)


def _time_conv_bwd(stride: int, pad: int, residuals, dy: Array):
  x, kernel = residuals
  _, input_vjp = jax.vjp(lambda x: _time_conv_dots(x, kernel, stride, pad), x)
  dx, = input_vjp(dy)
  # dW_k = x_k^T dy: both operands keep their (positions, channels) layout, so XLA:CPU runs a
  # transposed-lhs GEMM instead of materialising a transposed copy of dy.
  dy = dy.reshape(-1, dy.shape[-1])
  dkernel = jnp.stack([
      jax.lax.dot_general(xk, dy, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
      for xk in _time_slices(x, kernel.shape[0], stride, pad)]).astype(kernel.dtype)
  return dx, dkernel


time_conv.defvjp(_time_conv_fwd, _time_conv_bwd)


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

  def geometry(self) -> tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]:
    """``(kernel, strides, padding)`` as ``(t, h, w)`` triples, ``padding=None`` resolved."""
    kernel = _triple(self.kernel_size)
    padding = tuple(k // 2 for k in kernel) if self.padding is None else _triple(self.padding)
    return kernel, _triple(self.strides), padding  # type: ignore[return-value]

  @nn.compact
  def __call__(self, x: Array) -> Array:
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = self.geometry()
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
    if kh == 1 and kw == 1 and ph == 0 and pw == 0 and g == 1:
      if sh > 1 or sw > 1:  # projection shortcut: a 1x1 conv reads every sh-th row, sw-th column
        x = x[:, :, ::sh, ::sw]
        h, w = x.shape[2], x.shape[3]
      y = time_conv(x.reshape(n, t, h * w, in_features), kernel[:, 0, 0], st, pt)
      y = y.reshape(n, y.shape[1], h, w, self.features)
    elif kt == 1 and st == 1 and pt == 0:
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


def _bn_normalize(x: Array, mean: Array, var: Array, scale: Array, bias: Array,
                  epsilon: float) -> Array:
  """flax's ``_normalize`` expression, operation for operation (so outputs are identical)."""
  mul = jax.lax.rsqrt(var + epsilon) * scale
  return (x - mean) * mul + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _bn_train(x: Array, scale: Array, bias: Array, epsilon: float, relu: bool, grouped: bool
              ) -> tuple[Array, Array, Array]:
  """Training-mode BatchNorm: ``(act(y), mean, var)`` in float32.

  ``grouped=False``: statistics over all axes but the last (``mean``, ``var``: ``(C,)``).
  ``grouped=True``: ``x`` is ``(G, ..., C)`` and each of the ``G`` groups is normalised with its
  own statistics, over all axes but the first and the last (``mean``, ``var``: ``(G, C)``).

  The statistics are flax's (``use_fast_variance``: ``var = max(0, E[x^2] - E[x]^2)``,
  reductions in float32). The hand-written VJP needs only ``x`` and the statistics: the
  backward pass is two reductions (``sum dy``, ``sum dy (x - mean)``) and one elementwise pass,
  with the ReLU mask recomputed from ``x`` (no stored pre-activation).
  """
  return _bn_train_fwd(x, scale, bias, epsilon, relu, grouped)[0]


def _bn_axes(x: Array, grouped: bool) -> tuple[int, ...]:
  return tuple(range(1 if grouped else 0, x.ndim - 1))


def _bn_stats(x: Array, grouped: bool) -> tuple[Array, Array, Array]:
  """``mean, max(0, raw_var), raw_var``, reduced dimensions kept (they broadcast against ``x``)."""
  axes = _bn_axes(x, grouped)
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axes, keepdims=True)
  raw_var = jnp.mean(jnp.square(x32), axes, keepdims=True) - jnp.square(mean)
  return mean, jnp.maximum(0.0, raw_var), raw_var


def _bn_stats_shape(x: Array, grouped: bool) -> tuple[int, ...]:
  return (x.shape[0], x.shape[-1]) if grouped else (x.shape[-1],)


def _bn_train_fwd(x, scale, bias, epsilon, relu, grouped):
  mean, var, raw_var = _bn_stats(x, grouped)
  y = _bn_normalize(x, mean, var, scale, bias, epsilon)
  if relu:
    y = jnp.maximum(y, 0.0)
  shape = _bn_stats_shape(x, grouped)
  return (y, mean.reshape(shape), var.reshape(shape)), (x, scale, bias, mean, var, raw_var)


def _bn_train_bwd(epsilon, relu, grouped, residuals, cotangents):
  x, scale, bias, mean, var, raw_var = residuals
  dy, dmean, dvar = cotangents
  axes = _bn_axes(x, grouped)
  n = x.size // mean.size  # elements per statistic
  dmean, dvar = dmean.reshape(mean.shape), dvar.reshape(var.shape)
  xc = x.astype(jnp.float32) - mean
  r = jax.lax.rsqrt(var + epsilon)
  dy = dy.astype(jnp.float32)
  if relu:  # d relu(y) = dy * (y > 0), y recomputed (jax.nn.relu's gradient is 0 at 0)
    dy = jnp.where(xc * (r * scale) + bias > 0, dy, 0.0)
  sum_dy = jnp.sum(dy, axes, keepdims=True)
  sum_dy_xc = jnp.sum(dy * xc, axes, keepdims=True)
  # scale and bias are shared by the groups: their gradients sum over the group axis too.
  dscale = jnp.sum(sum_dy_xc * r, 0) if grouped else sum_dy_xc * r
  dbias = jnp.sum(sum_dy, 0) if grouped else sum_dy
  # d/dx of (x - mean) * r * scale + bias through x, mean and var (var' = 2 (x - mean) / n
  # where var was not clipped at 0), plus the statistics' own cotangents.
  dvar_total = jnp.where(raw_var > 0, dvar - 0.5 * sum_dy_xc * scale * r**3, 0.0)
  dmean_total = dmean - sum_dy * (r * scale)
  dx = dy * (r * scale) + dmean_total / n + xc * (2.0 * dvar_total / n)
  return (dx.astype(x.dtype), dscale.reshape(scale.shape).astype(scale.dtype),
          dbias.reshape(bias.shape).astype(bias.dtype))


_bn_train.defvjp(_bn_train_fwd, _bn_train_bwd)


_CUSTOM_BN_VJP = True  # False: differentiate BatchNorm by autodiff (same values; for A/B timing)


class BatchNorm(nn.Module):
  """flax ``nn.BatchNorm`` over the last axis — same fields that we use, the same parameters
  (``scale``, ``bias``), statistics (``batch_stats/mean``, ``var``), update rule and outputs —
  with a faster gradient in training mode (:func:`_bn_train`), an optional fused ReLU and
  optional statistics per group of examples.

  Statistics and the normalisation are float32 whatever ``dtype`` (the output's) is.

  ``group_size`` (``model.bn_group_size``): in training, the batch (axis 0, examples) is cut into
  consecutive groups of ``group_size`` examples and each group is normalised with its own mean
  and variance, as each GPU's BN in the papers' data-parallel runs (``nn.DataParallel``, Caffe2).
  A reshape of the batch axis, so the groups are the same however the batch is sharded over
  devices. 0 or the batch size: one group (flax's BN over the global batch). The running
  averages are updated from the first group's statistics only: with ``nn.DataParallel`` the
  module's buffers share storage with the replica on ``device_ids[0]`` (PyTorch's DataParallel
  documentation), so the released BAT video runs kept the first GPU's running statistics and
  dropped the others.
  """
  use_running_average: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Dtype = jnp.float32
  scale_init: Any = nn.initializers.ones
  bias_init: Any = nn.initializers.zeros
  relu: bool = False
  group_size: int = 0

  def _num_groups(self, batch: int) -> int:
    if self.group_size < 0 or (self.group_size and batch % self.group_size):
      raise ValueError(f'model.bn_group_size={self.group_size} must be 0 or divide the batch of '
                       f'{batch} examples a BatchNorm sees in training')
    return batch // self.group_size if self.group_size else 1

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = (x.shape[-1],)
    ra_mean = self.variable('batch_stats', 'mean', lambda s: jnp.zeros(s, jnp.float32), features)
    ra_var = self.variable('batch_stats', 'var', lambda s: jnp.ones(s, jnp.float32), features)
    scale = self.param('scale', self.scale_init, features, jnp.float32)
    bias = self.param('bias', self.bias_init, features, jnp.float32)
    if self.use_running_average:
      y = _bn_normalize(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon)
      y = jnp.maximum(y, 0.0) if self.relu else y
    else:
      groups = self._num_groups(x.shape[0])
      grouped = groups > 1
      xg = x.reshape(groups, x.shape[0] // groups, *x.shape[1:]) if grouped else x
      if _CUSTOM_BN_VJP:
        y, mean, var = _bn_train(xg, scale, bias, self.epsilon, self.relu, grouped)
      else:  # plain autodiff of the same expressions (for A/B comparisons)
        (y, mean, var), _ = _bn_train_fwd(xg, scale, bias, self.epsilon, self.relu, grouped)
      if grouped:
        y, mean, var = y.reshape(x.shape), mean[0], var[0]
      if not self.is_initializing():
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y.astype(self.dtype)


def batch_norm(train: bool, *, zero_init: bool = False, name: str | None = None,
               dtype: Dtype = jnp.float32, relu: bool = False, group_size: int = 0) -> BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1 there is 0.9 here, eps 1e-5).

  Under ``jax.jit`` over a device mesh the batch statistics are those of the global batch, or of
  each group of ``group_size`` consecutive examples (:class:`BatchNorm`).
  ``zero_init`` starts the scale at 0 (the NL and SNL blocks' last BN, so a new block is an identity).
  ``relu``: apply ReLU to the output (fused into the BN's forward and backward).
  """
  return BatchNorm(
      use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
      scale_init=nn.initializers.zeros if zero_init else nn.initializers.ones, relu=relu,
      group_size=group_size, name=name)


def _max_pool_2d(x: Array, window: tuple[int, int], stride: tuple[int, int],
                 padding: tuple[int, int]) -> Array:
  """Max pooling of ``(B, H, W, C)`` over axes 1, 2 (pads are -inf), as a chain of selects over the
  window's strided slices in row-major order; on ties the first position wins (the one
  ``reduce_window``'s gradient picks), so values and gradients equal ``nn.max_pool``'s."""
  (kh, kw), (sh, sw), (ph, pw) = window, stride, padding
  n, h, w, c = x.shape
  if ph or pw:
    x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)), constant_values=-jnp.inf)
  out_h, out_w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
  y = None
  for i in range(kh):
    for j in range(kw):
      v = jax.lax.slice(x, (0, i, j, 0), (n, i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1, c),
                        (1, sh, sw, 1))
      y = v if y is None else jnp.where(v > y, v, y)
  return y


def max_pool_hw(x: Array, window: int, stride: int, padding: int) -> Array:
  """Spatial max pooling per frame of ``(N, T, H, W, C)`` (PyTorch padding semantics: pads are -inf)."""
  n, t, h, w, c = x.shape
  y = _max_pool_2d(x.reshape(n * t, h, w, c), (window, window), (stride, stride),
                   (padding, padding))
  return y.reshape(n, t, *y.shape[1:])


def max_pool_time(x: Array, window: int, stride: int) -> Array:
  """Temporal max pooling of ``(N, T, H, W, C)`` without padding (the video models' pool2)."""
  n, t, h, w, c = x.shape
  y = _max_pool_2d(x.reshape(n, t, h * w, c), (window, 1), (stride, 1), (0, 0))
  return y.reshape(n, y.shape[1], h, w, c)
