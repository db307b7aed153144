"""The math of non-local blocks: pairwise affinities, their normalisations and graph filters.

Sources: Wang et al., "Non-local Neural Networks" (``nonlocal_cvpr2018_slides.md``: the generic
operation ``y_i = 1/C(x) sum_j f(x_i, x_j) g(x_j)`` and the table of pairwise functions), and the
unified spectral view of ``chebysnl_unified_nonlocal.md`` (Eqs. 3-5, Table 1, Appendix B).

Pure ``jax.numpy`` functions; the learned convolutions live in ``bat_jax.blocks.nonlocal_`` and
``bat_jax.blocks.spectral``. Shapes: positions are flattened, a query set is ``(B, N, C)``, a key
set ``(B, Np, C)``, an affinity ``(B, N, Np)``. ``B`` folds whatever the positions are grouped by
(the clip, or clip x frame for a space-only block, ...; see ``group_positions``). Affinities and
their normalisations are computed in float32 (float64 inputs stay float64), whatever the inputs'
dtype.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array
Operator = Callable[[Array], Array]  # a linear map on (B, N, C) signals: Z -> A Z
MODES = ('spacetime', 'space', 'time')


# --- position sets -----------------------------------------------------------------------------

def group_positions(x: Array, mode: str) -> Array:
  """``(N, T, H, W, C) -> (B, P, C)``: the position sets a non-local operation attends within.

  ``'spacetime'``: all ``T*H*W`` positions of a clip; ``'space'``: the ``H*W`` positions of each
  frame; ``'time'``: the ``T`` positions of each spatial location (NL Table 2d's variants).
  """
  n, t, h, w, c = x.shape
  if mode == 'spacetime':
    return x.reshape(n, t * h * w, c)
  if mode == 'space':
    return x.reshape(n * t, h * w, c)
  if mode == 'time':
    return x.transpose(0, 2, 3, 1, 4).reshape(n * h * w, t, c)
  raise ValueError(f'mode={mode!r}; allowed: {MODES}')


def ungroup_positions(y: Array, mode: str, shape: Sequence[int]) -> Array:
  """Inverse of ``group_positions`` for an input of ``shape = (N, T, H, W, ...)``; keeps ``y``'s
  channels."""
  n, t, h, w = shape[:4]
  c = y.shape[-1]
  if mode == 'time':
    return y.reshape(n, h, w, t, c).transpose(0, 3, 1, 2, 4)
  if mode in MODES:
    return y.reshape(n, t, h, w, c)
  raise ValueError(f'mode={mode!r}; allowed: {MODES}')


# --- non-local pairwise functions (Wang et al. 2018) ---------------------------------------------

def _wide(a: Array) -> Array:
  """``a`` in float32, or float64 if it already is: the precision affinities are computed in."""
  return a.astype(jnp.promote_types(a.dtype, jnp.float32))


def _logits(q: Array, k: Array) -> Array:
  """``q_i^T k_j`` for all pairs, accumulated and returned in float32 (or float64)."""
  dtype = jnp.promote_types(jnp.promote_types(q.dtype, k.dtype), jnp.float32)
  return jnp.einsum('bic,bjc->bij', q, k, preferred_element_type=dtype)


def softmax_affinity(q: Array, k: Array, scale: float = 1.0) -> Array:
  """``f_ij / C(x) = softmax_j(scale * q_i^T k_j)``.

  NL "Embedded Gaussian" ``f = exp(theta_i^T phi_j)`` normalised by ``C(x) = sum_j f`` with the
  released code's ``scale = C^-1/2``; NL "Gaussian" ``f = exp(x_i^T x_j)`` with ``q, k = x`` and
  ``scale = 1``. Also the row-normalised graph ``A = D_M^-1 M`` of NL and NS in the spectral view
  (chebysnl Eqs. 12-13, 17).
  """
  return jax.nn.softmax(_logits(q, k) * scale, axis=-1)


def dot_product_affinity(q: Array, k: Array) -> Array:
  """NL "Dot product": ``f = theta_i^T phi_j`` normalised by ``C(x) = Np``, the number of keys."""
  return _logits(q, k) / k.shape[1]


def concatenation_affinity(q: Array, k: Array, w_f: Array) -> Array:
  """NL "Concatenation": ``f = ReLU(w_f^T [theta_i; phi_j])`` normalised by ``C(x) = Np``.

  ``w_f (2C,)``. The ``N x Np x 2C`` concatenation is never built:
  ``w_f^T [theta_i; phi_j] = w_1^T theta_i + w_2^T phi_j`` with ``w_f = [w_1; w_2]``.
  """
  c = q.shape[-1]
  a = jnp.einsum('bic,c->bi', _wide(q), _wide(w_f[:c]))
  b = jnp.einsum('bjc,c->bj', _wide(k), _wide(w_f[c:]))
  return jax.nn.relu(a[:, :, None] + b[:, None, :]) / k.shape[1]


def aggregate(f: Array, g: Array) -> Array:
  """``y_i = sum_j f_ij g_j`` (NL Eq. 1, ``f`` already divided by ``C(x)``), in ``g``'s dtype."""
  return jnp.einsum('bij,bjc->bic', f.astype(g.dtype), g)


# --- graphs of the spectral view (chebysnl §2) ----------------------------------------------------

def relu_kernel(q: Array, k: Array) -> Array:
  """ChebySNL's affinity kernel ``M = ReLU(phi) ReLU(psi)^T`` (non-negative; released SNL code)."""
  return _logits(jax.nn.relu(q), jax.nn.relu(k))


def _inverse(d: Array, power: float) -> Array:
  """``d ** -power`` with 0 where ``d == 0`` (an isolated vertex keeps no edges) and, for a
  fractional ``power``, where ``d < 0``. Safe under ``jax.grad`` (no ``inf * 0``)."""
  valid = d != 0 if float(power).is_integer() else d > 0
  return jnp.where(valid, jnp.where(valid, d, 1.0) ** -power, 0.0)


def symmetric_normalize(m: Array) -> Array:
  """ChebySNL Eq. 5: ``A = D^-1/2 M_hat D^-1/2``, ``M_hat = (M + M^T)/2``, ``D = diag(M_hat 1)``.

  ``d^-1/2`` is set to 0 where a degree is 0, so a vertex without edges gets a zero row and column
  instead of NaN. For non-negative ``M`` the eigenvalues of ``A`` lie in ``[-1, 1]``.
  """
  m = _wide(m)
  m_hat = 0.5 * (m + jnp.swapaxes(m, -1, -2))
  d = _inverse(jnp.sum(m_hat, axis=-1), 0.5)
  return d[..., :, None] * m_hat * d[..., None, :]


def row_normalize(m: Array) -> Array:
  """``A = D_M^-1 M``, rows summing to 1 (chebysnl Eq. 12); a zero row stays zero."""
  m = _wide(m)
  return m * _inverse(jnp.sum(m, axis=-1), 1.0)[..., None]


def double_attention_affinity(q: Array, k: Array) -> Array:
  """A^2's graph ``M_bar = softmax_n(V)^T softmax_j(B)`` (chebysnl Eq. 23; Chen et al. 2018).

  ``k (B, N, n)`` are the gathering attention maps ``B``, normalised over the positions ``j``;
  ``q (B, N, n)`` the distribution vectors ``V``, normalised over the ``n`` descriptors. Every row
  of ``M_bar`` sums to 1.
  """
  gather = jax.nn.softmax(_wide(k), axis=1)
  distribute = jax.nn.softmax(_wide(q), axis=-1)
  return jnp.einsum('bin,bjn->bij', distribute, gather)


def criss_cross_mask(grid: Sequence[int]) -> Array:
  """CC's edge mask ``C`` (chebysnl B.5) on the flattened ``(T, H, W)`` positions.

  ``C_ij = 1`` when ``j`` is in ``i``'s frame and in its row or its column (``i`` itself once).
  """
  t, h, w = grid
  tt, hh, ww = (a.reshape(-1) for a in jnp.meshgrid(jnp.arange(t), jnp.arange(h), jnp.arange(w),
                                                     indexing='ij'))
  same_frame = tt[:, None] == tt[None, :]
  return same_frame & ((hh[:, None] == hh[None, :]) | (ww[:, None] == ww[None, :]))


def criss_cross_affinity(q: Array, k: Array, grid: Sequence[int]) -> Array:
  """CC's graph ``A = D^-1 (C . M)`` with ``M = exp(q_i^T k_j)``: a softmax over ``i``'s row and
  column (chebysnl B.5). ``q, k (B, T*H*W, C)`` on the grid ``(T, H, W)``."""
  logits = jnp.where(criss_cross_mask(grid), _logits(q, k), -jnp.inf)
  return jax.nn.softmax(logits, axis=-1)


def channel_rank_one_operator(q: Array, k: Array, normalize: bool = False) -> Operator:
  """CGNL's channel-aware graph on the ``N*C`` vertices of ``vec(Z)`` (chebysnl B.4), applied.

  With the dot-product kernel ``M^f = vec(theta) vec(phi)^T`` (rank one, never built),
  ``M^f vec(Z) = vec(theta) <vec(phi), vec(Z)>``. ``normalize``: ``D_{M^f}^-1 M^f`` (§2.2 item 4),
  whose row ``i`` is ``theta_i phi^T / (theta_i sum(phi))``: ``theta`` cancels and every vertex
  receives ``<phi, Z> / sum(phi)`` (0 where ``theta_i sum(phi) = 0``).
  """
  q, k = _wide(q), _wide(k)

  def apply(z: Array) -> Array:
    inner = jnp.sum(k * _wide(z), axis=(1, 2), keepdims=True)
    if not normalize:
      return (q * inner).astype(z.dtype)
    degree = q * jnp.sum(k, axis=(1, 2), keepdims=True)
    return (q * inner * _inverse(degree, 1.0)).astype(z.dtype)

  return apply


def matrix_operator(a: Array) -> Operator:
  """``Z -> A Z`` for an ``(B, N, N)`` affinity, in ``Z``'s dtype."""
  return lambda z: aggregate(a, z)


AFFINITY_KINDS = ('snl', 'nl', 'ns', 'a2', 'cgnl', 'cc')


def spectral_affinity(kind: str, q: Array, k: Array,
                      grid: Sequence[int]) -> tuple[Operator, Array | None]:
  """The graph of each block of chebysnl Table 1 from its two embeddings ``q, k (B, N, C)``.

  Returns ``(Z -> A Z, A or None)``; ``A`` is ``None`` for ``'cgnl'``, whose graph has ``N*C``
  vertices and is only applied. ``'snl'``: Eq. 5 on ``relu_kernel``; ``'nl'`` and ``'ns'``: the
  row-normalised ``D_M^-1 M`` with ``M = exp(q^T k)`` (NS shares NL's graph and differs only in its
  filter weights, B.2); ``'a2'``: ``M_bar``; ``'cgnl'``: ``M^f`` (Table 1); ``'cc'``: the
  criss-cross softmax on ``grid = (T, H, W)``.
  """
  if kind == 'cgnl':
    return channel_rank_one_operator(q, k), None
  if kind == 'snl':
    a = symmetric_normalize(relu_kernel(q, k))
  elif kind in ('nl', 'ns'):
    a = softmax_affinity(q, k)
  elif kind == 'a2':
    a = double_attention_affinity(q, k)
  elif kind == 'cc':
    a = criss_cross_affinity(q, k, grid)
  else:
    raise ValueError(f'affinity={kind!r}; allowed: {AFFINITY_KINDS}')
  return matrix_operator(a), a


# --- graph filters (chebysnl Eqs. 3-4) ------------------------------------------------------------

def power_terms(apply_a: Operator, z: Array, order: int) -> list[Array]:
  """``[A^0 Z, ..., A^(K-1) Z]``, the terms of the unified filter (Eq. 4, Table 1 "Unify")."""
  if order < 1:
    raise ValueError(f'order={order} must be at least 1')
  terms = [z]
  for _ in range(order - 1):
    terms.append(apply_a(terms[-1]))
  return terms


def chebyshev_terms(apply_a: Operator, z: Array, order: int) -> list[Array]:
  """``[T_0(L~) Z, ..., T_(K-1)(L~) Z]`` with ``L~ = -A`` (Eq. 3, Property 2).

  ``T_0 = I``, ``T_1 = L~``, ``T_k = 2 L~ T_(k-1) - T_(k-2)``, applied to ``Z`` without forming any
  matrix power. The ``T_k(-A)`` span the same polynomials in ``A`` as the ``A^k`` of Eq. 4, so a
  filter in either basis can express the other (with different ``W_k``).
  """
  if order < 1:
    raise ValueError(f'order={order} must be at least 1')
  terms = [z]
  if order > 1:
    terms.append(-apply_a(z))
  for _ in range(order - 2):
    terms.append(-2 * apply_a(terms[-1]) - terms[-2])
  return terms


FILTER_BASES: dict[str, Callable[[Operator, Array, int], list[Array]]] = {
    'power': power_terms, 'chebyshev': chebyshev_terms}


def graph_filter(terms: Sequence[Array], weights: Sequence[Array | None]) -> Array:
  """``F(A, Z) = sum_k term_k W_k`` (Eq. 4); a ``None`` weight drops its term."""
  out = [jnp.einsum('bnc,cd->bnd', t, w) for t, w in zip(terms, weights, strict=True)
         if w is not None]
  return sum(out[1:], out[0])


def table1_weights(member: str, w: Array) -> tuple[Array | None, Array | None]:
  """``(W_0, W_1)`` of each block of chebysnl Table 1 as ``F(A, Z) = Z W_0 + A Z W_1`` (Eq. 4).

  NL, A^2, CGNL and CC keep only the term ``A Z W`` (B.1, B.3-B.5); NS is ``-Z W + A Z W`` (Eq. 19).
  The graph ``A`` of each is ``spectral_affinity(member, ...)``. In the Chebyshev basis
  (``T_1 = -A``) NS's weights are ``W_0 = W_1 = -W`` (B.2) and the others' ``W_1 = -W``.
  """
  if member == 'ns':
    return -w, w
  if member in ('nl', 'a2', 'cgnl', 'cc'):
    return None, w
  raise ValueError(f"member={member!r}; allowed: ('nl', 'ns', 'a2', 'cgnl', 'cc')")
