"""Spectral non-local blocks (``chebysnl_unified_nonlocal.md``): ChebySNL and the unified filter.

Both blocks compute ``z = x + ReLU(BN(F(A, Z)))`` with ``Z = g(x)`` and a graph filter ``F(A, Z) =
sum_k term_k(A, Z) W_k`` (Eqs. 3-5) over all ``T*H*W`` positions; the graph ``A`` and the filter
terms are built by ``bat_jax.ops.affinity``. ``theta``, ``phi``, ``g`` are ``1x1x1`` convs ``D ->
C`` and each ``W_k`` a ``1x1x1`` conv ``C -> D`` (or, in Table 1's form, every ``W_k`` is ``0`` or
``+-W`` of one conv ``w``), all without bias; the BN scale starts at 0, so a new block is an
identity (released SNL code). See docs/nonlocal.md.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from bat_jax.blocks.fields import validate_fields
from bat_jax.nn.layers import Conv, batch_norm, kaiming_fan_out
from bat_jax.ops import affinity as ops

Array = jax.Array
WEIGHTS = ('free', 'table1')
TABLE1_MEMBERS = ('nl', 'ns', 'a2', 'cgnl', 'cc')


def _check(cls: type[nn.Module], channels: int, fields: Mapping[str, Any],
           choices: Mapping[str, tuple[str, ...]] | None = None) -> None:
  f = validate_fields(cls, fields, choices=choices)
  if not isinstance(f['reduction'], int) or not 1 <= f['reduction'] <= channels:
    raise ValueError(f"model.block.reduction={f['reduction']!r} must be an integer in "
                     f'[1, {channels}] for a block on {channels} channels')
  if 'order' in f and (not isinstance(f['order'], int) or f['order'] < 2):
    raise ValueError(f"model.block.order={f['order']!r}: the filter needs at least the terms "
                     'k = 0, 1 (order >= 2); order 1 has no term with A')
  if f.get('weights') == 'table1' and (f['affinity'] not in TABLE1_MEMBERS or f['order'] != 2):
    raise ValueError(f"model.block.weights='table1' is chebysnl Table 1's first-order form of "
                     f'{TABLE1_MEMBERS}: needs model.block.affinity in that list (got '
                     f"{f['affinity']!r}) and model.block.order=2 (got {f['order']!r})")


class _Kernel(nn.Module):
  """The kernel ``(1, 1, 1, C, D)`` of a bias-free ``1x1x1`` conv, as ``Conv`` creates it, for a
  filter whose terms share one ``W``."""
  shape: tuple[int, int]

  @nn.compact
  def __call__(self) -> Array:
    return self.param('kernel', kaiming_fan_out, (1, 1, 1, *self.shape), jnp.float32)[0, 0, 0]


def _graph_filter_block(module: nn.Module, x: Array, train: bool, *, reduction: int, order: int,
                        affinity: str, basis: str, weights: str = 'free') -> Array:
  """``x + ReLU(BN(sum_k W_k term_k))``; creates its convs and BN inside ``module``'s scope.

  ``weights='free'``: one conv ``w{k}`` per term. ``'table1'``: one conv ``w`` and
  ``(W_0, W_1) = ops.table1_weights(affinity, W)`` (``Z W_0 + A Z W_1``); in the Chebyshev basis
  (``T_1 = -A``) ``W_1`` changes sign, so both bases give the same block.
  """
  d = x.shape[-1]
  c = d // reduction
  conv = functools.partial(Conv, dtype=module.dtype)
  theta, phi, g = (ops.group_positions(conv(c, name=name)(x), 'spacetime')
                   for name in ('theta', 'phi', 'g'))
  apply_a, a = ops.spectral_affinity(affinity, theta, phi, x.shape[1:4])
  if a is not None and module.is_mutable_collection('intermediates'):
    module.sow('intermediates', 'affinity', a)
  terms = ops.FILTER_BASES[basis](apply_a, g, order)
  if weights == 'table1':
    w0, w1 = ops.table1_weights(affinity, _Kernel((c, d), name='w')().astype(module.dtype))
    sign = -1 if basis == 'chebyshev' else 1
    y = ops.ungroup_positions(ops.graph_filter(terms, (w0, sign * w1)), 'spacetime', x.shape)
  else:
    out = [conv(d, name=f'w{k}')(ops.ungroup_positions(term, 'spacetime', x.shape))
           for k, term in enumerate(terms)]
    y = sum(out[1:], out[0])
  out = batch_norm(train, zero_init=True, name='bn', dtype=module.dtype,
                   group_size=module.bn_group_size)(y)
  return x + nn.relu(out)


class SpectralNonLocalBlock(nn.Module):
  """ChebySNL (Eq. 5, released SNL code): ``z = x + ReLU(BN(W0 Z + W1 A Z))``,
  ``A = D^-1/2 M_hat D^-1/2``, ``M_hat = (M + M^T)/2``, ``M = ReLU(theta)^T ReLU(phi)``.

  Attributes:
    reduction: ``C = D // reduction`` channels for ``theta``, ``phi`` and ``g`` (2 in the paper).
  """
  reduction: int = 2
  dtype: Any = jnp.float32
  bn_group_size: int = 0  # model.bn_group_size (layers.BatchNorm)

  @classmethod
  def validate(cls, channels: int, fields: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` naming ``model.block.<field>`` when the settings cannot work."""
    _check(cls, channels, fields)

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    self.validate(x.shape[-1], dict(reduction=self.reduction))
    return _graph_filter_block(self, x, train, reduction=self.reduction, order=2, affinity='snl',
                               basis='power')


