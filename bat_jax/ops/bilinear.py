"""The math of the bilinear attentional transform (``bat_cvpr2020.md`` §3, ``bat_supplementary.md`` §2).

Pure ``jax.numpy`` functions; the learned parts (the convolutions that predict the matrices) live in
``bat_jax.blocks.bat``. Shapes: ``x`` is ``(B, H, W, C)`` (frames folded into ``B``), a spatial
matrix set is ``(B, k, n, n)`` for ``k`` channel groups on an ``n x n`` block grid.

Block layout. An axis of length ``L`` is cut into ``n`` cells of ``b = max(L // s, 1)`` positions,
``n = ceil(L / b)``: for ``L = s * b`` this is the paper's ``s x s`` block grid (Eqs. 5-6, Figure 3);
at another resolution ``n`` differs from ``s`` and the ``s x s`` windows slide (supplement §2). When
``b`` does not divide ``L`` the last cell is short: pooling ignores the missing positions and the
transform treats them as zeros (like a convolution's zero padding).
"""

from __future__ import annotations

from typing import Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Normalization = Literal['softmax', 'sigmoid']
Uncovered = Literal['zero_weight', 'zero_logit']
# How entries of a slid matrix that no window covers are normalised (``normalize``).
UNCOVERED: tuple[str, ...] = ('zero_weight', 'zero_logit')


