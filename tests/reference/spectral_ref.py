"""Float64 NumPy reference of the spectral non-local blocks and of the five blocks chebysnl unifies,
written from ``chebysnl_unified_nonlocal.md`` (Eqs. 3-5, Table 1, Appendix B) and the released SNL,
CGNL and CCNet code facts (``released_code_facts.md``).

It shares no code with ``bat_jax``. Every graph is a dense matrix built entry by entry (CGNL's on
the ``N*C`` channel-position vertices, CC's from each pixel's row and column), ``T_k(-A)`` comes
from ``numpy.polynomial.chebyshev.cheb2poly`` and matrix powers (not the recursion), and each
block's own formula is written as its paper writes it, per output position.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from numpy.polynomial import chebyshev

from tests.reference.nonlocal_ref import batch_norm, conv1x1


def softmax(v: np.ndarray) -> np.ndarray:
  e = np.exp(v - v.max())
  return e / e.sum()


# --- graphs (one sample: q, k (N, C)) -------------------------------------------------------------

def snl_graph(q: np.ndarray, k: np.ndarray) -> np.ndarray:
  """Eq. 5: ``M = ReLU(q) ReLU(k)^T``, ``M_hat = (M + M^T)/2``, ``A = D^-1/2 M_hat D^-1/2``,
  where a zero degree contributes 0 (its row and column of ``A`` are 0)."""
  m = np.maximum(q, 0) @ np.maximum(k, 0).T
  m_hat = (m + m.T) / 2
  d = m_hat.sum(axis=1)
  a = np.zeros_like(m_hat)
  for i in range(len(d)):
    for j in range(len(d)):
      if d[i] > 0 and d[j] > 0:
        a[i, j] = m_hat[i, j] / np.sqrt(d[i] * d[j])
  return a


def softmax_graph(q: np.ndarray, k: np.ndarray) -> np.ndarray:
  """NL / NS: ``A = D_M^-1 M`` with ``M_ij = exp(q_i^T k_j)`` (Eqs. 12-13)."""
  return np.stack([softmax(k @ qi) for qi in q])


def double_attention_graph(v: np.ndarray, b: np.ndarray) -> np.ndarray:
  """A^2 (Eq. 23): ``M_bar_ij = sum_n softmax_n(v_i)_n softmax_j(b_:n)_j``."""
  gather = np.stack([softmax(b[:, c]) for c in range(b.shape[1])], axis=1)  # over positions j
  distribute = np.stack([softmax(vi) for vi in v])  # over descriptors n
  n = len(v)
  return np.array([[sum(distribute[i, c] * gather[j, c] for c in range(b.shape[1]))
                    for j in range(n)] for i in range(n)])


def criss_cross_graph(q: np.ndarray, k: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
  """CC (B.5): row ``i`` is a softmax of ``q_i^T k_j`` over ``j`` in ``i``'s frame and in its row
  or column (``i`` itself once), 0 elsewhere. Positions are ``(t, h, w)`` row-major."""
  pos = list(np.ndindex(*grid))
  a = np.zeros((len(pos), len(pos)))
  for i, (t, h, w) in enumerate(pos):
    js = [j for j, (t2, h2, w2) in enumerate(pos) if t2 == t and (h2 == h or w2 == w)]
    a[i, js] = softmax(np.array([q[i] @ k[j] for j in js]))
  return a


def cgnl_graph(q: np.ndarray, k: np.ndarray) -> np.ndarray:
  """CGNL (Eq. 26, one group, dot-product kernel): ``M^f = f(vec q, vec k)``, entry
  ``((n, c), (m, d)) = q[n, c] k[m, d]``, on the ``N*C`` vertices (``vec`` row-major)."""
  qv, kv = q.reshape(-1), k.reshape(-1)
  return np.array([[qv[a] * kv[b] for b in range(kv.size)] for a in range(qv.size)])


def graph(kind: str, q: np.ndarray, k: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
  if kind == 'snl':
    return snl_graph(q, k)
  if kind in ('nl', 'ns'):
    return softmax_graph(q, k)
  if kind == 'a2':
    return double_attention_graph(q, k)
  if kind == 'cc':
    return criss_cross_graph(q, k, grid)
  if kind == 'cgnl':
    return cgnl_graph(q, k)
  raise ValueError(kind)


# --- filters --------------------------------------------------------------------------------------

def chebyshev_matrix(a: np.ndarray, k: int) -> np.ndarray:
  """``T_k(-A) = sum_j c_j (-A)^j``, ``c`` the power coefficients of ``T_k`` (``cheb2poly``)."""
  coef = chebyshev.cheb2poly([0] * k + [1])
  return sum(c * np.linalg.matrix_power(-a, j) for j, c in enumerate(coef))


def term_matrix(a: np.ndarray, k: int, basis: str) -> np.ndarray:
  """``A^k`` (Eq. 4) or ``T_k(-A)`` (Eq. 3)."""
  return np.linalg.matrix_power(a, k) if basis == 'power' else chebyshev_matrix(a, k)


def spectral_block(x: np.ndarray, params: Mapping[str, Any], stats: Mapping[str, Any] | None, *,
                   affinity: str, order: int, basis: str,
                   reduction: int = 2) -> dict[str, np.ndarray]:
  """``z = x + ReLU(BN(sum_k W_k term_k))`` over all ``T*H*W`` positions (Eqs. 3-5).

  For ``'cgnl'`` the terms act on ``vec(Z)`` (``N*C`` entries) and are reshaped back to ``(N, C)``.
  Returns ``out`` and the per-sample dense ``graphs``.
  """
  x = np.asarray(x, np.float64)
  n, t, h, w, d = x.shape
  theta, phi, g = (conv1x1(x, params[name]).reshape(n, t * h * w, -1)
                   for name in ('theta', 'phi', 'g'))
  out = np.zeros((n, t * h * w, d))
  graphs = []
  for b in range(n):
    a = graph(affinity, theta[b], phi[b], (t, h, w))
    graphs.append(a)
    for k in range(order):
      if affinity == 'cgnl':
        term = (term_matrix(a, k, basis) @ g[b].reshape(-1)).reshape(g[b].shape)
      else:
        term = term_matrix(a, k, basis) @ g[b]
      out[b] += term @ np.asarray(params[f'w{k}']['kernel'], np.float64)[0, 0, 0]
  out = batch_norm(out.reshape(n, t, h, w, d), params['bn'], stats and stats['bn'])
  return {'out': x + np.maximum(out, 0), 'graphs': np.stack(graphs)}


# --- each block's own formula (one sample), as its paper writes it --------------------------------

def nonlocal_formula(theta, phi, g, w):
  """Eq. 11: ``O_i = sum_j f_ij g_j / sum_j f_ij  W``, ``f_ij = exp(theta_i^T phi_j)``."""
  out = []
  for i in range(len(theta)):
    f = np.array([np.exp(theta[i] @ phi[j]) for j in range(len(phi))])
    out.append(sum(f[j] * g[j] for j in range(len(g))) / f.sum() @ w)
  return np.stack(out)


def nonlocal_stage_formula(theta, phi, g, w):
  """NS, Eq. 16: ``O_i = sum_j f_ij (Z_j - Z_i) / sum_j f_ij  W``."""
  out = []
  for i in range(len(theta)):
    f = np.array([np.exp(theta[i] @ phi[j]) for j in range(len(phi))])
    out.append(sum(f[j] * (g[j] - g[i]) for j in range(len(g))) / f.sum() @ w)
  return np.stack(out)


def double_attention_formula(v, b, a, w):
  """A^2: ``g_n = sum_j softmax_j(b_:n)_j a_j`` (gather), ``z_i = sum_n softmax_n(v_i)_n g_n``
  (distribute), ``O = Z W``."""
  descriptors = [sum(p * a[j] for j, p in enumerate(softmax(b[:, c]))) for c in range(b.shape[1])]
  return np.stack([sum(p * descriptors[c] for c, p in enumerate(softmax(v[i]))) @ w
                   for i in range(len(v))])


def cgnl_formula(theta, phi, g, w, normalize=False):
  """CGNL, one group: ``y = <vec phi, vec g> theta``; normalised (B.4):
  ``y[n, c] = sum_(m, d) theta[n, c] phi[m, d] g[m, d] / sum_(m, d) theta[n, c] phi[m, d]``."""
  y = np.zeros_like(theta)
  for n in range(theta.shape[0]):
    for c in range(theta.shape[1]):
      num = sum(theta[n, c] * phi[m, d] * g[m, d] for m in range(phi.shape[0])
                for d in range(phi.shape[1]))
      den = sum(theta[n, c] * phi[m, d] for m in range(phi.shape[0]) for d in range(phi.shape[1]))
      y[n, c] = (num / den if den != 0 else 0.0) if normalize else num
  return y @ w


def criss_cross_formula(q, k, x, w, hw):
  """CC (Huang et al.): pixel ``(h, w)`` attends its column and its row, itself once, with one
  softmax of ``q^T k``; ``O = (sum_j a_j x_j) W``."""
  h_, w_ = hw
  pos = [(r, c) for r in range(h_) for c in range(w_)]
  out = []
  for i, (r, c) in enumerate(pos):
    js = [j for j, (r2, c2) in enumerate(pos) if c2 == c and r2 != r]
    js += [j for j, (r2, c2) in enumerate(pos) if r2 == r]
    att = softmax(np.array([q[i] @ k[j] for j in js]))
    out.append(sum(p * x[j] for p, j in zip(att, js)) @ w)
  return np.stack(out)


def table1_block(x: np.ndarray, params: Mapping[str, Any], stats: Mapping[str, Any] | None, *,
                 member: str) -> np.ndarray:
  """``z = x + ReLU(BN(O))`` with ``O`` the member's own formula (Appendix B, one ``W`` = the conv
  ``w``) on ``theta, phi, g`` over all ``T*H*W`` positions; CC attends within each frame."""
  x = np.asarray(x, np.float64)
  n, t, h, w, d = x.shape
  theta, phi, g = (conv1x1(x, params[name]).reshape(n, t * h * w, -1)
                   for name in ('theta', 'phi', 'g'))
  weight = np.asarray(params['w']['kernel'], np.float64)[0, 0, 0]
  formula = {'nl': nonlocal_formula, 'ns': nonlocal_stage_formula,
             'a2': double_attention_formula, 'cgnl': cgnl_formula}
  out = np.zeros((n, t * h * w, d))
  for b in range(n):
    if member == 'cc':
      frames = [slice(f * h * w, (f + 1) * h * w) for f in range(t)]
      out[b] = np.concatenate([criss_cross_formula(theta[b, s], phi[b, s], g[b, s], weight, (h, w))
                               for s in frames])
    else:
      out[b] = formula[member](theta[b], phi[b], g[b], weight)
  out = batch_norm(out.reshape(n, t, h, w, d), params['bn'], stats and stats['bn'])
  return x + np.maximum(out, 0)
