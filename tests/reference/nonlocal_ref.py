"""Float64 NumPy reference of the non-local block, written from Wang et al. (CVPR 2018) and the
released code (``released_code_facts.md``, "Non-local") with explicit loops over query positions.

It shares no code with ``bat_jax``: the ``(1, 2, 2)`` max pool, the set of keys each query sees in
each mode, the four pairwise functions (the concatenation one on a real ``[theta_i; phi_j]`` vector)
and the eval/train batch norm are all spelled out here.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

EPS = 1e-5


def conv1x1(x: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
  """A ``1x1x1`` conv ``(..., D) -> (..., C)``: a ``(1, 1, 1, D, C)`` kernel and optional bias."""
  y = np.einsum('...d,dc->...c', x, np.asarray(p['kernel'], np.float64)[0, 0, 0])
  return y + np.asarray(p['bias'], np.float64) if 'bias' in p else y


def max_pool_122(x: np.ndarray) -> np.ndarray:
  """``(1, 2, 2)`` max pool, stride ``(1, 2, 2)``, no padding (floor, as PyTorch's MaxPool3d)."""
  n, t, h, w, c = x.shape
  out = np.empty((n, t, h // 2, w // 2, c))
  for i in range(h // 2):
    for j in range(w // 2):
      out[:, :, i, j] = x[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(2, 3))
  return out


def batch_norm(y: np.ndarray, p: Mapping[str, Any], stats: Mapping[str, Any] | None) -> np.ndarray:
  """Eval: running statistics ``stats``; train (``stats=None``): biased batch statistics."""
  if stats is None:
    mean, var = y.mean(axis=(0, 1, 2, 3)), y.var(axis=(0, 1, 2, 3))
  else:
    mean, var = np.asarray(stats['mean'], np.float64), np.asarray(stats['var'], np.float64)
  scale, bias = np.asarray(p['scale'], np.float64), np.asarray(p['bias'], np.float64)
  return (y - mean) / np.sqrt(var + EPS) * scale + bias


def keys_of(mode: str, t: int, h: int, w: int, grid: tuple[int, int, int]) -> list[tuple]:
  """The key positions ``(t', h', w')`` on the key grid that the query at ``(t, h, w)`` attends."""
  kt, kh, kw = grid
  everything = [(a, b, c) for a in range(kt) for b in range(kh) for c in range(kw)]
  if mode == 'spacetime':
    return everything
  if mode == 'space':
    return [k for k in everything if k[0] == t]
  if mode == 'time':
    return [k for k in everything if k[1:] == (h, w)]
  raise ValueError(mode)


def pairwise(instantiation: str, q: np.ndarray, keys: np.ndarray, w_f: np.ndarray | None,
             c: int) -> np.ndarray:
  """``f(x_i, x_j) / C(x)`` for one query ``q (C,)`` against ``keys (Np, C)``."""
  if instantiation in ('embedded_gaussian', 'gaussian'):
    logits = keys @ q * (c ** -0.5 if instantiation == 'embedded_gaussian' else 1.0)
    e = np.exp(logits - logits.max())  # exp(x_i^T x_j), the common factor cancels in the ratio
    return e / e.sum()
  if instantiation == 'dot_product':
    return keys @ q / len(keys)
  if instantiation == 'concatenation':
    return np.array([max(np.concatenate([q, k]) @ w_f, 0.0) for k in keys]) / len(keys)
  raise ValueError(instantiation)


def nonlocal_block(x: np.ndarray, params: Mapping[str, Any], stats: Mapping[str, Any] | None, *,
                   instantiation: str, mode: str, subsample: bool,
                   reduction: int = 2) -> dict[str, np.ndarray]:
  """``z = x + BN(W y)``, ``y_i = sum_j f_ij g_j``. Returns ``out`` and the per-query ``affinity``
  (``{(n, t, h, w): f_i}``)."""
  x = np.asarray(x, np.float64)
  n, t, h, w, d = x.shape
  c = d // reduction
  pooled = max_pool_122(x) if subsample else x
  g = conv1x1(pooled, params['g'])
  if instantiation == 'gaussian':
    theta, phi = x, pooled
  else:
    theta, phi = conv1x1(x, params['theta']), conv1x1(pooled, params['phi'])
  w_f = np.asarray(params['w_f'], np.float64)[:, 0] if instantiation == 'concatenation' else None
  y = np.zeros((n, t, h, w, c))
  affinity = {}
  for b in range(n):
    for i in np.ndindex(t, h, w):
      keys = keys_of(mode, *i, pooled.shape[1:4])
      f = pairwise(instantiation, theta[(b, *i)], np.stack([phi[(b, *k)] for k in keys]), w_f, c)
      y[(b, *i)] = sum(fj * g[(b, *k)] for fj, k in zip(f, keys))
      affinity[(b, *i)] = f
  out = x + batch_norm(conv1x1(y, params['w']), params['bn'], stats and stats['bn'])
  return {'out': out, 'affinity': affinity}
