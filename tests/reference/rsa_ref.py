"""Float64 NumPy reference of the RSA layer, written from the paper's naive equations with explicit
neighbourhood loops (``rsa_neurips2021_supplementary.md`` Figures 1-2, Eqs. 9 and 11; the released
layer's projection, normalisation, output layout and stride from ``released_code_facts.md``).

It shares no code with ``bat_jax``: the neighbourhood of each position is gathered by a loop over
the offsets (zeros outside the clip), the relational kernel uses the undecomposed
``H = H1 H2 in R^{MC x M}`` and the basic kernel ``P = P1 H2``, and the relational context is the
``M x M`` self-correlation ``(V Vᵀ) G``, so neither of the released code's reorderings is used.
"""

from __future__ import annotations

import numpy as np


def l2n(x: np.ndarray, eps: float) -> np.ndarray:
  return x / np.sqrt(np.sum(x * x, axis=-1, keepdims=True) + eps)


def batch_norm_train(x: np.ndarray, scale: np.ndarray, bias: np.ndarray,
                     eps: float = 1e-5) -> np.ndarray:
  """BN with the batch's statistics per channel (last axis; biased variance)."""
  axes = tuple(range(x.ndim - 1))
  return (x - x.mean(axis=axes)) / np.sqrt(x.var(axis=axes) + eps) * scale + bias


def softmax_positions(x: np.ndarray) -> np.ndarray:
  """Softmax of ``(N, T, H, W, C)`` over each clip's positions, per channel (LambdaNetworks'
  keys: ``softmax(keys)`` over the context positions ``m``)."""
  out = np.zeros_like(x)
  for n in range(x.shape[0]):
    for c in range(x.shape[-1]):
      e = np.exp(x[n, ..., c] - x[n, ..., c].max())
      out[n, ..., c] = e / e.sum()
  return out


def normalize(q: np.ndarray, k: np.ndarray | None, v: np.ndarray, normalization: str,
              params: dict, eps: float):
  """Supplement Table 2c: ``q (..., L, dk)``, ``k``, ``v`` normalised; BNs in training mode."""
  if normalization == 'l2':
    return l2n(q, eps), (None if k is None else l2n(k, eps)), l2n(v, eps)
  if normalization == 'none':
    return q, k, v
  bn = lambda a, name: batch_norm_train(a, *(np.asarray(params[name][f], np.float64)  # noqa: E731
                                             for f in ('scale', 'bias')))
  q = bn(q.reshape(*q.shape[:-2], -1), 'q_bn').reshape(q.shape)
  v = bn(v, 'v_bn')
  if k is not None:
    k = bn(k, 'k_bn') if normalization == 'batch_norm' else softmax_positions(k)
  return q, k, v


