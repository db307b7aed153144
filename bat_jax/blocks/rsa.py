"""The relational self-attention (RSA) layer: a drop-in for a bottleneck's ``1x3x3`` convolution.

Kim et al., NeurIPS 2021 (``rsa_neurips2021_supplementary.md``), as released (KimManjin/RSA
``ops/rsa.py``, ``ops/ResNet.py``; ``released_code_facts.md`` § RSA):

  x (N, T, H, W, C_in) -> 1x1x1 conv C_in -> L*dk + dk + dv (no bias) -> q, k, v
    q: L2 over each query's dk channels; k, v: L2 over their channels (eps 1e-6 inside the root;
       ``normalization`` selects supplement Table 2c's other choices)
    latent kernel  a_l = q_l (conv(k, H1) + P1)                         (L, D)    Eq. 10
    context        F   = conv(v, H2)ᵀ (conv(v, G) + I)                   (D, dv)   Eq. 12
    y_l = a_l F, channels value-major (e * L + l)                       (N, T, H, W, dv * L)

``dk = dv = features / L``, ``D = latent`` (``dk`` by default). ``H1`` is a depthwise
``m_t x m_h x m_w`` conv ``dk -> dk * D``; ``H2`` (``1 -> D``) and ``G`` (``1 -> dv``) are
``m_t x m_h x m_w`` convs shared by every value channel; ``P1 (dk, D)`` and ``I (dv, dv)`` are
learned. The layer is followed by the bottleneck's usual BN + ReLU (not part of this module).
The math is in :mod:`bat_jax.ops.rsa`.

Initialisation (released code): the convs (projection, H1, H2, G) kaiming-normal fan-out (the
TSN ResNet's init loop over every ``Conv3d``); ``P1 ~ N(0, 1 / (M D))``; ``I`` the identity.

Stride: the released layer computes at full resolution and then average-pools ``1x3x3``, stride
``(1, 2, 2)``, padding ``(0, 1, 1)``, pads counted (PyTorch ``AvgPool3d`` default) whenever its
stride exceeds 1. The released TSN ResNet-50 never uses that path: RSA layers sit only in
non-first blocks of a stage (res2 {2}, res3 {1, 3}, res4 {1, 3, 5}, res5 {1}), whose stride is 1.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from bat_jax.blocks.fields import validate_fields
from bat_jax.nn.layers import Conv, batch_norm, kaiming_fan_out
from bat_jax.ops import rsa as rsa_ops

Array = jax.Array
KernelType = Literal['V', 'R', 'VplusR']
ContextType = Literal['V', 'R', 'VplusR']
KINDS = ('V', 'R', 'VplusR')
Normalization = Literal['l2', 'none', 'batch_norm', 'lambda']
NORMALIZATIONS = ('l2', 'none', 'batch_norm', 'lambda')

# The released TSN ResNet-50's RSA layers: conv2 of these residual blocks (supplement §1 "for every
# two ResNet blocks from the third block in res2 to the second block in res5"; train scripts'
# position=[[2],[1,3],[1,3,5],[1]]).
RELEASED_POSITIONS: dict[str, tuple[int, ...]] = {
    'res2': (2,), 'res3': (1, 3), 'res4': (1, 3, 5), 'res5': (1,)}


def _dims(features: int, num_queries: int, latent: int | None) -> tuple[int, int]:
  """``(dk = dv, D)``."""
  dk = features // num_queries
  return dk, (latent or dk)


class RSALayer(nn.Module):
  """Relational self-attention on ``(N, T, H, W, C_in)`` -> ``(N, T', H', W', features)``.

  Attributes:
    features: output channels ``C`` (the released layer: ``C_in = C``, the bottleneck's width).
    num_queries: ``L`` (8); ``dk = dv = features / L``.
    kernel_size: ``M = (m_t, m_h, m_w)``, odd, zero padding ``m // 2`` ((5, 7, 7) in the paper).
    latent: ``D``, the latent dimension of ``H = H1 H2`` and ``P = P1 H2``; ``None`` means ``dk``
      (the released default ``dd = 0``; supplement Table 2a uses 16).
    strides: spatial stride; 2 average-pools the output as the released code does (see module doc).
    kernel_type: ``'VplusR'`` basic + relational kernel; ``'R'`` relational only; ``'V'`` basic
      only, with the query as the latent code (``P = H2``, needs ``D = dk``; no key projected).
    context_type: ``'VplusR'`` value + relational context (``V I + V Vᵀ G``); ``'R'`` relational
      only (``V Vᵀ G``); ``'V'`` the value alone (no ``G``, ``I``).
    normalization: of ``q``, ``k``, ``v`` after the projection (supplement Table 2c):
      ``'l2'`` (default, released: each query's ``dk`` channels, ``k`` and ``v`` over their
      channels), ``'none'``, ``'batch_norm'`` (a BN on each of ``q``, ``k``, ``v``, per channel:
      ``q_bn``, ``k_bn``, ``v_bn``) or ``'lambda'`` (LambdaNetworks' scheme, the table's "norm.
      from [1]": BN on ``q`` and ``v``, ``k`` softmaxed over the clip's positions,
      ``rsa_ops.softmax_over_positions``).
    eps: inside the square root of the L2 normalisations (1e-6).
    train: batch statistics in the BNs of ``'batch_norm'`` / ``'lambda'`` (the enclosing block's
      mode; ``Bottleneck`` sets it).
  """
  features: int
  num_queries: int = 8
  kernel_size: Sequence[int] = (5, 7, 7)
  latent: int | None = None
  strides: int = 1
  kernel_type: KernelType = 'VplusR'
  context_type: ContextType = 'VplusR'
  normalization: Normalization = 'l2'
  eps: float = 1e-6
  train: bool = False
  dtype: Any = jnp.float32

  @classmethod
  def validate(cls, channels: int, fields: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` naming the field when the layer cannot run on ``channels`` inputs."""
    get = validate_fields(cls, fields, prefix='', choices=dict(
        kernel_type=KINDS, context_type=KINDS, normalization=NORMALIZATIONS)).get
    features, num_queries = get('features'), get('num_queries')
    if channels < 1:
      raise ValueError(f'RSA input needs channels, got {channels}')
    if num_queries < 1 or features % num_queries:
      raise ValueError(f'num_queries={num_queries} must divide features={features}')
    kernel_size = tuple(get('kernel_size'))
    if len(kernel_size) != 3 or any(k < 1 or k % 2 == 0 for k in kernel_size):
      raise ValueError(f'kernel_size={kernel_size} must be three odd sizes (m_t, m_h, m_w)')
    dk, d = _dims(features, num_queries, get('latent'))
    if get('latent') is not None and get('latent') < 1:
      raise ValueError(f"latent={get('latent')} must be >= 1 (or None for dk)")
    if get('kernel_type') == 'V' and d != dk:
      raise ValueError(f"kernel_type='V' uses the query as the latent code: latent={d} must "
                       f'equal dk={dk}')
    if get('strides') not in (1, 2):
      raise ValueError(f"strides={get('strides')}; the released layer downsamples by 2 only")

  @nn.compact
  def __call__(self, x: Array) -> Array:
    self.validate(x.shape[-1], {f: getattr(self, f) for f in (
        'features', 'num_queries', 'kernel_size', 'latent', 'strides', 'kernel_type',
        'context_type', 'normalization')})
    n, t, h, w, _ = x.shape
    num_q = self.num_queries
    dk, d = _dims(self.features, num_q, self.latent)
    dv = dk
    mt, mh, mw = (int(k) for k in self.kernel_size)
    m = mt * mh * mw
    with_key = self.kernel_type != 'V'

    proj = Conv(num_q * dk + (dk if with_key else 0) + dv, dtype=self.dtype, name='proj')(x)
    q, v = proj[..., :num_q * dk], proj[..., -dv:]
    k = proj[..., num_q * dk:num_q * dk + dk] if with_key else None
    q, k, v = self._normalize(q, k, v)
    q = q.reshape(n, t, h, w, num_q, dk)

    cast = lambda p: p.astype(self.dtype)  # noqa: E731
    # Kernels in Conv's (t, h, w, in / groups, out) layout; H1's outputs channel-major (c * D + e).
    h1 = p1 = g = identity = None
    if self.kernel_type in ('R', 'VplusR'):
      h1 = cast(self.param('H1', kaiming_fan_out, (mt, mh, mw, 1, dk * d), jnp.float32))
      h1 = h1.reshape(mt, mh, mw, dk, d)
    if self.kernel_type == 'VplusR':
      p1 = cast(self.param('P1', nn.initializers.normal(math.sqrt(1.0 / (m * d))), (dk, d),
                           jnp.float32))
    h2 = cast(self.param('H2', kaiming_fan_out, (mt, mh, mw, 1, d), jnp.float32))[..., 0, :]
    if self.context_type in ('R', 'VplusR'):
      g = cast(self.param('G', kaiming_fan_out, (mt, mh, mw, 1, dv), jnp.float32))[..., 0, :]
    if self.context_type == 'VplusR':
      identity = cast(self.param('I', lambda _, s, dt: jnp.eye(s[0], dtype=dt), (dv, dv),
                                 jnp.float32))

    y = rsa_ops.rsa(q, k, v, h1=h1, h2=h2, p1=p1, g=g, identity=identity)   # (N, T, H, W, L, dv)
    y = rsa_ops.merge_queries(y)
    if self.strides > 1:
      y = nn.avg_pool(y.reshape(n * t, h, w, y.shape[-1]), (3, 3), (2, 2), ((1, 1), (1, 1)),
                      count_include_pad=True)
      y = y.reshape(n, t, *y.shape[1:])
    return y


  def _normalize(self, q: Array, k: Array | None, v: Array
                 ) -> tuple[Array, Array | None, Array]:
    """``q (.., L dk)``, ``k (.., dk)``, ``v (.., dv)`` normalised as ``self.normalization``."""
    num_q = self.num_queries
    if self.normalization == 'l2':
      l2 = lambda a: rsa_ops.l2_normalize(a, eps=self.eps)  # noqa: E731
      dk = q.shape[-1] // num_q
      q = l2(q.reshape(*q.shape[:-1], num_q, dk)).reshape(q.shape)
      return q, (None if k is None else l2(k)), l2(v)
    if self.normalization == 'none':
      return q, k, v
    bn = lambda a, name: batch_norm(self.train, name=name, dtype=self.dtype)(a)  # noqa: E731
    q, v = bn(q, 'q_bn'), bn(v, 'v_bn')
    if k is not None:
      k = bn(k, 'k_bn') if self.normalization == 'batch_norm' else rsa_ops.softmax_over_positions(k)
    return q, k, v


def rsa_param_count(features: int, in_features: int | None = None, num_queries: int = 8,
                    kernel_size: Sequence[int] = (5, 7, 7), latent: int | None = None,
                    kernel_type: KernelType = 'VplusR',
                    context_type: ContextType = 'VplusR',
                    normalization: Normalization = 'l2') -> int:
  """Parameters of one ``RSALayer`` (equal to the released ``RSA`` module's).

  With ``C_in = C``, ``L = 8``, ``D = dk = C / 8``, ``M = 245``:
  ``C (C + C/4)`` projection + ``M dk D`` (H1) + ``M D`` (H2) + ``M dv`` (G) + ``dk D`` (P1) +
  ``dv^2`` (I) = 24,848 / 91,552 / 350,528 / 1,370,752 for C = 64 / 128 / 256 / 512. The BNs of
  ``normalization='batch_norm'`` / ``'lambda'`` add a scale and a bias per normalised channel.
  """
  in_features = features if in_features is None else in_features
  dk, d = _dims(features, num_queries, latent)
  dv, m = dk, math.prod(kernel_size)
  with_key = kernel_type != 'V'
  count = in_features * (num_queries * dk + (dk if with_key else 0) + dv) + m * d
  if kernel_type in ('R', 'VplusR'):
    count += m * dk * d
  if kernel_type == 'VplusR':
    count += dk * d
  if context_type in ('R', 'VplusR'):
    count += m * dv
  if context_type == 'VplusR':
    count += dv * dv
  if normalization == 'batch_norm':
    count += 2 * (num_queries * dk + (dk if with_key else 0) + dv)
  elif normalization == 'lambda':
    count += 2 * (num_queries * dk + dv)
  return count


def rsa_macs_per_position(features: int, in_features: int | None = None, num_queries: int = 8,
                          kernel_size: Sequence[int] = (5, 7, 7), latent: int | None = None,
                          kernel_type: KernelType = 'VplusR',
                          context_type: ContextType = 'VplusR') -> int:
  """Multiply-adds per output position at stride 1 in the Eq. 10/12 order (what fvcore, the
  released code's counter, counts: convolutions and einsums; normalisations and adds are free).

  Projection ``C_in (L dk + dk + dv)``; H1 ``M dk D``; ``q`` contraction ``L dk D``; H2 ``M dv D``;
  G ``M dv^2``; ``F`` ``dv^2 D``; output ``L dv D``.
  """
  in_features = features if in_features is None else in_features
  dk, d = _dims(features, num_queries, latent)
  dv, m, num_q = dk, math.prod(kernel_size), num_queries
  with_key = kernel_type != 'V'
  macs = in_features * (num_q * dk + (dk if with_key else 0) + dv) + m * dv * d + num_q * dv * d
  if kernel_type in ('R', 'VplusR'):
    macs += m * dk * d + num_q * dk * d
  if context_type in ('R', 'VplusR'):
    macs += m * dv * dv + dv * dv * d
  return macs