def block_layout(length: int, size: int) -> tuple[int, int]:
  """``(n, b)``: number of cells and cell length for an axis of ``length`` and block size ``size``."""
  if length < 1 or size < 1:
    raise ValueError(f'block_layout needs positive sizes, got length={length}, size={size}')
  b = max(length // size, 1)
  return -(-length // b), b


def _pad_axis(x: Array, axis: int, new_length: int, value: float = 0.0) -> Array:
  extra = new_length - x.shape[axis]
  if extra == 0:
    return x
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, extra)
  return jnp.pad(x, widths, constant_values=value)


def cell_max_pool(f: Array, axis: int, n: int, b: int) -> Array:
  """Max over each cell of ``b`` positions along ``axis`` (the block part of Eqs. 5-6)."""
  axis = axis % f.ndim
  f = _pad_axis(f, axis, n * b, -jnp.inf)
  return jnp.max(f.reshape(*f.shape[:axis], n, b, *f.shape[axis + 1:]), axis=axis + 1)


def cell_mean_pool(f: Array, axis: int, n: int, b: int) -> Array:
  """Mean over each cell of ``b`` positions along ``axis`` (a short last cell: over what it has)."""
  axis = axis % f.ndim
  length = f.shape[axis]
  summed = jnp.sum(_pad_axis(f, axis, n * b).reshape(*f.shape[:axis], n, b, *f.shape[axis + 1:]),
                   axis=axis + 1)
  counts = np.minimum(b, length - b * np.arange(n)).astype(np.float32)
  shape = [1] * summed.ndim
  shape[axis] = n
  return summed / jnp.asarray(counts.reshape(shape), summed.dtype)


def row_column_pool(f: Array, n_h: int, b_h: int, n_w: int, b_w: int) -> tuple[Array, Array]:
  """Row and column max pooling of ``f (B, H, W, k)`` on the block grid (Eqs. 3-6).

  Returns ``rows (B, n_h, k)`` (max over all of W and over each cell of rows) and
  ``cols (B, n_w, k)`` (max over all of H and over each cell of columns).
  """
  rows = cell_max_pool(jnp.max(f, axis=2), 1, n_h, b_h)
  cols = cell_max_pool(jnp.max(f, axis=1), 1, n_w, b_w)
  return rows, cols


def window_placement(n: int, size: int) -> np.ndarray:
  """One-hot placement ``E (num_windows, size, n)``: window ``w`` covers rows/cols ``w..w+size-1``.

  With ``n >= size`` the ``n - size + 1`` windows slide with stride 1 along the diagonal
  (supplement §2, Figure 1). With ``n < size`` there is one window, cropped to its first ``n``
  rows and columns (its predictor saw zero-padded pooled features).
  """
  num_windows = max(n - size + 1, 1)
  e = np.zeros((num_windows, size, n), np.float32)
  for w in range(num_windows):
    for a in range(size):
      if w + a < n:
        e[w, a, w + a] = 1.0
  return e


def assemble_windows(window_logits: Array, n: int) -> tuple[Array, np.ndarray]:
  """Places ``(B, num_windows, k, s, s)`` window logits on the diagonal of an ``n x n`` grid.

  Overlapping entries are averaged; returns ``(logits (B, k, n, n), covered (n, n) bool)``.
  Entries no window covers have logit 0 here; :func:`normalize` decides what they become.
  """
  size = window_logits.shape[-1]
  if window_logits.shape[1] == 1 and n == size:  # the training resolution: one window, no overlap
    return window_logits[:, 0], np.ones((n, n), bool)
  e = window_placement(n, size)
  counts = np.einsum('wai,wbj->ij', e, e)
  summed = jnp.einsum('wai,Bwkab,wbj->Bkij', jnp.asarray(e, window_logits.dtype), window_logits,
                      jnp.asarray(e, window_logits.dtype))
  covered = counts > 0
  return summed / jnp.asarray(np.maximum(counts, 1.0), summed.dtype), covered


def normalize(logits: Array, axis: int, kind: Normalization,
              covered: np.ndarray | Array | None = None,
              uncovered: Uncovered = 'zero_weight') -> Array:
  """Non-negative entries summing to 1 along ``axis`` (Eq. 2), in float32.

  ``'softmax'``: ``exp(l) / sum exp(l)`` (the released video code).
  ``'sigmoid'``: ``sigmoid(l) / sum sigmoid(l)`` (the released image code), computed as a softmax
  of log-sigmoids so that it never divides 0 by 0 when every logit is very negative.
  ``covered``: the entries some sliding window predicts; the others are, by ``uncovered``:

  * ``'zero_weight'``: weight exactly 0 (supplement §2: "the values of uncovered regions are set
    to 0", read as the attention weights);
  * ``'zero_logit'``: logit 0 before the normalisation, so they keep ``exp(0)`` (``sigmoid(0)``)
    in the sum, as the released video code computes (it fills a zero matrix with the windows'
    logits and normalises the whole matrix).
  """
  if uncovered not in UNCOVERED:
    raise ValueError(f'model.block.uncovered={uncovered!r}; allowed: {UNCOVERED}')
  logits = logits.astype(jnp.float32)
  if covered is not None:
    logits = jnp.where(covered, logits, 0.0)
  if kind == 'sigmoid':
    logits = jax.nn.log_sigmoid(logits)
  elif kind != 'softmax':
    raise ValueError(f"normalization={kind!r}; allowed: 'softmax', 'sigmoid'")
  if covered is not None and uncovered == 'zero_weight':
    logits = jnp.where(covered, logits, -jnp.inf)
  return jax.nn.softmax(logits, axis=axis)


def block_transform(x: Array, p: Array, q: Array, b_h: int, b_w: int) -> Array:
  """``Y_c = P' X_c Q'`` per channel (Eq. 1) with ``P' = kron(P, I_{b_h})``, ``Q' = kron(Q, I_{b_w})``.

  ``x (B, H, W, C)``; ``p (B, k, n_h, n_h)``, ``q (B, k, n_w, n_w)``; group ``g`` of ``k`` owns the
  contiguous channels ``[g C/k, (g+1) C/k)``. The resized matrices are never built: ``H`` is
  reshaped to ``(n_h, b_h)`` and ``P`` contracts the cell index (Figure 3), one contraction per side.
  """
  bsz, h, w, c = x.shape
  k, n_h, n_w = p.shape[1], p.shape[-1], q.shape[-1]
  if c % k:
    raise ValueError(f'{c} channels do not split into {k} groups')
  x = _pad_axis(_pad_axis(x, 1, n_h * b_h), 2, n_w * b_w)
  x = x.reshape(bsz, n_h, b_h, n_w, b_w, k, c // k)
  p = p.astype(x.dtype)
  q = q.astype(x.dtype)
  y = jnp.einsum('Bgij,Bjavbgc->Biavbgc', p, x)
  y = jnp.einsum('Biavbgc,Bgvl->Bialbgc', y, q)
  return y.reshape(bsz, n_h * b_h, n_w * b_w, c)[:, :h, :w]


def temporal_transform(y: Array, t: Array, b_t: int) -> Array:
  """``Z_c = T' [Y_1c, ..., Y_Tc]`` (Eq. 7) with ``T' = kron(T, I_{b_t})``.

  ``y (B, T, H, W, C)``; ``t (B, tk, n_t, n_t)`` for ``tk`` contiguous channel groups.
  """
  bsz, length, h, w, c = y.shape
  tk, n_t = t.shape[1], t.shape[-1]
  if c % tk:
    raise ValueError(f'{c} channels do not split into {tk} temporal groups')
  y = _pad_axis(y, 1, n_t * b_t).reshape(bsz, n_t, b_t, h, w, tk, c // tk)
  z = jnp.einsum('Bgij,Bjahwgc->Biahwgc', t.astype(y.dtype), y)
  return z.reshape(bsz, n_t * b_t, h, w, c)[:, :length]


def cell_matmul(m: Array, z: Array) -> Array:
  """``m @ z`` batched over leading dimensions: ``m (*B, n, n)``, ``z (*B, n, r)`` -> ``(*B, n, r)``.

  The cell contractions of :func:`bat_transform` (``bat_jax.nn.xla_cpu.cell_matmul`` is the same
  function with a VJP that XLA:CPU runs faster).
  """
  batch = tuple(range(m.ndim - 2))
  return jax.lax.dot_general(m, z, (((m.ndim - 1,), (m.ndim - 2,)), (batch, batch)))


def bat_transform(y: Array, p: Array, q: Array, t: Array | None, b_h: int, b_w: int,
                  b_t: int = 1, matmul: Callable[[Array, Array], Array] = cell_matmul) -> Array:
  """The whole BA-transform of a clip: ``block_transform`` on every frame, then (``t`` given)
  ``temporal_transform``; the same function, computed in a group-major layout.

  ``y (N, T, H, W, C)``; ``p (N*T, k, n_h, n_h)``, ``q (N*T, k, n_w, n_w)`` per frame;
  ``t (N, tk, n_t, n_t)`` or None. The channels are transposed once to ``(N, k, T, H, W, C/k)`` and
  back once at the end; in between each side is one batched matmul whose batch dimensions lead and
  whose contracted cell index is adjacent to them, so XLA runs it with no transposes:

  * P: batch ``(N, k, T)``, contracts ``n_h`` against ``(b_h * W * C/k)`` rows;
  * Q: batch ``(N, k, T, H)`` (Q broadcast over the ``H`` rows, ``k * T * H * n_w^2`` values),
    contracts ``n_w`` against ``(b_w * C/k)``;
  * T: batch ``(N, tk, k/tk)`` (T broadcast over the ``k/tk`` spatial groups of a temporal group),
    contracts ``n_t`` against ``(b_t * H * W * C/k)``.

  The per-channel formulation (``block_transform``) needs a transpose on each side of each of its
  three contractions (``jnp.einsum`` moves the group axis next to the batch axis and back); this
  one is faster on CPU (docs/performance.md). Multiply-adds are identical. ``matmul``: the
  batched matmul, :func:`cell_matmul` or the same function with another VJP.
  """
  n, length, h, w, c = y.shape
  k, n_h, n_w = p.shape[1], p.shape[-1], q.shape[-1]
  if c % k:
    raise ValueError(f'{c} channels do not split into {k} groups')
  tk = t.shape[1] if t is not None else 0
  if tk and (c % tk or k % tk):  # temporal groups that cut spatial groups: per-channel form
    frames = block_transform(y.reshape(n * length, h, w, c), p, q, b_h, b_w)
    return temporal_transform(frames.reshape(n, length, h, w, c), t, b_t)
  cg = c // k
  hp, wp = n_h * b_h, n_w * b_w
  z = y.reshape(n, length, h, w, k, cg).transpose(0, 4, 1, 2, 3, 5)  # (N, k, T, H, W, C/k)
  z = _pad_axis(_pad_axis(z, 3, hp), 4, wp)
  pm = p.reshape(n, length, k, n_h, n_h).transpose(0, 2, 1, 3, 4).astype(z.dtype)
  qm = q.reshape(n, length, k, n_w, n_w).transpose(0, 2, 1, 4, 3).astype(z.dtype)  # (.., l, v)
  z = matmul(pm, z.reshape(n, k, length, n_h, b_h * wp * cg))
  z = z.reshape(n, k, length, hp, n_w, b_w * cg)
  qm = jnp.broadcast_to(qm[:, :, :, None], (n, k, length, hp, n_w, n_w))
  z = matmul(qm, z)
  z = z.reshape(n, k, length, hp, wp, cg)[:, :, :, :h, :w]
  if tk:
    n_t = t.shape[-1]
    z = _pad_axis(z, 2, n_t * b_t).reshape(n, tk, k // tk, n_t, b_t * h * w * cg)
    tm = jnp.broadcast_to(t.astype(z.dtype)[:, :, None], (n, tk, k // tk, n_t, n_t))
    z = matmul(tm, z)
    z = z.reshape(n, k, n_t * b_t, h, w, cg)[:, :, :length]
  return z.transpose(0, 2, 3, 4, 1, 5).reshape(n, length, h, w, c)


def resize_matrix(m: Array, b: int, length: int) -> Array:
  """The full-resolution matrix ``kron(m, I_b)`` cropped to ``length`` (Figure 3); for tools only."""
  eye = jnp.eye(b, dtype=m.dtype)
  full = jnp.einsum('...ij,ab->...iajb', m, eye)
  n = m.shape[-1]
  return full.reshape(*m.shape[:-2], n * b, n * b)[..., :length, :length]


def downsample_transform(x: Array, p: Array, q: Array, n_h: int, b_h: int, n_w: int,
                         b_w: int) -> Array:
  """Table 2's "downsampling" variant: average ``x`` to the ``n_h x n_w`` grid, transform it with
  the small ``P, Q``, and resize back bilinearly."""
  bsz, h, w, c = x.shape
  small = cell_mean_pool(cell_mean_pool(x, 1, n_h, b_h), 2, n_w, b_w)
  small = block_transform(small, p, q, 1, 1)
  return jax.image.resize(small, (bsz, h, w, c), 'bilinear').astype(x.dtype)


def reprojected_attention(p: Array, q: Array) -> Array:
  """Eq. 8: ``W = P^T A Q^T`` with ``A`` all ones, i.e. ``W[m, n] = (sum_i P[i, m]) (sum_j Q[n, j])``:
  how much input position ``(m, n)`` feeds the whole output. ``p (..., H, H)``, ``q (..., W, W)``."""
  return jnp.sum(p, axis=-2)[..., :, None] * jnp.sum(q, axis=-1)[..., None, :]


def contribution_map(p: Array, q: Array, i: int, j: int) -> Array:
  """Supplement Eq. 1: ``C^{ij}[m, n] = P[i, m] Q[n, j]``, the weight of input ``(m, n)`` in output
  ``(i, j)``. ``p (..., H, H)``, ``q (..., W, W)``; returns ``(..., H, W)``."""
  return p[..., i, :, None] * q[..., None, :, j]
