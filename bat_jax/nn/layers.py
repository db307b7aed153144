"""Layers shared by every backbone and block: ``Conv``, ``BatchNorm``, max pooling, remat, the
initialisers.

All models work on 5-D activations ``(N, T, H, W, C)``; an image is a clip with ``T = 1``. A single
convolution module therefore serves ResNet, C2D and I3D, its kernel always has the layout
``(t, h, w, in, out)`` (so a 2-D checkpoint goes into C2D unchanged and inflates to I3D along ``t``).

Each layer is written in its plain form (stock ``conv_general_dilated`` gradients, BatchNorm
differentiated by autodiff, ``reduce_window`` pooling, ``nn.remat``), which GPUs and TPUs run; on
XLA:CPU the same function runs in the form ``bat_jax.nn.xla_cpu`` gives it, one call behind the
switch ``xla_cpu.active()`` (``BAT_JAX_SPEED_PATH=cpu|plain`` forces either; docs/performance.md).
Convolutions take the cheapest equal 2-D form of their kernel on every backend (:func:`conv3d`).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bat_jax.nn import xla_cpu
from bat_jax.ops import batch_norm as bn_ops
from bat_jax.ops import bilinear

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
    y = conv3d(x, kernel, (st, sh, sw), (pt, ph, pw), g)
    if self.use_bias:
      bias = self.param('bias', self.bias_init, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


def conv3d(x: Array, kernel: Array, strides: Sequence[int], padding: Sequence[int],
           groups: int = 1) -> Array:
  """``x (N, T, H, W, C)`` convolved with ``kernel (t, h, w, C / groups, O)`` (symmetric zero
  ``padding``): the 3-D convolution, run in the cheapest equal form for the kernel's shape.

  ``1 x h x w`` kernels fold the frames into the batch and run a 2-D convolution, ``t x 1 x 1``
  kernels a 2-D convolution over ``(T, H*W)``; other kernels (the I3D stem, ``3x3x3``) a 3-D one.
  2-D convolutions are the better-tuned kernels on every backend (XLA:CPU ran a ``(1,3,3)``
  Conv3D train step 5.7x slower than the folded form). On XLA:CPU, ungrouped ``t x 1 x 1``
  kernels take :func:`xla_cpu.time_conv`, whose gradients are GEMMs.
  """
  (kt, kh, kw), (st, sh, sw), (pt, ph, pw) = kernel.shape[:3], strides, padding
  n, t, h, w, c = x.shape
  out = kernel.shape[-1]
  pointwise = kh == 1 and kw == 1 and ph == 0 and pw == 0
  if pointwise and groups == 1 and xla_cpu.active():
    if sh > 1 or sw > 1:  # projection shortcut: a 1x1 conv reads every sh-th row, sw-th column
      x = x[:, :, ::sh, ::sw]
      h, w = x.shape[2], x.shape[3]
    y = xla_cpu.time_conv(x.reshape(n, t, h * w, c), kernel[:, 0, 0], st, pt)
    return y.reshape(n, y.shape[1], h, w, out)
  if kt == 1 and st == 1 and pt == 0:
    y = jax.lax.conv_general_dilated(
        x.reshape(n * t, h, w, c), kernel[0], (sh, sw), ((ph, ph), (pw, pw)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)
    return y.reshape(n, t, *y.shape[1:])
  if pointwise and sh == 1 and sw == 1:
    y = jax.lax.conv_general_dilated(
        x.reshape(n, t, h * w, c), kernel[:, 0], (st, 1), ((pt, pt), (0, 0)),
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'), feature_group_count=groups)
    return y.reshape(n, y.shape[1], h, w, out)
  return jax.lax.conv_general_dilated(
      x, kernel, tuple(strides), tuple((p, p) for p in padding),
      dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'), feature_group_count=groups)


class BatchNorm(nn.Module):
  """flax ``nn.BatchNorm`` over the last axis — same fields that we use, the same parameters
  (``scale``, ``bias``), statistics (``batch_stats/mean``, ``var``), update rule and outputs —
  with an optional fused ReLU, optional statistics per group of examples, and on XLA:CPU a
  faster gradient in training mode (:func:`xla_cpu.batch_norm_train`).

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
      y = bn_ops.normalize(x, ra_mean.value, ra_var.value, scale, bias, self.epsilon)
      y = jnp.maximum(y, 0.0) if self.relu else y
    else:
      groups = self._num_groups(x.shape[0])
      grouped = groups > 1
      xg = x.reshape(groups, x.shape[0] // groups, *x.shape[1:]) if grouped else x
      train = xla_cpu.batch_norm_train if xla_cpu.active() else bn_ops.train
      y, mean, var = train(xg, scale, bias, self.epsilon, self.relu, grouped)
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
  """Max pooling of ``(B, H, W, C)`` over axes 1, 2; pads are -inf."""
  if xla_cpu.active():
    return xla_cpu.max_pool_2d(x, window, stride, padding)
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, *window, 1),
                               (1, *stride, 1), ((0, 0), *((p, p) for p in padding), (0, 0)))


def max_pool_hw(x: Array, window: int, stride: int, padding: int) -> Array:
  """Spatial max pooling per frame of ``(N, T, H, W, C)`` (PyTorch padding semantics: pads are -inf)."""
  n, t, h, w, c = x.shape
  y = _max_pool_2d(x.reshape(n * t, h, w, c), (window, window), (stride, stride),
                   (padding, padding))
  return y.reshape(n, t, *y.shape[1:])


def max_pool_time(x: Array, window: int, stride: int, padding: int = 0) -> Array:
  """Temporal max pooling of ``(N, T, H, W, C)`` (the video models' pool2; ``padding`` frames of
  -inf on both sides)."""
  n, t, h, w, c = x.shape
  y = _max_pool_2d(x.reshape(n, t, h * w, c), (window, 1), (stride, 1), (padding, 0))
  return y.reshape(n, y.shape[1], h, w, c)


def cell_matmul(m: Array, z: Array) -> Array:
  """``bilinear.cell_matmul`` (the BA-transform's cell contractions), with its XLA:CPU VJP when
  :func:`xla_cpu.active`."""
  return (xla_cpu.cell_matmul if xla_cpu.active() else bilinear.cell_matmul)(m, z)


def remat(target: type[nn.Module], static_argnums: tuple[int, ...] = (2,)) -> type[nn.Module]:
  """``nn.remat(target, static_argnums=...)`` (``self`` counts as 0: ``(2,)`` is
  ``__call__(self, x, train)``), or its XLA:CPU form :func:`xla_cpu.remat_module` when
  :func:`xla_cpu.active`: same parameter names, RNG streams, values and gradients."""
  if xla_cpu.active():
    return xla_cpu.remat_module(target, static_argnums)
  return nn.remat(target, static_argnums=static_argnums)
