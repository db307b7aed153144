"""Block settings and insertion plans the recipes share (``bat_cvpr2020.md`` §4; released code)."""

from typing import Iterable

import ml_collections

from bat_jax.models import registry

# 5 blocks "evenly inserted on Res3 and Res4" (§4): after residual blocks i with i % 2 == 1.
FIVE_BLOCKS = {'res3': (1, 3), 'res4': (1, 3, 5)}


def every(modulus: dict[str, int], backbone: str) -> dict[str, tuple[int, ...]]:
  """The released scripts' plan: a block after residual block ``i`` when ``i % m == m - 1``.

  ResNet-50 ``{res3: 2, res4: 2}`` gives res3 {1, 3}, res4 {1, 3, 5}; the README's ResNet-101
  ``2 7`` gives res3 {1, 3}, res4 {6, 13, 20}; ResNet-152 ``4 12`` gives res3 {3, 7},
  res4 {11, 23, 35}. (These reproduce Table 6's 49.2 M and 64.9 M parameters.) Stage sizes are
  the ``backbone``'s in the model registry.
  """
  sizes = _stage_sizes(backbone, modulus, 'every')
  return {stage: tuple(i for i in range(sizes[stage]) if i % m == m - 1)
          for stage, m in modulus.items()}


def _stage_sizes(backbone: str, stages: Iterable[str], caller: str) -> dict[str, int]:
  """The registry's residual blocks per stage of ``backbone``; an error names a bad stage."""
  sizes = registry.stage_sizes(backbone)
  unknown = [s for s in stages if s not in sizes]
  if unknown:
    raise ValueError(f'{caller}: {backbone} has no stage {unknown}; allowed: {list(sizes)}')
  return sizes


def insertions(plan: dict[str, tuple[int, ...]]) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({k: tuple(v) for k, v in plan.items()})


def bat(groups: int, temporal_groups: int = 0, normalization: str = 'softmax',
        size: int = 7, temporal_size: int = 4) -> ml_collections.ConfigDict:
  """BAT-Block (§3): C = D/2, s = 7, channel dropout 0.2."""
  return ml_collections.ConfigDict(dict(
      type='bat', groups=groups, size=size, matrix='block', temporal_groups=temporal_groups,
      temporal_size=temporal_size, normalization=normalization, reduction=2, dropout_rate=0.2))


def nonlocal_block(instantiation: str = 'embedded_gaussian', mode: str = 'spacetime',
                   subsample: bool = True) -> ml_collections.ConfigDict:
  """Non-local block (Wang et al.), as in the released Caffe2 / PySlowFast code."""
  return ml_collections.ConfigDict(dict(
      type='nonlocal', instantiation=instantiation, mode=mode, subsample=subsample, reduction=2))


def snl() -> ml_collections.ConfigDict:
  """Chebyshev spectral non-local block (``chebysnl_unified_nonlocal.md`` Eq. 5)."""
  return ml_collections.ConfigDict(dict(type='snl'))


def before_last(stages: tuple[str, ...], backbone: str) -> dict[str, tuple[int, ...]]:
  """One block per stage "right before the last residual block of a stage" (Wang et al.'s NL
  Table 2c convention, which BAT Table 3 follows; the BAT paper does not give the index):
  after residual block ``n - 2``. ResNet-50: res3 {2}, res4 {4}, res5 {1}."""
  sizes = _stage_sizes(backbone, stages, 'before_last')
  return {stage: (sizes[stage] - 2,) for stage in stages}


def image_bat(groups: int = 4, **overrides) -> ml_collections.ConfigDict:
  """The released image code's BAT-Block: sigmoid + L1 normalisation of P, Q (``bat`` otherwise)."""
  cfg = bat(groups=groups, normalization='sigmoid')
  cfg.update(overrides)
  return cfg


# chebysnl §3.1 (CIFAR-100, PreResNet-56): "add 1 nonlocal-based block right after the second
# residual block in the early stage (res1)", C_s = C_1 / 2 unless a variant says otherwise.
# Variant -> (reduction C_1 / C_s, insertion plan); '' is the paper's default setting.
CIFAR_VARIANTS = {
    '': (2, {'res1': (1,)}),
    'cs1': (1, {'res1': (1,)}),       # Table 2 "No Reduction"
    'cs2': (2, {'res1': (1,)}),       # Table 2 "Reduction by Two Times" (= Table 3 Stage 1)
    'cs4': (4, {'res1': (1,)}),       # Table 2 "Reduction by Four Time"
    'stage1': (2, {'res1': (1,)}),    # Table 3 Stage 1
    'stage2': (2, {'res2': (1,)}),    # Table 3 Stage 2
    'stage3': (2, {'res3': (1,)}),    # Table 3 Stage 3
    'x3': (2, {'res1': (1,), 'res2': (1,), 'res3': (1,)}),  # Table 4 "(x3)", one per stage
}


def cifar_nonlocal(kind: str, variant: str = '') -> tuple[ml_collections.ConfigDict,
                                                         ml_collections.ConfigDict]:
  """``(model.block, model.insertions)`` for a chebysnl §3.1 row (``kind``) and column
  (``variant``, a key of ``CIFAR_VARIANTS``).

  ``nl``: Wang et al.'s block (embedded Gaussian, no subsampling: 32x32 maps); ``snl``: ChebySNL
  (Eq. 5); ``ns`` / ``a2`` / ``cgnl``: the member in chebysnl Table 1's form, ``Z W_0 + A Z W_1``
  on its graph with its own tied weights (``weights='table1'``: NS ``W_0 = -W_1 = -W``, A² and
  CGNL ``W_0 = 0``; Appendix B). ``--config.model.block.weights=free`` gives the free-weight form.
  """
  if variant not in CIFAR_VARIANTS:
    raise ValueError(f'CIFAR variant {variant!r}; allowed: {sorted(CIFAR_VARIANTS)}')
  reduction, plan = CIFAR_VARIANTS[variant]
  if kind == 'nl':
    block = dict(type='nonlocal', instantiation='embedded_gaussian', mode='spacetime',
                 subsample=False, reduction=reduction)
  elif kind == 'snl':
    block = dict(type='snl', reduction=reduction)
  elif kind in ('ns', 'a2', 'cgnl'):
    block = dict(type='chebyshev', affinity=kind, order=2, basis='power', weights='table1',
                 reduction=reduction)
  else:
    raise ValueError(f"CIFAR block {kind!r}; allowed: ['nl', 'ns', 'a2', 'cgnl', 'snl']")
  return ml_collections.ConfigDict(block), insertions(plan)