def offsets(kernel_size) -> list[tuple[int, int, int]]:
  """Neighbourhood offsets in row-major ``(t, h, w)`` order, centred."""
  mt, mh, mw = kernel_size
  return [(a - mt // 2, b - mh // 2, c - mw // 2)
          for a in range(mt) for b in range(mh) for c in range(mw)]


def gather(x: np.ndarray, n: int, t: int, h: int, w: int, kernel_size) -> np.ndarray:
  """``(M, C)``: the values of ``x (N, T, H, W, C)`` around ``(t, h, w)``, zero outside."""
  _, nt, nh, nw, c = x.shape
  out = np.zeros((len(offsets(kernel_size)), c))
  for i, (dt, dh, dw) in enumerate(offsets(kernel_size)):
    tt, hh, ww = t + dt, h + dh, w + dw
    if 0 <= tt < nt and 0 <= hh < nh and 0 <= ww < nw:
      out[i] = x[n, tt, hh, ww]
  return out


def rsa_layer(x: np.ndarray, params: dict, *, features: int, num_queries: int, kernel_size,
              latent: int | None = None, strides: int = 1, kernel_type: str = 'VplusR',
              context_type: str = 'VplusR', normalization: str = 'l2',
              eps: float = 1e-6) -> np.ndarray:
  """The RSA layer on ``x (N, T, H, W, C_in)``; ``params`` in ``RSALayer``'s layout (BNs of
  ``normalization`` in training mode)."""
  x = np.asarray(x, np.float64)
  p64 = {k: np.asarray(v, np.float64) for k, v in params.items()
         if k != 'proj' and not k.endswith('_bn')}
  w_proj = np.asarray(params['proj']['kernel'], np.float64)[0, 0, 0]     # (C_in, hidden)
  num_q = num_queries
  dk = dv = features // num_q
  d = latent or dk
  m = int(np.prod(kernel_size))
  n_, t_, h_, w_, _ = x.shape

  proj = x @ w_proj
  q, k, v = normalize(proj[..., :num_q * dk].reshape(n_, t_, h_, w_, num_q, dk),
                      proj[..., num_q * dk:num_q * dk + dk] if kernel_type != 'V' else None,
                      proj[..., -dv:], normalization, params, eps)

  h2 = p64['H2'].reshape(m, d)                          # H2[m, e]
  # Basic kernel P (dk, M): P1 H2ᵀ; for kernel_type 'V' the query is the latent code (P1 = I).
  p = None
  if kernel_type == 'VplusR':
    p = p64['P1'] @ h2.T
  elif kernel_type == 'V':
    p = h2.T
  # Relational kernel H (M, dk, M): H[m', c, m] = sum_e H1[m', c, e] H2[m, e].
  big_h = None
  if kernel_type in ('R', 'VplusR'):
    h1 = p64['H1'].reshape(m, dk, d)
    big_h = np.zeros((m, dk, m))
    for mp in range(m):
      for c in range(dk):
        for mm in range(m):
          big_h[mp, c, mm] = np.dot(h1[mp, c], h2[mm])
  g = p64['G'].reshape(m, dv) if context_type in ('R', 'VplusR') else None
  eye = p64['I'] if context_type == 'VplusR' else None

  out = np.zeros((n_, t_, h_, w_, dv * num_q))
  for n in range(n_):
    for t in range(t_):
      for h in range(h_):
        for w in range(w_):
          vals = gather(v, n, t, h, w, kernel_size)                     # V (M, dv)
          if context_type == 'V':
            context = vals
          else:
            context = (vals @ vals.T) @ g                                # (V Vᵀ) G
            if eye is not None:
              context = context + vals @ eye
          keys = gather(k, n, t, h, w, kernel_size) if k is not None else None
          for l in range(num_q):
            ql = q[n, t, h, w, l]
            kappa = np.zeros(m)
            if p is not None:
              kappa += ql @ p                                             # basic kernel
            if big_h is not None:
              hadamard = ql[None, :] * keys                               # (M, dk)
              kappa += np.einsum('ac,acm->m', hadamard, big_h)            # relational kernel
            y = kappa @ context                                           # (dv,)
            for e in range(dv):
              out[n, t, h, w, e * num_q + l] = y[e]
  if strides > 1:
    out = avg_pool_3x3_s2(out)
  return out


def avg_pool_3x3_s2(y: np.ndarray) -> np.ndarray:
  """PyTorch ``AvgPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))``: pads count (divide by 9)."""
  n_, t_, h_, w_, c = y.shape
  ho, wo = (h_ - 1) // 2 + 1, (w_ - 1) // 2 + 1
  out = np.zeros((n_, t_, ho, wo, c))
  for i in range(ho):
    for j in range(wo):
      acc = np.zeros((n_, t_, c))
      for a in range(3):
        for b in range(3):
          hh, ww = 2 * i + a - 1, 2 * j + b - 1
          if 0 <= hh < h_ and 0 <= ww < w_:
            acc += y[:, :, hh, ww]
      out[:, :, i, j] = acc / 9.0
  return out

