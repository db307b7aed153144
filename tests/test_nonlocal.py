"""Non-local block against float64 NumPy written from the paper and the released code
(tests/reference/nonlocal_ref.py)."""

import flax
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bat_jax.blocks.nonlocal_ import INSTANTIATIONS, NonLocalBlock
from bat_jax.ops import affinity
from tests.util import random_variables
from tests.reference import nonlocal_ref

RTOL, ATOL = 1e-5, 1e-5
SHAPE = (2, 2, 4, 4, 8)  # (N, T, H, W, D)


def run(block, x, train=False, seed=0):
  variables = random_variables(block.init(jax.random.key(0), jnp.asarray(x, jnp.float32)), seed)
  out, state = block.apply(variables, jnp.asarray(x, jnp.float32), train=train,
                           mutable=['intermediates', 'batch_stats'])
  return np.asarray(out), np.asarray(state['intermediates']['affinity'][0]), jax.tree.map(
      np.asarray, variables)


def query_index(mode, shape, b, t, h, w):
  """Where the affinity row of query ``(b, t, h, w)`` sits in the sown ``(groups, N, Np)`` array."""
  _, nt, nh, nw, _ = shape
  return {'spacetime': (b, (t * nh + h) * nw + w), 'space': (b * nt + t, h * nw + w),
          'time': ((b * nh + h) * nw + w, t)}[mode]


CASES = [(inst, mode, sub) for inst in INSTANTIATIONS
         for mode, sub in (('spacetime', True), ('spacetime', False), ('space', True),
                           ('space', False), ('time', False))]


@pytest.mark.parametrize('instantiation,mode,subsample', CASES)
def test_block_matches_reference(instantiation, mode, subsample):
  x = np.random.default_rng(1).normal(size=SHAPE)
  block = NonLocalBlock(instantiation=instantiation, mode=mode, subsample=subsample)
  out, f, variables = run(block, x)
  ref = nonlocal_ref.nonlocal_block(x, variables['params'], variables['batch_stats'],
                                    instantiation=instantiation, mode=mode, subsample=subsample)
  np.testing.assert_allclose(out, ref['out'], rtol=RTOL, atol=ATOL)
  for (b, t, h, w), row in ref['affinity'].items():
    np.testing.assert_allclose(f[query_index(mode, SHAPE, b, t, h, w)], row, rtol=RTOL, atol=1e-6)


def test_train_mode_normalises_with_batch_statistics():
  x = np.random.default_rng(2).normal(size=SHAPE)
  block = NonLocalBlock(instantiation='dot_product')
  out, _, variables = run(block, x, train=True)
  ref = nonlocal_ref.nonlocal_block(x, variables['params'], None, instantiation='dot_product',
                                    mode='spacetime', subsample=True)
  np.testing.assert_allclose(out, ref['out'], rtol=RTOL, atol=ATOL)


def test_subsampling_floors_odd_sizes_like_pytorch():
  """``(1, 2, 2)`` pooling of 5x7 keeps 2x3 keys per frame (the last row and column are dropped)."""
  x = np.random.default_rng(3).normal(size=(1, 2, 5, 7, 8))
  out, f, variables = run(NonLocalBlock(), x)
  assert f.shape == (1, 2 * 5 * 7, 2 * 2 * 3)
  ref = nonlocal_ref.nonlocal_block(x, variables['params'], variables['batch_stats'],
                                    instantiation='embedded_gaussian', mode='spacetime',
                                    subsample=True)
  np.testing.assert_allclose(out, ref['out'], rtol=RTOL, atol=ATOL)


def test_subsampled_keys_are_window_maxima():
  """With ``g = phi = identity`` and no ``theta`` the keys a query sees are the pooled input."""
  rng = np.random.default_rng(4)
  x = rng.normal(size=(1, 1, 4, 4, 2))
  block = NonLocalBlock(instantiation='gaussian', reduction=1)
  variables = block.init(jax.random.key(0), jnp.asarray(x, jnp.float32))
  variables = flax.core.unfreeze(variables)
  variables['params']['g']['kernel'] = jnp.eye(2).reshape(1, 1, 1, 2, 2)
  variables['params']['w']['kernel'] = jnp.eye(2).reshape(1, 1, 1, 2, 2)
  variables['params']['bn']['scale'] = jnp.ones(2)
  variables['batch_stats']['bn']['var'] = jnp.full(2, 1 - 1e-5)
  out = block.apply(variables, jnp.asarray(x, jnp.float32))
  pooled = np.stack([[x[0, 0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(0, 1))
                      for j in range(2)] for i in range(2)]).reshape(4, 2)
  att = np.stack([np.exp(pooled @ q) / np.exp(pooled @ q).sum() for q in x.reshape(16, 2)])
  np.testing.assert_allclose(np.asarray(out).reshape(16, 2), x.reshape(16, 2) + att @ pooled,
                             rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize('instantiation', INSTANTIATIONS)
@pytest.mark.parametrize('train', [False, True])
def test_zero_initialised_bn_makes_a_new_block_the_identity(instantiation, train):
  x = jnp.asarray(np.random.default_rng(5).normal(size=SHAPE), jnp.float32)
  block = NonLocalBlock(instantiation=instantiation)
  variables = block.init(jax.random.key(1), x)
  assert not np.any(np.asarray(variables['params']['bn']['scale']))
  out, _ = block.apply(variables, x, train=train, mutable=['batch_stats'])
  np.testing.assert_array_equal(np.asarray(out), np.asarray(x))


def n_params(block, d):
  shapes = jax.eval_shape(block.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 4, 8, 8, d),
                                                                            jnp.float32))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes['params']))


