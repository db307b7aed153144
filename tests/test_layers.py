"""``Conv`` and the max pools against float64 NumPy written from their definitions, on both speed
paths (``BAT_JAX_SPEED_PATH``: the XLA:CPU forms of ``nn.xla_cpu`` and the plain ones)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bat_jax.nn import xla_cpu
from bat_jax.nn.layers import Conv, max_pool_hw, max_pool_time


def conv3d_reference(x, kernel, strides, padding):
  """Direct float64 loop-free reference: numpy correlation via explicit window sums."""
  x = np.pad(x, [(0, 0)] + [(p, p) for p in padding] + [(0, 0)])
  kt, kh, kw = kernel.shape[:3]
  n, t, h, w, _ = x.shape
  st, sh, sw = strides
  out_t, out_h, out_w = (t - kt) // st + 1, (h - kh) // sh + 1, (w - kw) // sw + 1
  y = np.zeros((n, out_t, out_h, out_w, kernel.shape[-1]))
  for a in range(kt):
    for b in range(kh):
      for c in range(kw):
        patch = x[:, a:a + st * out_t:st, b:b + sh * out_h:sh, c:c + sw * out_w:sw]
        y += patch @ kernel[a, b, c]
  return y


@pytest.mark.parametrize('kernel_size, strides', [
    ((1, 3, 3), (1, 2, 2)),   # folded into a 2-D conv over frames
    ((3, 1, 1), (1, 1, 1)),   # 2-D conv over (T, H*W)
    ((3, 1, 1), (2, 1, 1)),
    ((5, 7, 7), (1, 2, 2)),   # the I3D stem: a real 3-D conv
    ((1, 1, 1), (1, 2, 2)),   # projection shortcut
])
@pytest.mark.parametrize('path', ['cpu', 'plain'])
def test_conv_paths_match_3d_convolution(kernel_size, strides, path, monkeypatch):
  monkeypatch.setenv(xla_cpu.SPEED_PATH_ENV, path)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 9, 10, 3))
  conv = Conv(4, kernel_size, strides, use_bias=True)
  variables = conv.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
  kernel = np.asarray(variables['params']['kernel'], np.float64)
  assert kernel.shape == (*kernel_size, 3, 4)
  got = np.asarray(conv.apply(variables, jnp.asarray(x, jnp.float32)))
  want = conv3d_reference(x, kernel, strides, [k // 2 for k in kernel_size])
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('path', ['cpu', 'plain'])
def test_pools_match_numpy(path, monkeypatch):
  monkeypatch.setenv(xla_cpu.SPEED_PATH_ENV, path)
  x = np.random.default_rng(1).normal(size=(1, 4, 5, 6, 2)).astype(np.float32)
  got = np.asarray(max_pool_hw(jnp.asarray(x), 3, 2, 1))
  padded = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
  want = np.stack([np.stack([padded[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(2, 3))
                             for j in range(3)], axis=2) for i in range(3)], axis=2)
  np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(np.asarray(max_pool_time(jnp.asarray(x), 2, 2)),
                                np.maximum(x[:, 0::2], x[:, 1::2]))
