"""BAT: the math against float64 NumPy written from the equations (tests/reference/bat_ref.py)."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bat_jax.blocks.bat import BATBlock
from bat_jax.nn import xla_cpu
from bat_jax.ops import bilinear
from tests.util import random_variables
from tests.reference import bat_ref

RTOL, ATOL = 2e-4, 2e-5


def run_block(block, x_init, x, seed=0):
  variables = random_variables(block.init(jax.random.key(0), jnp.asarray(x_init)), seed)
  out, state = block.apply(variables, jnp.asarray(x, jnp.float32), mutable=['intermediates'])
  as_np = lambda t: jax.tree.map(np.asarray, t)  # noqa: E731
  return np.asarray(out), as_np(state.get('intermediates', {})), as_np(variables)


CASES = {
    # name: (x shape (N, T, H, W, D), block fields)
    'image_7x7_grid': ((2, 1, 14, 14, 8), dict(groups=2, size=7)),
    'sigmoid_l1': ((1, 1, 14, 14, 8), dict(groups=2, size=7, normalization='sigmoid')),
    'sliding_2_windows': ((1, 1, 16, 16, 8), dict(groups=2, size=7)),
    'non_square_short_cells': ((1, 1, 9, 12, 8), dict(groups=1, size=4)),
    'smaller_than_window': ((1, 1, 5, 3, 8), dict(groups=2, size=7)),
    'video_3d': ((1, 4, 8, 8, 8), dict(groups=2, size=4, temporal_groups=2, temporal_size=2)),
    'video_3d_sliding_time': ((1, 6, 8, 8, 8), dict(groups=2, size=4, temporal_groups=4,
                                                    temporal_size=4)),
    'downsample': ((1, 2, 8, 12, 8), dict(groups=2, size=4, matrix='downsample')),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_block_matches_reference(case):
  shape, fields = CASES[case]
  x = np.random.default_rng(1).normal(size=shape)
  block = BATBlock(**fields, dropout_rate=0.2)
  out, inter, variables = run_block(block, x, x)
  ref = bat_ref.bat_block(x, variables['params'], variables['batch_stats'], **fields)
  np.testing.assert_allclose(out, ref['out'], rtol=RTOL, atol=ATOL)
  if fields.get('matrix') != 'downsample':
    np.testing.assert_allclose(inter['P'][0], ref['P'], rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(inter['Q'][0], ref['Q'], rtol=RTOL, atol=1e-6)
  if fields.get('temporal_groups'):
    np.testing.assert_allclose(inter['T'][0], ref['T'], rtol=RTOL, atol=1e-6)


# The block inputs of a 256x256 clip: res3 is 32x32 and res4 16x16 (8 cells of 4 / 2 positions,
# two sliding 7x7 windows; cells (0, 7) and (7, 0) are covered by neither).
RES_256 = {'res3_32x32': (1, 4, 32, 32, 8), 'res4_16x16': (1, 4, 16, 16, 8)}


@pytest.mark.parametrize('uncovered', ['zero_weight', 'zero_logit'])
@pytest.mark.parametrize('where', sorted(RES_256))
def test_uncovered_entries_at_256_match_reference(where, uncovered):
  fields = dict(groups=2, size=7, temporal_groups=2, temporal_size=4)
  x = np.random.default_rng(2).normal(size=RES_256[where])
  block = BATBlock(**fields, uncovered=uncovered)
  out, inter, variables = run_block(block, x, x)
  ref = bat_ref.bat_block(x, variables['params'], variables['batch_stats'], **fields,
                          uncovered=uncovered)
  np.testing.assert_allclose(out, ref['out'], rtol=RTOL, atol=ATOL)
  np.testing.assert_allclose(inter['P'][0], ref['P'], rtol=RTOL, atol=1e-6)
  np.testing.assert_allclose(inter['Q'][0], ref['Q'], rtol=RTOL, atol=1e-6)
  # The uncovered cell pair (0, 7): rows 0..b-1 x columns 7b..8b-1 of the resized P.
  b = RES_256[where][2] // 8
  corner = inter['P'][0][..., 0, 7 * b]
  if uncovered == 'zero_weight':
    assert np.all(corner == 0.0)
  else:
    assert np.all(corner > 0.0)
  other = 'zero_logit' if uncovered == 'zero_weight' else 'zero_weight'
  assert not np.allclose(run_block(BATBlock(**fields, uncovered=other), x, x)[0], out)


def test_full_resolution_matrices_slide_at_a_new_resolution():
  """'full' (Table 2): P, Q predicted at the initialisation size; larger inputs slide windows."""
  rng = np.random.default_rng(2)
  block = BATBlock(groups=2, matrix='full')
  x_init, x = rng.normal(size=(1, 1, 6, 5, 8)), rng.normal(size=(1, 1, 8, 7, 8))
  out, _, variables = run_block(block, x_init, x)
  assert variables['params']['predictor']['predict_p']['conv']['kernel'].shape == (6, 2, 72)
  ref = bat_ref.bat_block(x, variables['params'], variables['batch_stats'], groups=2, size=0,
                          sizes=(6, 5))
  np.testing.assert_allclose(out, ref['out'], rtol=RTOL, atol=ATOL)


def test_zero_groups_is_a_fixed_identity_transform():
  """Table 4's k = 0: P = Q = I, no predictor parameters."""
  x = np.random.default_rng(3).normal(size=(1, 2, 7, 7, 8))
  block = BATBlock(groups=0)
  out, _, variables = run_block(block, x, x)
  assert 'predictor' not in variables['params']
  p, s = variables['params'], variables['batch_stats']
  y = bat_ref.relu(bat_ref.bn(bat_ref.conv1x1(x, p['conv1']), p['bn1'], s['bn1']))
  y = bat_ref.relu(bat_ref.bn(bat_ref.conv1x1(y, p['conv2']), p['bn2'], s['bn2']))
  y = bat_ref.relu(bat_ref.bn(bat_ref.conv1x1(y, p['conv3']), p['bn3'], s['bn3']))
  np.testing.assert_allclose(out, x + y, rtol=RTOL, atol=ATOL)


