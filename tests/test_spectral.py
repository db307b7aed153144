"""Spectral non-local blocks and chebysnl's unified view against float64 NumPy written from the
paper (tests/reference/spectral_ref.py)."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.polynomial import chebyshev

from bat_jax.blocks import spectral
from bat_jax.blocks.spectral import ChebyshevNonLocalBlock, SpectralNonLocalBlock
from bat_jax.ops import affinity
from tests.reference import spectral_ref
from tests.test_nonlocal import n_params, random_variables

RTOL, ATOL = 1e-5, 1e-5
SHAPE = (2, 2, 3, 3, 8)  # (N, T, H, W, D): 18 positions


def as32(*arrays):
  return tuple(jnp.asarray(a, jnp.float32) for a in arrays)


def run(block, x, train=False, seed=0):
  variables = random_variables(block.init(jax.random.key(0), jnp.asarray(x, jnp.float32)), seed)
  out, state = block.apply(variables, jnp.asarray(x, jnp.float32), train=train,
                           mutable=['intermediates', 'batch_stats'])
  inter = state.get('intermediates', {})
  return (np.asarray(out), np.asarray(inter['affinity'][0]) if inter else None,
          jax.tree.map(np.asarray, variables))


# --- ChebySNL -------------------------------------------------------------------------------------

@pytest.mark.parametrize('train', [False, True])
def test_snl_block_matches_reference(train):
  x = np.random.default_rng(1).normal(size=SHAPE)
  out, a, variables = run(SpectralNonLocalBlock(), x, train=train)
  ref = spectral_ref.spectral_block(x, variables['params'], None if train else
                                    variables['batch_stats'], affinity='snl', order=2,
                                    basis='power')
  np.testing.assert_allclose(out, ref['out'], rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(a, ref['graphs'], rtol=RTOL, atol=1e-6)


def test_snl_parameter_count():
  """theta, phi, g: D*C; W1, W2: C*D; BN 2D. At D = 1024 (ResNet-50 res4) this is chebysnl
  Table 6's "+2.62M" for one SNL block."""
  d, c = 1024, 512
  assert n_params(SpectralNonLocalBlock(), d) == 5 * d * c + 2 * d
  assert round(n_params(SpectralNonLocalBlock(), d) / 1e6, 2) == 2.62


@pytest.mark.parametrize('block', [SpectralNonLocalBlock(),
                                   ChebyshevNonLocalBlock(order=4, affinity='cc')])
def test_zero_initialised_bn_makes_a_new_block_the_identity(block):
  x = jnp.asarray(np.random.default_rng(2).normal(size=SHAPE), jnp.float32)
  variables = block.init(jax.random.key(1), x)
  for train in (False, True):
    out, _ = block.apply(variables, x, train=train, mutable=['batch_stats'])
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))


