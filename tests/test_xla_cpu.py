"""The XLA:CPU speed paths (``bat_jax.nn.xla_cpu``) compute the same functions as the plain forms
GPUs and TPUs run: outputs and gradients of each layer under ``BAT_JAX_SPEED_PATH=cpu`` and
``=plain``, on this CPU; and the switch follows the backend and the override."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bat_jax.blocks.bat import BATBlock
from bat_jax.models.resnet import Bottleneck
from bat_jax.nn import layers, xla_cpu
from bat_jax.ops import bilinear

PATHS = ('cpu', 'plain')


def on_path(monkeypatch, path, fn, *args):
  """``fn(*args)`` traced (``jax.jit``) with the speed path forced to ``path``."""
  monkeypatch.setenv(xla_cpu.SPEED_PATH_ENV, path)
  assert xla_cpu.active() == (path == 'cpu')
  return jax.jit(fn)(*args)


def both_paths(monkeypatch, fn, *args):
  return [on_path(monkeypatch, path, fn, *args) for path in PATHS]


def assert_trees_close(a, b, rtol=1e-5, atol=1e-5):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


# --- the switch ----------------------------------------------------------------------------------

@pytest.mark.parametrize('backend, env, want', [
    ('cpu', None, True), ('gpu', None, False), ('tpu', None, False), ('cpu', 'auto', True),
    ('gpu', 'auto', False), ('cpu', 'plain', False), ('gpu', 'cpu', True), ('tpu', 'cpu', True),
])
def test_selection_follows_the_backend_and_the_override(monkeypatch, backend, env, want):
  monkeypatch.setattr(jax, 'default_backend', lambda: backend)
  if env is None:
    monkeypatch.delenv(xla_cpu.SPEED_PATH_ENV, raising=False)
  else:
    monkeypatch.setenv(xla_cpu.SPEED_PATH_ENV, env)
  assert xla_cpu.active() is want


def test_bad_override_is_a_clear_error(monkeypatch):
  monkeypatch.setenv(xla_cpu.SPEED_PATH_ENV, 'fast')
  with pytest.raises(ValueError, match=r"BAT_JAX_SPEED_PATH='fast'; allowed: \('auto', 'cpu', "
                                       r"'plain'\)"):
    xla_cpu.active()


@pytest.mark.parametrize('backend', ['cpu', 'gpu'])
def test_model_traces_the_path_of_the_backend(monkeypatch, backend):
  """Off CPU the traced gradient has no custom VJP (stock convolution, BatchNorm and pooling
  gradients) and the steps get no compiler options; on CPU it has them."""
  monkeypatch.delenv(xla_cpu.SPEED_PATH_ENV, raising=False)
  monkeypatch.setattr(jax, 'default_backend', lambda: backend)
  conv, bn = layers.Conv(4, (3, 1, 1)), layers.BatchNorm(relu=True)
  x = jnp.ones((2, 4, 6, 6, 3))
  cv, bv = conv.init(jax.random.key(0), x), bn.init(jax.random.key(0), jnp.ones((2, 4, 6, 6, 4)))

  def loss(x):
    y, _ = bn.apply(bv, conv.apply(cv, x), mutable=['batch_stats'])
    return jnp.sum(layers.max_pool_hw(y, 3, 2, 1))

  jaxpr = str(jax.make_jaxpr(loss)(x))
  assert ('custom_vjp_call' in jaxpr) == (backend == 'cpu')
  assert ('reduce_window_max' in jaxpr) == (backend != 'cpu')
  jax.grad(loss)(x)  # differentiable either way
  assert (xla_cpu.compiler_options() != {}) == (backend == 'cpu')


def test_compiler_options_only_on_the_cpu_path(monkeypatch):
  monkeypatch.setenv(xla_cpu.SPEED_PATH_ENV, 'plain')
  assert xla_cpu.compiler_options() == {}
  monkeypatch.setenv(xla_cpu.SPEED_PATH_ENV, 'cpu')
  assert xla_cpu.compiler_options() == xla_cpu._CPU_OPTIONS  # pylint: disable=protected-access
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution')
  assert xla_cpu.compiler_options() == {}  # the environment's flag wins


# --- each speed path against its plain form --------------------------------------------------------

@pytest.mark.parametrize('kernel, strides, padding, groups', [
    ((1, 1, 1), (1, 1, 1), (0, 0, 0), 1),   # 1x1x1: time_conv
    ((1, 1, 1), (1, 2, 2), (0, 0, 0), 1),   # projection shortcut: strided 1x1x1
    ((3, 1, 1), (2, 1, 1), (1, 0, 0), 1),   # I3D inflation, temporal stride and padding
    ((3, 1, 1), (1, 1, 1), (0, 0, 0), 2),   # grouped t x 1 x 1: a 2-D conv over (T, H*W)
    ((1, 3, 3), (1, 2, 2), (0, 1, 1), 2),   # folded into a 2-D conv over frames
    ((5, 7, 7), (1, 2, 2), (2, 3, 3), 1),   # the I3D stem: a 3-D conv either way
])
def test_conv_paths_same_outputs_and_gradients(monkeypatch, kernel, strides, padding, groups):
  conv = layers.Conv(4, kernel, strides, padding, use_bias=True, groups=groups)
  x = jax.random.normal(jax.random.key(0), (2, 6, 9, 10, 4))
  params = conv.init(jax.random.key(1), x)
  dy = jax.random.normal(jax.random.key(2), jax.eval_shape(conv.apply, params, x).shape)

  def out_and_grads(params, x):
    y, vjp = jax.vjp(conv.apply, params, x)
    return y, vjp(dy)

  cpu, plain = both_paths(monkeypatch, out_and_grads, params, x)
  assert_trees_close(cpu, plain)


@pytest.mark.parametrize('relu', [False, True])
@pytest.mark.parametrize('group_size', [0, 2])
def test_batch_norm_paths_same_outputs_statistics_and_gradients(monkeypatch, relu, group_size):
  bn = layers.BatchNorm(relu=relu, group_size=group_size)
  x = jax.random.normal(jax.random.key(0), (4, 2, 3, 3, 5)) * 2.0 + 0.5
  dy = jax.random.normal(jax.random.key(1), x.shape)
  variables = bn.init(jax.random.key(2), x)
  params = {'scale': jnp.linspace(0.5, 1.5, 5), 'bias': jnp.linspace(-0.2, 0.3, 5)}

  def out_and_grads(params, x):
    apply = lambda p, x: bn.apply({**variables, 'params': p}, x, mutable=['batch_stats'])  # noqa: E731
    (y, stats), vjp = jax.vjp(apply, params, x)
    return y, stats, vjp((dy, jax.tree.map(jnp.zeros_like, stats)))

  cpu, plain = both_paths(monkeypatch, out_and_grads, params, x)
  assert_trees_close(cpu, plain)


@pytest.mark.parametrize('pool', ['hw', 'time'])
def test_max_pool_paths_same_outputs_and_gradients_with_ties(monkeypatch, pool):
  """Values rounded to a few levels, so most windows hold several maxima: both paths send the
  gradient to the same one (the first in row-major order), exactly."""
  x = jnp.round(jax.random.normal(jax.random.key(0), (2, 4, 7, 8, 3)))
  fn = ((lambda x: layers.max_pool_hw(x, 3, 2, 1)) if pool == 'hw'
        else (lambda x: layers.max_pool_time(x, 2, 2)))
  dy = jax.random.normal(jax.random.key(1), jax.eval_shape(fn, x).shape)

  def out_and_grad(x):
    y, vjp = jax.vjp(fn, x)
    return y, vjp(dy)[0]

  (y_cpu, dx_cpu), (y_plain, dx_plain) = both_paths(monkeypatch, out_and_grad, x)
  np.testing.assert_array_equal(y_cpu, y_plain)
  np.testing.assert_array_equal(dx_cpu, dx_plain)
  # Windows with tied maxima exist, and each window's gradient went to one input only.
  xs = np.asarray(x)
  if pool == 'hw':
    xs = np.pad(xs, [(0, 0), (0, 0), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
    windows = [xs[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].reshape(2, 4, 9, 3)
               for i in range(y_plain.shape[2]) for j in range(y_plain.shape[3])]
  else:
    windows = [xs[:, 2 * i:2 * i + 2].reshape(2, 2, -1) for i in range(y_plain.shape[1])]
  assert any(np.any(np.sum(w == w.max(axis=-2, keepdims=True), axis=-2) > 1) for w in windows)
  assert int(jnp.sum(dx_plain != 0)) <= y_plain.size


@pytest.mark.parametrize('matmul', [xla_cpu.cell_matmul, bilinear.cell_matmul],
                         ids=['xla_cpu', 'plain'])
def test_cell_matmul_gradients_are_the_transposed_products(matmul):
  """Both forms of ``cell_matmul`` (the hand-written VJP and autodiff's): dM = G Z^T and
  dZ = M^T G (NumPy, float64)."""
  rng = np.random.default_rng(0)
  m, z, g = rng.normal(size=(2, 3, 5, 5)), rng.normal(size=(2, 3, 5, 7)), rng.normal(size=(2, 3, 5, 7))
  with jax.enable_x64(True):
    out, vjp = jax.vjp(matmul, jnp.asarray(m), jnp.asarray(z))
    dm, dz = vjp(jnp.asarray(g))
  np.testing.assert_allclose(out, m @ z, rtol=1e-12)
  np.testing.assert_allclose(dm, g @ np.swapaxes(z, -1, -2), rtol=1e-12)
  np.testing.assert_allclose(dz, np.swapaxes(m, -1, -2) @ g, rtol=1e-12)


@pytest.mark.parametrize('block', ['bottleneck', '3dbat'])
def test_tied_remat_is_flax_remat(block):
  """A residual block and a 3D-BAT block (with dropout: the RNG streams must match) under the
  tied remat and under flax's ``nn.remat``: same parameters, train-mode outputs, BN statistics and
  gradients. (``tests/test_remat.py`` compares whole rematerialised models with no remat.)
  Tolerance ``1e-5`` of the largest entry: a conv bias right before a train-mode BN has an exactly
  zero true gradient, whose float32 value is rounding noise that differs between compilations."""
  if block == 'bottleneck':
    module, x = functools.partial(Bottleneck, 4, strides=2), jnp.ones((2, 4, 8, 8, 8))
  else:
    module = functools.partial(BATBlock, groups=2, size=2, temporal_groups=2, temporal_size=2,
                               dropout_rate=0.5)
    x = jnp.ones((2, 4, 4, 4, 8))
  x = x * jax.random.normal(jax.random.key(0), x.shape)
  variables = module().init(jax.random.key(1), x, False)
  dy = jax.random.normal(jax.random.key(2), x.shape if block == '3dbat' else (2, 4, 4, 4, 16))

  def out_and_grads(remat):
    def apply(params, x):
      return remat(module.func)(*module.args, **module.keywords).apply(
          {**variables, 'params': params}, x, True, rngs={'dropout': jax.random.key(3)},
          mutable=['batch_stats'])
    (y, stats), vjp = jax.vjp(apply, variables['params'], x)
    return y, stats, vjp((dy, jax.tree.map(jnp.zeros_like, stats)))

  tied = jax.jit(lambda: out_and_grads(xla_cpu.remat_module))()
  plain = jax.jit(lambda: out_and_grads(lambda m: nn.remat(m, static_argnums=(2,))))()
  assert jax.tree.structure(tied) == jax.tree.structure(plain)
  largest = max(float(jnp.max(jnp.abs(a))) for a in jax.tree.leaves(plain))
  assert_trees_close(tied, plain, atol=1e-5 * largest)
