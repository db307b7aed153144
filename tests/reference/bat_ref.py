"""Float64 NumPy reference of the BAT-Block, written from the equations with explicit loops and
dense matrices (``bat_cvpr2020.md`` Eqs. 1, 2, 5-7, Figure 3; ``bat_supplementary.md`` §2).

It shares no code with ``bat_jax``: the block grid, the sliding windows, the resize (a real
``np.kron``) and the transform (dense ``P' X Q'`` products) are all spelled out here.
"""

from __future__ import annotations

import numpy as np


def cells(length: int, size: int) -> list[tuple[int, int]]:
  """The block grid of an axis: cells of ``b = max(L // s, 1)`` positions, the last maybe short."""
  b = max(length // size, 1)
  return [(start, min(start + b, length)) for start in range(0, length, b)]


def row_pool(f: np.ndarray, size: int) -> np.ndarray:
  """Eq. 5 on one frame ``f (H, W, k)``: max over all columns and the rows of each cell."""
  return np.stack([f[a:b].max(axis=(0, 1)) for a, b in cells(f.shape[0], size)])


def col_pool(f: np.ndarray, size: int) -> np.ndarray:
  """Eq. 6: max over all rows and the columns of each cell."""
  return np.stack([f[:, a:b].max(axis=(0, 1)) for a, b in cells(f.shape[1], size)])


def sliding_logits(pooled: np.ndarray, kernel: np.ndarray, bias: np.ndarray, size: int,
                   groups: int) -> tuple[np.ndarray, np.ndarray]:
  """Supplement §2: slide the ``size``-tap conv with stride 1 over ``pooled (n, k)``, place each
  window's ``(groups, size, size)`` logits on the diagonal, average overlaps.

  Returns ``(logits (groups, n, n), covered (n, n))``. A grid smaller than the window is zero-padded
  for the conv and the window cropped.
  """
  n = pooled.shape[0]
  padded = np.concatenate([pooled, np.zeros((max(size - n, 0), pooled.shape[1]))])
  total = np.zeros((groups, n, n))
  count = np.zeros((n, n))
  for w in range(max(n - size + 1, 1)):
    out = bias.copy()
    for a in range(size):
      for c in range(pooled.shape[1]):
        out = out + padded[w + a, c] * kernel[a, c]
    window = out.reshape(groups, size, size)
    for i in range(size):
      for j in range(size):
        if w + i < n and w + j < n:
          total[:, w + i, w + j] += window[:, i, j]
          count[w + i, w + j] += 1
  covered = count > 0
  return np.where(covered, total / np.maximum(count, 1), 0.0), covered


def normalize(logits: np.ndarray, covered: np.ndarray, axis: int, kind: str,
              uncovered: str = 'zero_weight') -> np.ndarray:
  """Eq. 2: non-negative, L1-normalised along ``axis``. Entries no window covers: weight 0
  (``'zero_weight'``, supplement §2) or logit 0 normalised with the rest (``'zero_logit'``, the
  released video code's zero-filled matrix)."""
  logits = np.where(covered, logits, 0.0)
  keep = covered if uncovered == 'zero_weight' else np.ones_like(covered)
  if kind == 'softmax':
    e = np.exp(logits - logits.max(axis=axis, keepdims=True)) * keep
  else:
    e = 1.0 / (1.0 + np.exp(-logits)) * keep
  return e / e.sum(axis=axis, keepdims=True)


def full_matrix(m: np.ndarray, cell_len: int, length: int) -> np.ndarray:
  """``kron(m, I_b)`` cropped to ``length x length`` (Figure 3)."""
  return np.kron(m, np.eye(cell_len))[:length, :length]


def bilinear_upsample(x: np.ndarray, h: int, w: int) -> np.ndarray:
  """Half-pixel-centre bilinear resize of ``x (h0, w0, c)``, edges clamped."""
  def axis_weights(n_in: int, n_out: int) -> np.ndarray:
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
      src = min(max((i + 0.5) * n_in / n_out - 0.5, 0.0), n_in - 1.0)
      lo = int(np.floor(src))
      hi = min(lo + 1, n_in - 1)
      m[i, lo] += 1 - (src - lo)
      m[i, hi] += src - lo
    return m
  return np.einsum('ia,abc,jb->ijc', axis_weights(x.shape[0], h), x, axis_weights(x.shape[1], w))


def conv1x1(x: np.ndarray, p: dict) -> np.ndarray:
  kernel = np.asarray(p['kernel'], np.float64).reshape(-1, p['kernel'].shape[-1])
  y = x @ kernel
  return y + np.asarray(p['bias'], np.float64) if 'bias' in p else y


def bn(x: np.ndarray, p: dict, s: dict) -> np.ndarray:
  return ((x - np.asarray(s['mean'])) / np.sqrt(np.asarray(s['var'], np.float64) + 1e-5)
          * np.asarray(p['scale']) + np.asarray(p['bias']))


def relu(x: np.ndarray) -> np.ndarray:
  return np.maximum(x, 0.0)


def predict(pooled: np.ndarray, conv: dict, size: int, groups: int, axis: int,
            kind: str, uncovered: str = 'zero_weight') -> np.ndarray:
  kernel = np.asarray(conv['kernel'], np.float64)
  logits, covered = sliding_logits(pooled, kernel, np.asarray(conv['bias'], np.float64), size,
                                   groups)
  return normalize(logits, covered, axis, kind, uncovered)


def bat_block(x: np.ndarray, params: dict, stats: dict, *, groups: int, size: int,
              temporal_groups: int = 0, temporal_size: int = 4, normalization: str = 'softmax',
              matrix: str = 'block', sizes: tuple[int, int] | None = None,
              uncovered: str = 'zero_weight') -> dict:
  """The BAT-Block in eval mode on ``x (N, T, H, W, D)``; returns output and the dense P, Q, T."""
  x = np.asarray(x, np.float64)
  n, t, h, w, d = x.shape
  y = relu(bn(conv1x1(x, params['conv1']), params['bn1'], stats['bn1']))
  c = y.shape[-1]
  s_h, s_w = sizes or (size, size)
  pp, ps = params['predictor'], stats['predictor']
  f = relu(bn(conv1x1(y, pp['conv']), pp['bn'], ps['bn']))
  out = np.zeros_like(y)
  dense_p = np.zeros((n, t, groups, h, h))
  dense_q = np.zeros((n, t, groups, w, w))
  gc = c // groups
  for b in range(n):
    for τ in range(t):
      p = predict(row_pool(f[b, τ], s_h), pp['predict_p']['conv'], s_h, groups, -1,
                  normalization, uncovered)
      q = predict(col_pool(f[b, τ], s_w), pp['predict_q']['conv'], s_w, groups, -2,
                  normalization, uncovered)
      bh, bw = cells(h, s_h)[0][1], cells(w, s_w)[0][1]
      for g in range(groups):
        full_p, full_q = full_matrix(p[g], bh, h), full_matrix(q[g], bw, w)
        dense_p[b, τ, g], dense_q[b, τ, g] = full_p, full_q
        for ch in range(g * gc, (g + 1) * gc):
          xc = y[b, τ, :, :, ch]
          if matrix == 'downsample':
            small = np.array([[xc[r0:r1, c0:c1].mean() for c0, c1 in cells(w, s_w)]
                              for r0, r1 in cells(h, s_h)])
            out[b, τ, :, :, ch] = bilinear_upsample((p[g] @ small @ q[g])[..., None], h, w)[..., 0]
          else:
            out[b, τ, :, :, ch] = full_p @ xc @ full_q  # Eq. 1
  dense_t = None
  if temporal_groups:
    dense_t = np.zeros((n, temporal_groups, t, t))
    tgc = c // temporal_groups
    z = np.zeros_like(out)
    for b in range(n):
      frames = f[b].mean(axis=(1, 2))  # average over H, W: (T, k)
      pooled = np.stack([frames[a:e].mean(axis=0) for a, e in cells(t, temporal_size)])
      tm = predict(pooled, pp['predict_t']['conv'], temporal_size, temporal_groups, -1,
                   normalization, uncovered)
      bt = cells(t, temporal_size)[0][1]
      for g in range(temporal_groups):
        full_t = full_matrix(tm[g], bt, t)
        dense_t[b, g] = full_t
        for ch in range(g * tgc, (g + 1) * tgc):
          z[b, :, :, :, ch] = np.einsum('ts,shw->thw', full_t, out[b, :, :, :, ch])  # Eq. 7
    out = z
  y = relu(bn(conv1x1(out, params['conv2']), params['bn2'], stats['bn2']))
  y = relu(bn(conv1x1(y, params['conv3']), params['bn3'], stats['bn3']))
  return {'out': x + y, 'P': dense_p, 'Q': dense_q, 'T': dense_t}