def test_isolated_vertex_gives_a_finite_output_and_gradient():
  """A position whose ReLU(theta) and ReLU(phi) are 0 has degree 0: its row and column of A are 0
  (not NaN), and the block and its gradient stay finite."""
  x = np.random.default_rng(3).normal(size=(1, 1, 2, 3, 4))
  block = SpectralNonLocalBlock(reduction=1)
  variables = random_variables(block.init(jax.random.key(0), jnp.asarray(x, jnp.float32)), 0)
  for name in ('theta', 'phi'):
    variables['params'][name]['kernel'] = jnp.eye(4).reshape(1, 1, 1, 4, 4)
  x[0, 0, 1, 2] = -np.abs(x[0, 0, 1, 2]) - 0.5  # ReLU(x) = 0 there: degree 0
  out, state = block.apply(variables, jnp.asarray(x, jnp.float32), mutable=['intermediates'])
  a = np.asarray(state['intermediates']['affinity'][0][0])
  assert np.all(a[5] == 0) and np.all(a[:, 5] == 0)
  ref = spectral_ref.spectral_block(x, jax.tree.map(np.asarray, variables['params']),
                                    jax.tree.map(np.asarray, variables['batch_stats']),
                                    affinity='snl', order=2, basis='power', reduction=1)
  np.testing.assert_allclose(np.asarray(out), ref['out'], rtol=RTOL, atol=ATOL)
  grad = jax.grad(lambda v: jnp.sum(block.apply(v, jnp.asarray(x, jnp.float32))))(variables)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grad))


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 7), zeros=st.integers(0, 3))
def test_snl_graph_is_symmetric_with_spectrum_in_unit_interval(seed, n, zeros):
  rng = np.random.default_rng(seed)
  q, k = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
  q[:zeros] = -np.abs(q[:zeros])  # some vertices may lose all their edges
  k[:zeros] = -np.abs(k[:zeros])
  a = np.asarray(affinity.symmetric_normalize(affinity.relu_kernel(*as32(q[None], k[None]))))[0]
  np.testing.assert_allclose(a, spectral_ref.snl_graph(q, k), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(a, a.T, atol=1e-7)
  eig = np.linalg.eigvalsh(a.astype(np.float64))
  assert np.all(eig >= -1 - 1e-5) and np.all(eig <= 1 + 1e-5)


@jax.jit
def row_normalised_graphs(q, k):
  n = q.shape[1]
  return (affinity.softmax_affinity(q, k), affinity.double_attention_affinity(q, k),
          affinity.criss_cross_affinity(q, k, (1, 2, n // 2)),
          affinity.row_normalize(jnp.abs(q @ jnp.swapaxes(k, 1, 2))))


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), half=st.integers(1, 4),
                  scale=st.floats(0.1, 20.0))
def test_row_normalised_graphs_are_stochastic(seed, half, scale):
  """NL/NS (softmax), A^2's M_bar, CC's masked softmax, D^-1 M: non-negative rows summing to 1."""
  rng = np.random.default_rng(seed)
  q, k = as32(rng.normal(size=(1, 2 * half, 3)) * scale, rng.normal(size=(1, 2 * half, 3)))
  for a in row_normalised_graphs(q, k):
    a = np.asarray(a)
    assert np.all(a >= 0)
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-5)


# --- the Chebyshev filter -------------------------------------------------------------------------

@pytest.mark.parametrize('kind', ['snl', 'nl', 'a2', 'cc'])
def test_chebyshev_recursion_matches_the_polynomials(kind):
  """``chebyshev_terms`` applied to ``I`` gives the matrices ``T_k(-A)`` (numpy's ``cheb2poly``)."""
  rng = np.random.default_rng(4)
  q, k = rng.normal(size=(1, 6, 3)), rng.normal(size=(1, 6, 3))
  apply_a, a = affinity.spectral_affinity(kind, *as32(q, k), (1, 2, 3))
  np.testing.assert_allclose(np.asarray(a)[0], spectral_ref.graph(kind, q[0], k[0], (1, 2, 3)),
                             rtol=1e-5, atol=1e-6)
  terms = affinity.chebyshev_terms(apply_a, jnp.eye(6)[None], 6)
  for order, term in enumerate(terms):
    np.testing.assert_allclose(np.asarray(term)[0], spectral_ref.chebyshev_matrix(
        np.asarray(a, np.float64)[0], order), rtol=1e-4, atol=1e-5)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**31 - 1), order=st.integers(2, 8))
def test_chebyshev_terms_of_a_normalised_graph_stay_bounded(seed, order):
  """``|T_k(x)| <= 1`` on ``[-1, 1]``, so ``||T_k(-A)||_2 <= 1`` for SNL's symmetric ``A``."""
  rng = np.random.default_rng(seed)
  q, k = as32(rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3)))
  apply_a, _ = affinity.spectral_affinity('snl', q, k, (1, 1, 5))
  for term in affinity.chebyshev_terms(apply_a, jnp.eye(5)[None].repeat(2, 0), order):
    assert np.all(np.linalg.norm(np.asarray(term, np.float64), ord=2, axis=(1, 2)) <= 1 + 1e-5)