def test_sigmoid_normalisation_survives_very_negative_logits():
  """The released image code's sigmoid / row-sum is 0/0 once every logit is below about -88."""
  logits = jnp.array([[[-200.0, -190.0, -210.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]])
  p = np.asarray(bilinear.normalize(logits, -1, 'sigmoid'))
  assert np.all(np.isfinite(p))
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
  # where float32 has room, it is sigmoid(l) / sum sigmoid(l)
  sig = 1 / (1 + np.exp(-np.array([1.0, 2.0, 3.0])))
  np.testing.assert_allclose(p[0, 1], sig / sig.sum(), rtol=1e-6)
  # and where it has not, the float64 ratio exp(l_i) / sum exp(l_j) (sigmoid(l) ~ exp(l))
  e = np.exp(np.array([-200.0, -190.0, -210.0]) + 190.0)
  np.testing.assert_allclose(p[0, 0], e / e.sum(), rtol=1e-5)


@hypothesis.given(n=st.integers(1, 5), b_h=st.integers(1, 3), b_w=st.integers(1, 3),
                  crop_h=st.integers(0, 2), crop_w=st.integers(0, 2), groups=st.sampled_from([1, 2]),
                  seed=st.integers(0, 1000))
@hypothesis.settings(deadline=None, max_examples=25)
def test_block_transform_equals_dense_kron_product(n, b_h, b_w, crop_h, crop_w, groups, seed):
  """Eq. 1 with P' = kron(P, I): the reshape-and-contract form equals the dense product."""
  rng = np.random.default_rng(seed)
  h, w = max(n * b_h - min(crop_h, b_h - 1), 1), max(n * b_w - min(crop_w, b_w - 1), 1)
  c = 2 * groups
  x = rng.normal(size=(2, h, w, c))
  p, q = rng.normal(size=(2, groups, n, n)), rng.normal(size=(2, groups, n, n))
  got = np.asarray(bilinear.block_transform(jnp.asarray(x, jnp.float32), jnp.asarray(p, jnp.float32),
                                            jnp.asarray(q, jnp.float32), b_h, b_w))
  want = np.zeros_like(x)
  for b in range(2):
    for ch in range(c):
      g = ch // (c // groups)
      fp, fq = bat_ref.full_matrix(p[b, g], b_h, h), bat_ref.full_matrix(q[b, g], b_w, w)
      want[b, :, :, ch] = fp @ x[b, :, :, ch] @ fq
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('shape,k,tk,size,b_t', [
    ((1, 2, 6, 6, 4), 2, 0, 3, 1),      # 2D: exact 3x3 grid of 2x2 cells
    ((2, 4, 5, 7, 8), 4, 2, 3, 2),      # 3D, short last cells, two frames per temporal cell
    ((1, 3, 4, 4, 6), 2, 3, 2, 1),      # temporal groups that cut spatial groups (other path)
])
@pytest.mark.parametrize('matmul', [xla_cpu.cell_matmul, bilinear.cell_matmul],
                         ids=['xla_cpu', 'plain'])
def test_bat_transform_gradients_match_finite_differences(shape, k, tk, size, b_t, matmul):
  """Reverse-mode gradients of the whole transform w.r.t. X, P, Q, T against central differences
  (float64), through the plain ``cell_matmul`` and its XLA:CPU form (``nn.xla_cpu``)."""
  n, t, h, w, _ = shape
  (n_h, b_h), (n_w, b_w) = bilinear.block_layout(h, size), bilinear.block_layout(w, size)
  n_t = -(-t // b_t)
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    y = jnp.asarray(rng.normal(size=shape))
    p = jnp.asarray(rng.normal(size=(n * t, k, n_h, n_h)))
    q = jnp.asarray(rng.normal(size=(n * t, k, n_w, n_w)))
    tm = jnp.asarray(rng.normal(size=(n, tk, n_t, n_t))) if tk else None
    fn = lambda *a: bilinear.bat_transform(*a, b_h, b_w, b_t, matmul)  # noqa: E731
    check_grads(fn, (y, p, q, tm), order=1, modes=['rev'], eps=1e-4,
                              atol=1e-5, rtol=1e-5)  # O(eps^2): the map is quartic


@hypothesis.given(n=st.integers(1, 12), size=st.integers(1, 7))
@hypothesis.settings(deadline=None, max_examples=40)
def test_window_placement_covers_the_band(n, size):
  """Windows slide with stride 1 along the diagonal: entry (i, j) is covered iff some window holds
  both i and j, i.e. |i - j| < size (the whole matrix when n <= size)."""
  e = bilinear.window_placement(n, size)
  covered = np.einsum('wai,wbj->ij', e, e) > 0
  i, j = np.indices((n, n))
  np.testing.assert_array_equal(covered, np.abs(i - j) < size)


@hypothesis.given(length=st.integers(1, 80), size=st.integers(1, 9))
def test_block_layout_tiles_the_axis(length, size):
  n, b = bilinear.block_layout(length, size)
  assert (n - 1) * b < length <= n * b
  if length % size == 0:
    assert (n, b) == (size, length // size)


@hypothesis.given(seed=st.integers(0, 10_000), kind=st.sampled_from(['softmax', 'sigmoid']))
@hypothesis.settings(deadline=None, max_examples=20)
def test_sown_matrices_are_normalised_as_eq2(seed, kind):
  """P rows and Q columns are non-negative and sum to 1 at full resolution (Eq. 2 + Figure 3)."""
  x = np.random.default_rng(seed).normal(size=(1, 1, 14, 10, 4))
  _, inter, _ = run_block(BATBlock(groups=2, size=7, normalization=kind), x, x, seed)
  p, q = inter['P'][0], inter['Q'][0]
  assert p.min() >= 0 and q.min() >= 0
  np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(q.sum(-2), 1.0, rtol=1e-5)


def test_channel_dropout_drops_whole_channels():
  x = np.random.default_rng(4).normal(size=(2, 2, 7, 7, 16))
  block = BATBlock(groups=2, dropout_rate=0.5)
  variables = block.init(jax.random.key(0), jnp.asarray(x))
  out, _ = block.apply(variables, jnp.asarray(x), train=True, rngs={'dropout': jax.random.key(1)},
                       mutable=['batch_stats'])
  residual = np.asarray(out) - x
  zero = np.all(np.abs(residual) < 1e-7, axis=(1, 2, 3))  # (N, C): whole channel dropped
  some = np.any(np.abs(residual) >= 1e-7, axis=(1, 2, 3))
  assert np.all(zero | some) and zero.any() and some.any()
  assert np.all(zero == ~some)


@pytest.mark.parametrize('fields, message', [
    (dict(groups=3), 'model.block.groups=3'),
    (dict(temporal_groups=5), 'model.block.temporal_groups=5'),
    (dict(normalization='l2'), 'model.block.normalization'),
    (dict(matrix='dense'), 'model.block.matrix'),
    (dict(uncovered='zero'), 'model.block.uncovered'),
])
def test_bad_settings_name_the_field(fields, message):
  with pytest.raises(ValueError, match=message.replace('.', r'\.')):
    BATBlock.validate(16, fields)


def test_attention_maps_follow_eq8_and_supplement_eq1():
  rng = np.random.default_rng(5)
  p, q = rng.uniform(size=(2, 6, 6)), rng.uniform(size=(2, 5, 5))
  w = np.asarray(bilinear.reprojected_attention(jnp.asarray(p), jnp.asarray(q)))
  ones = np.ones((6, 5))
  for g in range(2):
    np.testing.assert_allclose(w[g], p[g].T @ ones @ q[g].T, rtol=1e-5)
  c = np.asarray(bilinear.contribution_map(jnp.asarray(p), jnp.asarray(q), 4, 1))
  for m in range(6):
    for n in range(5):
      np.testing.assert_allclose(c[:, m, n], p[:, 4, m] * q[:, n, 1], rtol=1e-6)
  # Y = P X Q: output (i, j) is the contribution-weighted sum of the input (supplement §3)
  x = rng.normal(size=(6, 5))
  np.testing.assert_allclose((c[0] * x).sum(), (p[0] @ x @ q[0])[4, 1], rtol=1e-6)
