"""Parameter and multiply-add counts without allocating weights.

Multiply-adds are read off the jaxpr of ``model.apply``: every ``conv_general_dilated`` and
``dot_general`` (the papers' "GFLOPs" count exactly these, as the authors' counters do), attributed
to the flax module that issued it through the equation's name stack. Nothing is compiled or run.
"""

from __future__ import annotations

import collections
import math
from typing import Any, Callable

import jax
import numpy as np


def _eqn_macs(eqn: Any) -> int:
  name = eqn.primitive.name
  if name == 'conv_general_dilated':
    rhs = eqn.invars[1].aval.shape
    dn = eqn.params['dimension_numbers']
    in_dim, spatial = dn.rhs_spec[1], dn.rhs_spec[2:]
    out = eqn.outvars[0].aval.shape
    return math.prod(out) * rhs[in_dim] * math.prod(rhs[d] for d in spatial)
  if name == 'dot_general':
    (lhs_contract, _), _ = eqn.params['dimension_numbers']
    lhs = eqn.invars[0].aval.shape
    return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
  return 0


def _sub_jaxprs(eqn: Any) -> list[tuple[Any, int]]:
  """(jaxpr, multiplicity) of the computations nested in an equation (jit, remat, scan, ...)."""
  found = []
  times = eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else 1
  for value in eqn.params.values():
    for v in (value if isinstance(value, (tuple, list)) else (value,)):
      if hasattr(v, 'eqns'):
        found.append((v, times))
      elif hasattr(v, 'jaxpr') and hasattr(v.jaxpr, 'eqns'):
        found.append((v.jaxpr, times))
  if eqn.primitive.name == 'cond':  # count one branch: the largest
    return found[:0] + sorted(found, key=lambda j: -_total(j[0]))[:1]
  return found


def _walk(jaxpr: Any, prefix: str, times: int, out: dict[tuple[str, str], int]) -> None:
  for eqn in jaxpr.eqns:
    stack = str(eqn.source_info.name_stack)
    scope = f'{prefix}/{stack}' if prefix and stack else (prefix or stack)
    macs = _eqn_macs(eqn)
    if macs:
      out[(scope, eqn.primitive.name)] += macs * times
    for sub, t in _sub_jaxprs(eqn):
      _walk(sub, scope, times * t, out)


def _total(jaxpr: Any) -> int:
  out: dict[tuple[str, str], int] = collections.defaultdict(int)
  _walk(jaxpr, '', 1, out)
  return sum(out.values())


def macs_table(fn: Callable[..., Any], *args: Any) -> dict[tuple[str, str], int]:
  """Multiply-adds of ``fn(*args)`` keyed by (name scope, primitive): ``('ResNet/res3_bat1/conv1',
  'conv_general_dilated')``. ``args`` may be ``jax.ShapeDtypeStruct`` trees: nothing is allocated.
  """
  out: dict[tuple[str, str], int] = collections.defaultdict(int)
  _walk(jax.make_jaxpr(fn)(*args).jaxpr, '', 1, out)
  return dict(out)


def macs_by_scope(table: dict[tuple[str, str], int],
                  primitive: str | None = None) -> dict[str, int]:
  """Sums a :func:`macs_table` over primitives (or keeps only ``primitive``), keyed by scope."""
  out: dict[str, int] = collections.defaultdict(int)
  for (scope, prim), value in table.items():
    if primitive is None or prim == primitive:
      out[scope] += value
  return dict(out)


def count_params(tree: Any) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def group_by_module(scoped: dict[str, int], depth: int = 1) -> dict[str, int]:
  """Sums scope counts by the first ``depth`` module names under the root (``res3_bat1``)."""
  out: dict[str, int] = collections.defaultdict(int)
  for scope, value in scoped.items():
    parts = scope.split('/')[1:1 + depth]
    out['/'.join(parts) or '(root)'] += value
  return dict(out)