@pytest.mark.parametrize('d', [512, 1024])
def test_parameter_count_matches_the_released_block(d):
  """theta, phi, g: D*C + C each; W: C*D + D; BN: 2D (C = D/2); no weights are allocated."""
  c = d // 2
  assert n_params(NonLocalBlock(), d) == 3 * (d * c + c) + (c * d + d) + 2 * d


def test_five_blocks_add_what_the_released_c2d_nl_adds():
  """Released code: C2D+NL 31,686,096 params, C2D 24,327,632 (2 blocks at D=512, 3 at 1024)."""
  block = NonLocalBlock()
  assert 2 * n_params(block, 512) + 3 * n_params(block, 1024) == 31_686_096 - 24_327_632


def test_variants_own_exactly_their_parameters():
  d, c = 512, 256
  base = n_params(NonLocalBlock(), d)
  assert n_params(NonLocalBlock(instantiation='dot_product'), d) == base
  assert n_params(NonLocalBlock(instantiation='gaussian'), d) == base - 2 * (d * c + c)
  assert n_params(NonLocalBlock(instantiation='concatenation'), d) == base + 2 * c


def test_bfloat16_block_keeps_the_affinity_in_float32():
  x = jnp.asarray(np.random.default_rng(6).normal(size=SHAPE), jnp.float32)
  block = NonLocalBlock(dtype=jnp.bfloat16)
  variables = random_variables(block.init(jax.random.key(0), x), 0)
  out, state = block.apply(variables, x, mutable=['intermediates'])
  f = state['intermediates']['affinity'][0]
  assert f.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(f).sum(-1), 1.0, rtol=1e-6)
  ref = NonLocalBlock().apply(variables, x)
  np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref), rtol=0.05, atol=0.1)


def test_affinity_is_only_sown_on_request():
  x = jnp.ones(SHAPE)
  block = NonLocalBlock()
  variables = block.init(jax.random.key(0), x)
  assert 'intermediates' not in variables
  _, state = block.apply(variables, x, mutable=['batch_stats'])
  assert 'intermediates' not in state


@pytest.mark.parametrize('fields,field', [
    (dict(mode='time'), 'model.block.subsample'),
    (dict(instantiation='softmax'), 'model.block.instantiation'),
    (dict(mode='frames', subsample=False), 'model.block.mode'),
    (dict(reduction=0), 'model.block.reduction'),
    (dict(reduction=16), 'model.block.reduction'),
])
def test_validate_names_the_config_field(fields, field):
  with pytest.raises(ValueError, match=field):
    NonLocalBlock.validate(8, fields)
  with pytest.raises(ValueError, match=field):
    NonLocalBlock(**fields).init(jax.random.key(0), jnp.ones(SHAPE))


def test_subsampling_needs_two_rows_and_columns():
  with pytest.raises(ValueError, match='model.block.subsample'):
    NonLocalBlock().init(jax.random.key(0), jnp.ones((1, 2, 1, 4, 8)))


@jax.jit
def softmax_and_dot(q, k):
  return affinity.softmax_affinity(q, k), affinity.dot_product_affinity(q, k)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), np_=st.integers(1, 6),
                  scale=st.floats(0.1, 30.0))
def test_softmax_and_dot_product_affinities(seed, n, np_, scale):
  """Softmax rows are distributions (even for large logits); dot product is ``q^T k / Np``."""
  rng = np.random.default_rng(seed)
  q, k = rng.normal(size=(2, n, 3)) * scale, rng.normal(size=(2, np_, 3))
  f, dot = softmax_and_dot(jnp.asarray(q, jnp.float32), jnp.asarray(k, jnp.float32))
  f = np.asarray(f)
  assert np.all(np.isfinite(f)) and np.all(f >= 0)
  np.testing.assert_allclose(f.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(dot), np.einsum('bic,bjc->bij', q, k) / np_, rtol=1e-4,
                             atol=1e-4 * scale)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 5), np_=st.integers(1, 5))
def test_concatenation_without_building_the_concatenation(seed, n, np_):
  """``w_1^T theta_i + w_2^T phi_j`` equals ``w_f^T [theta_i; phi_j]`` on every pair."""
  rng = np.random.default_rng(seed)
  q, k, w_f = rng.normal(size=(1, n, 3)), rng.normal(size=(1, np_, 3)), rng.normal(size=6)
  f = affinity.concatenation_affinity(*(jnp.asarray(a, jnp.float32) for a in (q, k, w_f)))
  ref = np.array([[max(np.concatenate([qi, kj]) @ w_f, 0) / np_ for kj in k[0]] for qi in q[0]])
  np.testing.assert_allclose(np.asarray(f)[0], ref, rtol=1e-5, atol=1e-6)
