"""Spectral non-local blocks (``chebysnl_unified_nonlocal.md``): ChebySNL and the unified filter.

Both blocks compute ``z = x + ReLU(BN(F(A, Z)))`` with ``Z = g(x)`` and a graph filter ``F(A, Z) =
sum_k term_k(A, Z) W_k`` (Eqs. 3-5) over all ``T*H*W`` positions; the graph ``A`` and the filter
terms are built by ``bat_jax.ops.affinity``. ``theta``, ``phi``, ``g`` are ``1x1x1`` convs ``D ->
C`` and each ``W_k`` a ``1x1x1`` conv ``C -> D``, all without bias; the BN scale starts at 0, so a
new block is an identity (released SNL code). See docs/nonlocal.md.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from bat_jax.models.layers import Conv, batch_norm
from bat_jax.ops import affinity as ops

Array = jax.Array


def _check(cls: type[nn.Module], channels: int, fields: Mapping[str, Any]) -> None:
  f = {fd.name: fd.default for fd in dataclasses.fields(cls)
       if fd.default is not dataclasses.MISSING}
  f.update(fields)
  if not isinstance(f['reduction'], int) or not 1 <= f['reduction'] <= channels:
    raise ValueError(f"model.block.reduction={f['reduction']!r} must be an integer in "
                     f'[1, {channels}] for a block on {channels} channels')
  if 'order' in f and (not isinstance(f['order'], int) or f['order'] < 2):
    raise ValueError(f"model.block.order={f['order']!r}: the filter needs at least the terms "
                     'k = 0, 1 (order >= 2); order 1 has no term with A')
  if 'affinity' in f and f['affinity'] not in ops.AFFINITY_KINDS:
    raise ValueError(f"model.block.affinity={f['affinity']!r}; allowed: {ops.AFFINITY_KINDS}")
  if 'basis' in f and f['basis'] not in ops.FILTER_BASES:
    raise ValueError(f"model.block.basis={f['basis']!r}; allowed: {tuple(ops.FILTER_BASES)}")


def _graph_filter_block(module: nn.Module, x: Array, train: bool, *, reduction: int, order: int,
                        affinity: str, basis: str) -> Array:
  """``x + ReLU(BN(sum_k W_k term_k))``; creates its convs and BN inside ``module``'s scope."""
  d = x.shape[-1]
  c = d // reduction
  conv = functools.partial(Conv, dtype=module.dtype)
  theta, phi, g = (ops.group_positions(conv(c, name=name)(x), 'spacetime')
                   for name in ('theta', 'phi', 'g'))
  apply_a, a = ops.spectral_affinity(affinity, theta, phi, x.shape[1:4])
  if a is not None and module.is_mutable_collection('intermediates'):
    module.sow('intermediates', 'affinity', a)
  terms = ops.FILTER_BASES[basis](apply_a, g, order)
  out = [conv(d, name=f'w{k}')(ops.ungroup_positions(term, 'spacetime', x.shape))
         for k, term in enumerate(terms)]
  out = batch_norm(train, zero_init=True, name='bn', dtype=module.dtype,
                   group_size=module.bn_group_size)(sum(out[1:], out[0]))
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
  """
  reduction: int = 2
  order: int = 2
  affinity: str = 'snl'
  basis: str = 'chebyshev'
  dtype: Any = jnp.float32
  bn_group_size: int = 0  # model.bn_group_size (layers.BatchNorm)

  @classmethod
  def validate(cls, channels: int, fields: Mapping[str, Any]) -> None:
    """Raises ``ValueError`` naming ``model.block.<field>`` when the settings cannot work."""
    _check(cls, channels, fields)

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    self.validate(x.shape[-1], dict(reduction=self.reduction, order=self.order,
                                    affinity=self.affinity, basis=self.basis))
    return _graph_filter_block(self, x, train, reduction=self.reduction, order=self.order,
                               affinity=self.affinity, basis=self.basis)
