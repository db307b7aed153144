"""Block settings and insertion plans the recipes share (``bat_cvpr2020.md`` §4; released code)."""

import ml_collections

# 5 blocks "evenly inserted on Res3 and Res4" (§4): after residual blocks i with i % 2 == 1.
FIVE_BLOCKS = {'res3': (1, 3), 'res4': (1, 3, 5)}


def every(modulus: dict[str, int], stage_sizes: dict[str, int]) -> dict[str, tuple[int, ...]]:
  """The released scripts' plan: a block after residual block ``i`` when ``i % m == m - 1``.

  ResNet-50 ``{res3: 2, res4: 2}`` gives res3 {1, 3}, res4 {1, 3, 5}; the README's ResNet-101
  ``2 7`` gives res3 {1, 3}, res4 {6, 13, 20}; ResNet-152 ``4 12`` gives res3 {3, 7},
  res4 {11, 23, 35}. (These reproduce Table 6's 49.2 M and 64.9 M parameters.)
  """
  return {stage: tuple(i for i in range(stage_sizes[stage]) if i % m == m - 1)
          for stage, m in modulus.items()}


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
