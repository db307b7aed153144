"""The math of relational self-attention (RSA; Kim et al., NeurIPS 2021;
``rsa_neurips2021_supplementary.md``).

Pure ``jax.numpy`` functions; the learned parts (the projection and the kernels ``P1, H1, H2, G,
I``) live in ``bat_jax.blocks.rsa``. The main paper's Eqs. 9-12 are known here through the
supplement's pseudo-code (Figure 1: Eqs. 9 and 10; Figure 2: Eqs. 11 and 12). Each equation comes
as a pair:

* the *naive* form (Eq. 9, Eq. 11) builds the ``M``-neighbourhood of every position explicitly
  (``unfold``, memory ``O(N M C)``) and forms the dynamic kernel over the ``M`` offsets;
* the *memory-saving* form (Eq. 10, Eq. 12) moves the neighbourhood sums into convolutions and
  contracts in the ``D``-dimensional latent space (memory ``O(N C D)``), the order the released code
  (KimManjin/RSA ``ops/rsa.py``) runs.

The two forms are the same function (``tests/test_rsa.py`` checks it in float64).

Notation (shapes without the leading ``(N, T, H, W)`` position axes):

* ``q (L, dk)``: the ``L`` queries of a position; ``k (dk,)`` its key; ``v (dv,)`` its value.
* ``M = m_t * m_h * m_w`` neighbourhood offsets, ordered row-major over ``(t, h, w)``; offset
  ``(a, b, c)`` is the position ``(t + a - m_t // 2, h + b - m_h // 2, w + c - m_w // 2)``, zero
  outside the clip (a convolution's zero padding, the released code's ``padding = k // 2``).
* Kernels carry the neighbourhood as leading axes ``(m_t, m_h, m_w, ...)``:
  ``h1 (m_t, m_h, m_w, dk, D)`` (``H1 in R^{MC x D}``), ``h2 (m_t, m_h, m_w, D)`` (``H2 in
  R^{M x D}``, the pseudo-code's shape), ``g (m_t, m_h, m_w, dv)`` (``G in R^{M x C}``).
* ``p1 (dk, D)`` decomposes the basic kernel ``P = P1 H2ᵀ`` (``P in R^{C x M}``); ``identity
  (dv, dv)`` is Eq. 12's ``I`` (learned in the released code, initialised to the identity).

Dynamic kernel (Eqs. 9-10): ``kappa_l = q_l P + vec(q_l ⊙ K) H``, ``H = H1 H2ᵀ in R^{MC x M}``.
Context (Eqs. 11-12): ``C = V I + V (Vᵀ G)`` (value plus the relational context ``(V Vᵀ) G``).
Output: ``y_l = kappa_lᵀ C`` (``dv`` channels per query).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array

_CONV_DIMS = ('NDHWC', 'DHWIO', 'NDHWC')


def l2_normalize(x: Array, axis: int = -1, eps: float = 1e-6) -> Array:
  """``x / sqrt(sum x^2 + eps)`` along ``axis`` (the released ``L2norm``; eps inside the root).

  Computed in float32 (float64 stays float64) and returned in ``x``'s dtype.
  """
  wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  norm = jnp.sqrt(jnp.sum(jnp.square(wide), axis=axis, keepdims=True) + eps)
  return (wide / norm).astype(x.dtype)


def softmax_over_positions(x: Array) -> Array:
  """Softmax of ``(N, T, H, W, C)`` over the ``T * H * W`` positions of each clip and channel.

  LambdaNetworks' key normalisation (Bello 2021, RSA supplement Table 2c's "norm. from [1]"):
  ``softmax(keys)`` over the context positions ``m`` in its ``einsum(softmax(keys), values,
  'bmk,bmv->bkv')``. Computed in float32 (float64 stays float64), returned in ``x``'s dtype.
  """
  n, t, h, w, c = x.shape
  wide = x.astype(jnp.promote_types(x.dtype, jnp.float32)).reshape(n, t * h * w, c)
  return jax.nn.softmax(wide, axis=1).reshape(n, t, h, w, c).astype(x.dtype)


def _padding(kernel_size: Sequence[int]) -> tuple[tuple[int, int], ...]:
  for k in kernel_size:
    if k < 1 or k % 2 == 0:
      raise ValueError(f'RSA kernel sizes must be odd and positive (padding k // 2 keeps the '
                       f'shape), got {tuple(kernel_size)}')
  return tuple((k // 2, k // 2) for k in kernel_size)


def unfold(x: Array, kernel_size: Sequence[int]) -> Array:
  """``(N, T, H, W, C) -> (N, T, H, W, M, C)``: every position's zero-padded neighbourhood.

  The pseudo-code's ``unfold(·, unfold_size=M)`` (Eqs. 9 and 11); memory ``M`` times the input.
  """
  pads = _padding(kernel_size)
  _, t, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), *pads, (0, 0)))
  mt, mh, mw = kernel_size
  return jnp.stack([xp[:, a:a + t, b:b + h, c:c + w]
                    for a in range(mt) for b in range(mh) for c in range(mw)], axis=-2)


def depthwise_conv(x: Array, kernel: Array) -> Array:
  """``(N, T, H, W, C) -> (N, T, H, W, C, E)``: channel ``c`` correlated with its own ``E`` filters.

  ``kernel (m_t, m_h, m_w, C, E)``; zero padding ``m // 2``. The pseudo-code's
  ``conv1d(key, H1, group=C, kernel=M)`` (Eq. 10): ``out[n, c, e] = sum_m x[n + m, c] k[m, c, e]``.
  """
  mt, mh, mw, c, e = kernel.shape
  if x.shape[-1] != c:
    raise ValueError(f'depthwise_conv: input has {x.shape[-1]} channels, kernel expects {c}')
  y = jax.lax.conv_general_dilated(
      x, kernel.reshape(mt, mh, mw, 1, c * e).astype(x.dtype), (1, 1, 1),
      _padding((mt, mh, mw)), dimension_numbers=_CONV_DIMS, feature_group_count=c)
  return y.reshape(*y.shape[:-1], c, e)


def channelwise_conv(x: Array, kernel: Array) -> Array:
  """``(N, T, H, W, C) -> (N, T, H, W, C, E)``: each channel correlated with the same ``E`` filters.

  ``kernel (m_t, m_h, m_w, E)``. The pseudo-code's ``conv1d(value, H2 or G, kernel=M)`` on the value
  reshaped to ``[B, NC, 1]`` (Eq. 12): ``out[n, c, e] = sum_m x[n + m, c] k[m, e]``. Channels are
  folded into the batch (the released code's ``(b v) 1 t h w``).
  """
  n, t, h, w, c = x.shape
  mt, mh, mw, e = kernel.shape
  xb = jnp.moveaxis(x, -1, 1).reshape(n * c, t, h, w, 1)
  y = jax.lax.conv_general_dilated(
      xb, kernel.reshape(mt, mh, mw, 1, e).astype(x.dtype), (1, 1, 1), _padding((mt, mh, mw)),
      dimension_numbers=_CONV_DIMS)
  return jnp.moveaxis(y.reshape(n, c, t, h, w, e), 1, -2)


def _flat(kernel: Array) -> Array:
  """``(m_t, m_h, m_w, ...) -> (M, ...)`` in the ``unfold`` order."""
  return kernel.reshape(-1, *kernel.shape[3:])


# --- the relational kernel (Figure 1) -----------------------------------------------------------

def relational_kernel_naive(q: Array, k: Array, h1: Array, h2: Array) -> Array:
  """Eq. 9: ``kappa^R_l = vec(q_l ⊙ K) H1 H2ᵀ`` over the explicit neighbourhood ``K (M, dk)``.

  ``q (N, T, H, W, L, dk)``, ``k (N, T, H, W, dk)``, ``h1 (m_t, m_h, m_w, dk, D)``,
  ``h2 (m_t, m_h, m_w, D)`` -> ``(N, T, H, W, L, M)``. Memory ``O(N L M dk)``.
  """
  keys = unfold(k, h1.shape[:3])                                     # (..., M, dk)
  hadamard = q[..., :, None, :] * keys[..., None, :, :]              # (..., L, M, dk)
  qk_h1 = jnp.einsum('...lmc,mcd->...ld', hadamard, _flat(h1))       # (..., L, D)
  return jnp.einsum('...ld,md->...lm', qk_h1, _flat(h2))


def relational_kernel(q: Array, k: Array, h1: Array, h2: Array) -> Array:
  """Eq. 10: the same kernel with ``H1`` applied to the key first, as a depthwise convolution.

  ``K_H1 = conv(k, H1)`` ``(..., dk, D)``, then ``q`` contracts ``dk`` and ``H2`` expands ``D`` to
  ``M``. Memory ``O(N dk D)``; same shapes as ``relational_kernel_naive``.
  """
  qk_h1 = jnp.einsum('...lc,...cd->...ld', q, depthwise_conv(k, h1))
  return jnp.einsum('...ld,md->...lm', qk_h1, _flat(h2))


# --- relational self-attention (Figure 2) -------------------------------------------------------

def rsa_naive(q: Array, k: Array, v: Array, *, h1: Array | None, h2: Array, p: Array | None,
              g: Array | None, identity: Array | None) -> Array:
  """Eq. 11: ``y_l = (q_l P + kappa^R_l)ᵀ (V I + V (Vᵀ G))`` with the explicit neighbourhood.

  ``q (N, T, H, W, L, dk)``, ``k (N, T, H, W, dk)``, ``v (N, T, H, W, dv)``; ``p (dk, M)`` the
  basic kernel (``P1 H2ᵀ`` for the decomposed form), ``h1``/``h2`` as in Eq. 9, ``g (m_t, m_h,
  m_w, dv)``, ``identity (dv, dv)``. Returns ``(N, T, H, W, L, dv)``.

  Variants (the released ``kernel_type`` / ``feat_type``): ``p = None`` drops the basic kernel,
  ``h1 = None`` the relational kernel; ``g = None`` makes the context ``V`` (``identity``
  ignored), ``identity = None`` with ``g`` makes it ``V (Vᵀ G)`` alone.
  """
  if p is None and h1 is None:
    raise ValueError('rsa_naive needs a basic kernel (p) or a relational kernel (h1)')
  kernel = 0.0
  if p is not None:
    kernel = kernel + jnp.einsum('...lc,cm->...lm', q, p)            # basic kernel (..., L, M)
  if h1 is not None:
    kernel = kernel + relational_kernel_naive(q, k, h1, h2)
  values = unfold(v, h2.shape[:3])                                    # (..., M, dv)
  if g is None:
    context = values
  else:
    v_g = jnp.einsum('...mc,me->...ce', values, _flat(g))             # Vᵀ G (..., dv, dv)
    context = jnp.einsum('...mc,...ce->...me', values, v_g)           # relational context
    if identity is not None:
      context = context + jnp.einsum('...mc,ce->...me', values, identity)
  return jnp.einsum('...lm,...me->...le', kernel, context)


def rsa(q: Array, k: Array, v: Array, *, h1: Array | None, h2: Array, p1: Array | None,
        g: Array | None, identity: Array | None) -> Array:
  """Eq. 12: RSA in the latent space, the released code's order.

  ``a_l = q_l (conv(k, H1) + P1)`` ``(L, D)``; ``F = (conv(v, H2))ᵀ (conv(v, G) + I)`` ``(D, dv)``;
  ``y_l = a_l F``. ``conv(v, ·)`` correlates every value channel with the same filters, so
  ``conv(v, H2) = (H2ᵀ V)ᵀ = Vᵀ H2`` and ``conv(v, G) = Vᵀ G``; ``H2`` and ``G`` run as one
  convolution.
  Memory ``O(N (dk D + dv (D + dv)))``.

  Same arguments as ``rsa_naive`` except ``p1 (dk, D)`` for ``P`` (``P = P1 H2ᵀ``). With ``h1`` and
  ``p1`` both ``None`` the query itself is the latent code (the released ``kernel_type='V'``:
  ``P1 = I``, needs ``D = dk``). Returns ``(N, T, H, W, L, dv)``.
  """
  d = h2.shape[-1]
  if h1 is None and p1 is None:
    if q.shape[-1] != d:
      raise ValueError(f'with neither H1 nor P1 the query is the latent code: dk={q.shape[-1]} '
                       f'must equal D={d}')
    latent = q
  else:
    key_h1 = 0.0
    if h1 is not None:
      key_h1 = depthwise_conv(k, h1)                                  # (..., dk, D)
    if p1 is not None:
      key_h1 = key_h1 + p1.astype(q.dtype)
    latent = jnp.einsum('...lc,...cd->...ld', q, key_h1)              # (..., L, D)
  filters = h2 if g is None else jnp.concatenate([h2, g.astype(h2.dtype)], axis=-1)
  conv_v = channelwise_conv(v, filters)                               # (..., dv, D [+ dv])
  h2_v = conv_v[..., :d]                                              # (H2 V)ᵀ (..., dv, D)
  if g is None:
    feature = h2_v
  else:
    mix = conv_v[..., d:]                                             # Vᵀ G (..., dv, dv)
    if identity is not None:
      mix = mix + identity.astype(mix.dtype)
    feature = jnp.einsum('...cd,...ce->...ed', h2_v, mix)             # (..., dv, D)
  return jnp.einsum('...ld,...ed->...le', latent, feature)


def merge_queries(y: Array) -> Array:
  """``(..., L, dv) -> (..., dv * L)``, value-major: output channel ``e * L + l``.

  The released code's ``einsum('abc,adc->adb', kernel, feature)`` is ``(positions, dv, L)``; its
  ``rearrange('(b t h w) nh v -> b (nh v) t h w')`` flattens that order (the labels read swapped).
  """
  return jnp.swapaxes(y, -1, -2).reshape(*y.shape[:-2], y.shape[-1] * y.shape[-2])