class ChebyshevNonLocalBlock(nn.Module):
  """The unified non-local filter (Eqs. 3-4, Table 1): ``z = x + ReLU(BN(sum_k W_k term_k))``.

  Attributes:
    reduction: ``C = D // reduction`` channels for ``theta``, ``phi`` and ``g``.
    order: ``K``, the number of filter terms ``k = 0..K-1`` (2 is ChebySNL's first order).
    affinity: the graph ``A`` (chebysnl Table 1): ``'snl'`` (symmetric-normalised ReLU kernel,
      Eq. 5), ``'nl'`` / ``'ns'`` (row-normalised ``exp(theta^T phi)``, i.e. a softmax), ``'a2'``
      (``softmax_n(theta) softmax_j(phi)^T``), ``'cgnl'`` (rank-one ``vec(theta) vec(phi)^T`` on
      the ``N*C`` channel-position vertices), ``'cc'`` (softmax over each position's row and column
      within its frame).
    basis: ``'chebyshev'``: ``term_k = T_k(-A) Z`` by the recursion of Eq. 3; ``'power'``:
      ``term_k = A^k Z`` as written in Eq. 4. Both span the same filters; as ``k`` grows ``A^k Z``
      collapses onto ``A``'s leading eigenvectors while ``T_k(-A) Z`` does not (better conditioned).
    weights: ``'free'``: an independent ``W_k`` per term (convs ``w0 .. w{K-1}``). ``'table1'``:
      the member's own weights (Table 1, Appendix B) from one conv ``w``: ``F = -Z W + A Z W`` for
      NS (Eq. 19), ``F = A Z W`` (``W_0 = 0``) for NL, A^2, CGNL and CC; needs ``order=2`` and
      ``affinity`` one of those five.
  """
  reduction: int = 2
  order: int = 2
  affinity: str = 'snl'
  basis: str = 'chebyshev'
  weights: str = 'free'
  dtype: Any = jnp.float32
  bn_group_size: int = 0  # model.bn_group_size (layers.BatchNorm)

  @classmethod
  def validate(cls, channels: int, fields: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` naming ``model.block.<field>`` when the settings cannot work."""
    _check(cls, channels, fields, choices=dict(
        affinity=ops.AFFINITY_KINDS, basis=tuple(ops.FILTER_BASES), weights=WEIGHTS))

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    self.validate(x.shape[-1], dict(reduction=self.reduction, order=self.order,
                                    affinity=self.affinity, basis=self.basis,
                                    weights=self.weights))
    return _graph_filter_block(self, x, train, reduction=self.reduction, order=self.order,
                               affinity=self.affinity, basis=self.basis, weights=self.weights)