def test_power_and_chebyshev_bases_give_the_same_filters():
  """Eq. 3 and Eq. 4 are one family: ``sum_k T_k(-A) Z V_k = sum_j A^j Z W_j`` with
  ``W_j = (-1)^j sum_k c_kj V_k`` (``c_k = cheb2poly(e_k)``)."""
  rng = np.random.default_rng(5)
  q, k, z = as32(*(rng.normal(size=(2, 7, 3)) for _ in range(3)))
  v = rng.normal(size=(4, 3, 5))
  w = np.zeros_like(v)
  for kk in range(4):
    for j, c in enumerate(chebyshev.cheb2poly([0] * kk + [1])):
      w[j] += (-1) ** j * c * v[kk]
  apply_a, _ = affinity.spectral_affinity('snl', q, k, (1, 1, 7))
  cheb = affinity.graph_filter(affinity.chebyshev_terms(apply_a, z, 4), as32(*v))
  power = affinity.graph_filter(affinity.power_terms(apply_a, z, 4), as32(*w))
  np.testing.assert_allclose(np.asarray(cheb), np.asarray(power), rtol=1e-4, atol=1e-5)


BLOCK_CASES = [(kind, basis) for kind in affinity.AFFINITY_KINDS if kind != 'ns'
               for basis in ('chebyshev', 'power')]


@pytest.mark.parametrize('kind,basis', BLOCK_CASES)
def test_chebyshev_block_matches_reference(kind, basis):
  x = np.random.default_rng(6).normal(size=SHAPE)
  if kind == 'cgnl':  # keep the rank-one powers of M^f (entries ~ sum over N*C) moderate
    x = x / 4
  block = ChebyshevNonLocalBlock(order=3, affinity=kind, basis=basis)
  out, a, variables = run(block, x)
  ref = spectral_ref.spectral_block(x, variables['params'], variables['batch_stats'],
                                    affinity=kind, order=3, basis=basis)
  np.testing.assert_allclose(out, ref['out'], rtol=1e-4, atol=1e-4)
  if a is not None:
    np.testing.assert_allclose(a, ref['graphs'], rtol=RTOL, atol=1e-6)
  assert (a is None) == (kind == 'cgnl')


def test_order_two_power_filter_with_snl_graph_is_chebysnl():
  x = jnp.asarray(np.random.default_rng(7).normal(size=SHAPE), jnp.float32)
  variables = random_variables(SpectralNonLocalBlock().init(jax.random.key(0), x), 0)
  general = ChebyshevNonLocalBlock(order=2, affinity='snl', basis='power')
  np.testing.assert_array_equal(np.asarray(general.apply(variables, x)),
                                np.asarray(SpectralNonLocalBlock().apply(variables, x)))


# --- chebysnl Table 1: every block is the filter with its own A and W_k ---------------------------

def own_formula(member):
  """The member's formula as its paper defines it (float64 reference), ``(q, k, z, w) -> O``."""
  if member == 'cc':
    return lambda *a: spectral_ref.criss_cross_formula(*a, (3, 4))
  return {'nl': spectral_ref.nonlocal_formula, 'ns': spectral_ref.nonlocal_stage_formula,
          'a2': spectral_ref.double_attention_formula, 'cgnl': spectral_ref.cgnl_formula}[member]


