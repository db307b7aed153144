"""The XLA:CPU speed paths: the same functions as the plain forms in ``bat_jax.nn.layers``, written
in the shape XLA:CPU runs fastest (docs/performance.md), and the switch that selects them.

:func:`active` is the switch: on by default when ``jax.default_backend()`` is ``'cpu'``, off on
GPU and TPU (which then run stock ``lax.conv_general_dilated`` gradients, BatchNorm differentiated
by autodiff, ``reduce_window`` pooling, flax's ``nn.remat`` and no compiler options). The
environment variable ``BAT_JAX_SPEED_PATH`` forces it: ``cpu`` (these paths on any backend),
``plain`` (the plain forms, also on CPU) or ``auto`` (the default). It is read when a model is
traced, so it applies to the next ``jax.jit`` trace. ``tests/test_xla_cpu.py`` checks that both
paths give the same outputs and gradients.

* :func:`time_conv`: ``t x 1 x 1`` kernels (no groups) as one ``conv_general_dilated`` forward
  whose custom VJP is matrix products: the input gradient ``sum_k shift_k(dy @ W_k^T)`` and the
  weight gradient ``dW_k = shift_k(x)^T dy`` (XLA:CPU's own transposed convolutions are 3-9x
  slower and write the activations' gradients in a transposed layout first).
* :func:`batch_norm_train`: training BatchNorm with a hand-written VJP (two reductions and one
  elementwise pass, the ReLU mask recomputed from ``x``).
* :func:`max_pool_2d`: a chain of ``where(v > m, v, m)`` over the window's strided slices; its
  gradient is selects and pads instead of XLA:CPU's scatter-based ``select_and_scatter`` (7x
  faster for the stem pool).
* :func:`cell_matmul`: ``bilinear.cell_matmul`` with its VJP written as the same kind of matmul as
  the forward.
* :func:`remat_module`: remat whose recomputation waits for the incoming cotangent (XLA:CPU
  ignores ``jax.checkpoint``'s optimisation barriers).
* :func:`compiler_options`: XLA:CPU's Eigen emitter for convolutions.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import lift
from flax.linen import transforms as nn_transforms

from bat_jax.ops import batch_norm as bn_ops
from bat_jax.ops import bilinear

Array = jax.Array

SPEED_PATH_ENV = 'BAT_JAX_SPEED_PATH'
SPEED_PATHS = ('auto', 'cpu', 'plain')


def active() -> bool:
  """Whether the XLA:CPU paths are selected: ``BAT_JAX_SPEED_PATH`` (``auto`` when unset) and, for
  ``auto``, ``jax.default_backend() == 'cpu'``."""
  choice = os.environ.get(SPEED_PATH_ENV, 'auto')
  if choice not in SPEED_PATHS:
    raise ValueError(f'{SPEED_PATH_ENV}={choice!r}; allowed: {SPEED_PATHS}')
  if choice == 'auto':
    return jax.default_backend() == 'cpu'
  return choice == 'cpu'


# --- convolutions --------------------------------------------------------------------------------

def _time_conv_lax(x: Array, kernel: Array, stride: int, pad: int) -> Array:
  """``x (N, T, P, C)`` convolved along ``T`` with ``kernel (t, C, O)`` (stride, zero padding)."""
  return jax.lax.conv_general_dilated(
      x, kernel[:, None], (stride, 1), ((pad, pad), (0, 0)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _time_slices(x: Array, kt: int, stride: int, pad: int) -> list[Array]:
  """The ``kt`` inputs ``x_pad[:, k::stride]`` (``T_out`` frames each) a ``kt x 1 x 1`` kernel's taps
  read, as ``(N * T_out * P, C)`` matrices."""
  t, c = x.shape[1], x.shape[-1]
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
  forward (so multiply-add counts from the jaxpr are unchanged); its gradients are ``dot`` s."""
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


# --- BatchNorm -----------------------------------------------------------------------------------

