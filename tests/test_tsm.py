"""TSM: the temporal shift against a hand computation with explicit loops, and its properties."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bat_jax.ops.tsm import temporal_shift


def shift_by_hand(x: np.ndarray, fold_div: int) -> np.ndarray:
  """The released ``TemporalShift.shift`` written out: channel by channel, frame by frame."""
  n_, t_, h_, w_, c_ = x.shape
  f = c_ // fold_div
  out = np.zeros_like(x)
  for c in range(c_):
    for t in range(t_):
      if c < f:
        source = t + 1                   # shift left: frame t takes frame t + 1
      elif c < 2 * f:
        source = t - 1                   # shift right: frame t takes frame t - 1
      else:
        source = t                       # not shifted
      if 0 <= source < t_:
        out[:, t, :, :, c] = x[:, source, :, :, c]
  return out


@pytest.mark.parametrize('shape,fold_div', [((2, 4, 3, 2, 16), 8), ((1, 3, 2, 2, 12), 8),
                                            ((1, 5, 1, 1, 9), 4), ((1, 3, 1, 2, 6), 1),
                                            ((1, 2, 2, 2, 5), 8), ((1, 1, 2, 2, 16), 8)])
def test_matches_hand_computation(shape, fold_div):
  x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(temporal_shift(jnp.asarray(x), fold_div)),
                                shift_by_hand(x, fold_div))


def test_explicit_example():
  """T = 3, C = 8, fold_div = 4: f = 2; channels 0-1 from t+1, 2-3 from t-1, 4-7 unchanged."""
  x = (np.arange(3)[:, None] * 10 + np.arange(8)[None, :]).astype(np.float32)   # x[t, c] = 10 t + c
  y = np.asarray(temporal_shift(jnp.asarray(x.reshape(1, 3, 1, 1, 8)), 4)).reshape(3, 8)
  np.testing.assert_array_equal(y, [[10, 11, 0, 0, 4, 5, 6, 7],
                                    [20, 21, 2, 3, 14, 15, 16, 17],
                                    [0, 0, 12, 13, 24, 25, 26, 27]])


clips = st.tuples(st.integers(1, 2), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3),
                  st.integers(1, 20))


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(shape=clips, fold_div=st.integers(2, 8), seed=st.integers(0, 2**16))
def test_properties(shape, fold_div, seed):
  x = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
  y = np.asarray(temporal_shift(jnp.asarray(x), fold_div))
  f, t = shape[-1] // fold_div, shape[1]
  assert y.shape == x.shape and y.dtype == x.dtype
  # the unshifted channels are untouched
  np.testing.assert_array_equal(y[..., 2 * f:], x[..., 2 * f:])
  # shifting back recovers the interior: the first fold moved one frame back, the second forward
  np.testing.assert_array_equal(y[:, :t - 1, ..., :f], x[:, 1:, ..., :f])
  np.testing.assert_array_equal(y[:, 1:, ..., f:2 * f], x[:, :t - 1, ..., f:2 * f])
  # ... and only the frame pushed past each end is lost (zeros come in)
  assert np.all(y[:, t - 1, ..., :f] == 0) and np.all(y[:, 0, ..., f:2 * f] == 0)


def test_transpose_is_the_opposite_shift():
  """The VJP moves gradients the other way (the released in-place shift's backward)."""
  rng = np.random.default_rng(1)
  x, g = (jnp.asarray(rng.normal(size=(2, 4, 2, 3, 16)), jnp.float32) for _ in range(2))
  _, vjp = jax.vjp(lambda a: temporal_shift(a, 8), x)
  swap = lambda a: jnp.concatenate([a[..., 2:4], a[..., 0:2], a[..., 4:]], axis=-1)  # noqa: E731
  np.testing.assert_array_equal(np.asarray(vjp(g)[0]), np.asarray(swap(temporal_shift(swap(g)))))


def test_rejects_non_clips():
  with pytest.raises(ValueError, match='N, T, H, W, C'):
    temporal_shift(jnp.zeros((2, 3, 4, 8)))