@pytest.mark.parametrize('member', ['nl', 'ns', 'a2', 'cgnl', 'cc'])
def test_table1_member_is_its_own_formula(member):
  """``F(A, Z) = Z W_0 + A Z W_1`` with the member's graph and weights (Table 1, Appendix B)
  equals the float64 reference of the member's own formula."""
  rng = np.random.default_rng(8)
  q, k, z = (rng.normal(size=(2, 12, 3)) for _ in range(3))
  w = rng.normal(size=(3, 5))
  apply_a, _ = affinity.spectral_affinity(member, *as32(q, k), (1, 3, 4))
  unified = affinity.graph_filter(affinity.power_terms(apply_a, *as32(z), 2),
                                  affinity.table1_weights(member, *as32(w)))
  for b in range(2):
    np.testing.assert_allclose(np.asarray(unified)[b], own_formula(member)(q[b], k[b], z[b], w),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('basis', ['power', 'chebyshev'])
@pytest.mark.parametrize('member', spectral.TABLE1_MEMBERS)
def test_table1_block_is_the_members_appendix_b_formula(member, basis):
  """``weights='table1'``: the block with one ``W`` is ``x + ReLU(BN(O))``, ``O`` the member's own
  formula (Appendix B) in float64 NumPy; in train mode (batch statistics) for NS."""
  x = np.random.default_rng(11).normal(size=SHAPE) / (4 if member == 'cgnl' else 1)
  train = member == 'ns'
  out, _, variables = run(ChebyshevNonLocalBlock(affinity=member, basis=basis, weights='table1'),
                          x, train=train)
  assert set(variables['params']) == {'theta', 'phi', 'g', 'w', 'bn'}
  ref = spectral_ref.table1_block(x, variables['params'], None if train else
                                  variables['batch_stats'], member=member)
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_table1_weights_have_one_conv_less_than_free_ones():
  d, c = 64, 32
  free, tied = (n_params(ChebyshevNonLocalBlock(affinity='ns', weights=w), d)
                for w in ('free', 'table1'))
  assert free - tied == c * d
  assert tied == 4 * d * c + 2 * d


def test_nonlocal_stage_in_the_chebyshev_basis_ties_both_weights():
  """B.2: with ``T_1 = -A``, NS is the first-order filter with ``W_0 = W_1 = -W``."""
  rng = np.random.default_rng(9)
  q, k, z = (rng.normal(size=(2, 10, 3)) for _ in range(3))
  w = rng.normal(size=(3, 4))
  apply_a, _ = affinity.spectral_affinity('ns', *as32(q, k), (1, 1, 10))
  tied = affinity.graph_filter(affinity.chebyshev_terms(apply_a, *as32(z), 2), as32(-w, -w))
  for b in range(2):
    np.testing.assert_allclose(np.asarray(tied)[b],
                               spectral_ref.nonlocal_stage_formula(q[b], k[b], z[b], w),
                               rtol=1e-4, atol=1e-5)


def test_kernel_normalised_cgnl_is_the_normalised_rank_one_graph():
  """B.4's ``D^-1 M^f vec(Z)``: theta cancels, every entry is ``<phi, Z> / sum(phi)``."""
  rng = np.random.default_rng(10)
  q, k, z = (rng.normal(size=(2, 6, 3)) for _ in range(3))
  w = rng.normal(size=(3, 4))
  graph = affinity.channel_rank_one_operator(*as32(q, k), normalize=True)
  unified = affinity.graph_filter(affinity.power_terms(graph, *as32(z), 2), (None, *as32(w)))
  for b in range(2):
    ref = spectral_ref.cgnl_formula(q[b], k[b], z[b], w, normalize=True)
    np.testing.assert_allclose(np.asarray(unified)[b], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ref, np.broadcast_to(
        (k[b] * z[b]).sum() / k[b].sum() * np.ones(3) @ w, ref.shape), rtol=1e-6)


@pytest.mark.parametrize('block,fields,field', [
    (SpectralNonLocalBlock, dict(reduction=0), 'model.block.reduction'),
    (ChebyshevNonLocalBlock, dict(order=1), 'model.block.order'),
    (ChebyshevNonLocalBlock, dict(affinity='gat'), 'model.block.affinity'),
    (ChebyshevNonLocalBlock, dict(basis='legendre'), 'model.block.basis'),
    (ChebyshevNonLocalBlock, dict(weights='tied'), 'model.block.weights'),
    (ChebyshevNonLocalBlock, dict(weights='table1'), 'model.block.affinity'),
    (ChebyshevNonLocalBlock, dict(weights='table1', affinity='ns', order=3), 'model.block.order'),
])
def test_validate_names_the_config_field(block, fields, field):
  with pytest.raises(ValueError, match=field):
    block.validate(8, fields)
  with pytest.raises(ValueError, match=field):
    block(**fields).init(jax.random.key(0), jnp.ones(SHAPE))