@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def batch_norm_train(x: Array, scale: Array, bias: Array, epsilon: float, relu: bool,
                     grouped: bool) -> tuple[Array, Array, Array]:
  """``bat_jax.ops.batch_norm.train`` (``(act(y), mean, var)``) with a hand-written VJP that needs
  only ``x`` and the statistics: two reductions (``sum dy``, ``sum dy (x - mean)``) and one
  elementwise pass, the ReLU mask recomputed from ``x`` (no stored pre-activation)."""
  return bn_ops.train(x, scale, bias, epsilon, relu, grouped)


def _batch_norm_fwd(x, scale, bias, epsilon, relu, grouped):
  outputs, stats = bn_ops.train_forward(x, scale, bias, epsilon, relu, grouped)
  return outputs, (x, scale, bias, *stats)


def _batch_norm_bwd(epsilon, relu, grouped, residuals, cotangents):
  x, scale, bias, mean, var, raw_var = residuals
  dy, dmean, dvar = cotangents
  axes = bn_ops.reduced_axes(x, grouped)
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


batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd)


# --- pooling -------------------------------------------------------------------------------------

def max_pool_2d(x: Array, window: tuple[int, int], stride: tuple[int, int],
                padding: tuple[int, int]) -> Array:
  """Max pooling of ``(B, H, W, C)`` over axes 1, 2 (pads are -inf), as a chain of selects over the
  window's strided slices in row-major order; on ties the first position wins (the one
  ``reduce_window``'s gradient picks), so values and gradients equal ``reduce_window``'s."""
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


# --- the BA-transform's cell contractions --------------------------------------------------------

@jax.custom_vjp
def cell_matmul(m: Array, z: Array) -> Array:
  """``bilinear.cell_matmul`` (``m @ z`` batched over leading dimensions). JAX's automatic
  transpose of its ``dot_general`` asks for the input gradient ``m^T @ g`` with the cell index
  last (``(*B, r, n)``, then a transpose), which XLA:CPU runs much slower than the forward for
  ``n = 7``; the VJP below is the same kind of matmul as the forward (batch dimensions leading,
  the cell index next to them)."""
  return bilinear.cell_matmul(m, z)


def _cell_matmul_fwd(m: Array, z: Array) -> tuple[Array, tuple[Array, Array]]:
  return bilinear.cell_matmul(m, z), (m, z)


def _cell_matmul_bwd(residuals: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
  m, z = residuals
  nb = m.ndim - 2
  batch = tuple(range(nb))
  dz = jax.lax.dot_general(m, g, (((nb,), (nb,)), (batch, batch)))  # m^T g
  dm = jax.lax.dot_general(g, z, (((nb + 1,), (nb + 1,)), (batch, batch)))  # g z^T
  return dm, dz


cell_matmul.defvjp(_cell_matmul_fwd, _cell_matmul_bwd)


# --- remat ---------------------------------------------------------------------------------------

def _tie(x: Any, token: Array) -> Any:
  """``x`` with a data dependency on ``token`` (a scalar +-0) and the same values: one element
  gets ``+ token`` (in place). Non-float leaves pass through."""
  if not isinstance(x, jax.Array) or not jnp.issubdtype(x.dtype, jnp.floating) or x.ndim == 0:
    return x
  return x.at[(0,) * x.ndim].add(token.astype(x.dtype))


def _tied_remat(fun: Callable[..., Any], num_tied: int) -> Callable[..., Any]:
  """``jax.checkpoint`` whose recomputation waits for the incoming cotangent.

  The backward pass recomputes ``fun`` from its inputs, like ``jax.checkpoint``; but the inputs it
  recomputes from (the last ``num_tied`` arguments: the block's activations) first get a data
  dependency on the output cotangent. XLA:CPU ignores ``jax.checkpoint``'s optimization barriers
  when scheduling and runs the recomputation right after the forward pass, so plain remat there
  raises the peak instead of lowering it (docs/performance.md); with the dependency the
  recomputation can only run when the backward pass reaches the block.
  """

  @jax.custom_vjp
  def wrapped(*args):
    return fun(*args)

  def fwd(*args):
    return fun(*args), args

  def bwd(args, ct):
    first = next((c for c in jax.tree.leaves(ct)
                  if jnp.issubdtype(c.dtype, jnp.floating) and c.size), None)
    if first is not None:
      token = jnp.where(first.reshape(-1)[0] > 0, 0.0, -0.0)  # +-0: adding it changes nothing
      cut = len(args) - num_tied
      args = args[:cut] + tuple(jax.tree.map(lambda a: _tie(a, token), a) for a in args[cut:])
    _, vjp = jax.vjp(fun, *args)
    return vjp(ct)

  wrapped.defvjp(fwd, bwd)
  return wrapped


def _lift_tied_checkpoint(fn: Callable[..., Any], static_argnums: tuple[int, ...] = ()
                          ) -> Callable[..., Any]:
  """``flax.core.lift.checkpoint`` with :func:`_tied_remat` in place of ``jax.checkpoint``."""

  def inner(scope_fn, repack_fn, variable_groups, rng_groups, *args):
    static = {i: args[i] for i in static_argnums}
    dynamic = [a for i, a in enumerate(args) if i not in static]

    def rematted(variable_groups, rng_groups, *dyn):
      it = iter(dyn)
      full = [static[i] if i in static else next(it) for i in range(len(args))]
      scope = scope_fn(variable_groups, rng_groups)
      y = fn(scope, *full)
      return y, repack_fn(scope)

    # Trace the block once: the forward and the recomputation evaluate the same program (a second
    # trace would open the scope again and could draw other dropout keys).
    operands = (variable_groups, rng_groups, *dynamic)
    flat, in_tree = jax.tree.flatten(operands)
    closed, out_shape = jax.make_jaxpr(
        lambda *f: rematted(*jax.tree.unflatten(in_tree, f)), return_shape=True)(*flat)
    out_tree = jax.tree.structure(out_shape)

    def pure(*ops):
      leaves = jax.tree.leaves(ops)
      return jax.tree.unflatten(out_tree, jax.core.eval_jaxpr(closed.jaxpr, closed.consts,
                                                              *leaves))

    return _tied_remat(pure, len(dynamic))(*operands)

  return lift.pack(inner, (True,), (True,), (True,), name='remat')


def remat_module(target: type[nn.Module], static_argnums: tuple[int, ...] = (2,)
                 ) -> type[nn.Module]:
  """``nn.remat(target, static_argnums=...)`` that also rematerialises on XLA:CPU.

  Same parameter names, RNG streams and mutable collections as the plain module (flax's own
  lifting); ``static_argnums`` counts ``self`` as 0 (``(2,)``: ``__call__(self, x, train)``).
  """
  return nn_transforms.lift_transform(
      _lift_tied_checkpoint, target, static_argnums=tuple(i - 1 for i in static_argnums))


# --- compiler options ----------------------------------------------------------------------------

# Convolutions through XLA's own (Eigen) emitter instead of YNNPACK, which XLA:CPU uses by default
# for them; matmuls and reductions stay on YNNPACK. Same values up to summation order; the
# ResNet-50 train step is ~10% faster, inference ~5% (docs/performance.md). As an environment
# flag: XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=-individual_convolution.
_CPU_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type':
                'LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE'}
_probed: dict[str, Any] | None = None


def compiler_options() -> dict[str, Any]:
  """XLA options for the model's jitted steps: ``_CPU_OPTIONS`` when :func:`active`, ``{}``
  otherwise, or when this jaxlib does not know them, or when ``XLA_FLAGS`` already sets the YNN
  fusion types."""
  global _probed
  if not active() or 'xla_cpu_experimental_ynn_fusion_type' in os.environ.get('XLA_FLAGS', ''):
    return {}
  if _probed is None:
    try:  # an unknown option or enum value is an error at compile time: probe once
      jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(
          jnp.zeros((), jnp.float32)).compile()
      _probed = dict(_CPU_OPTIONS)
    except Exception:  # pylint: disable=broad-except
      _probed = {}
  return dict(_probed)
