"""The temporal shift module (TSM; Lin et al., ICCV 2019), as released (mit-han-lab/
temporal-shift-module ``ops/temporal_shift.py``; ``released_code_facts.md`` § TSM).

A zero-parameter, zero-multiply "pseudo-3D" operation (``nonlocal_cvpr2018_slides.md``, TSM
summary): part of the channels move one frame along time, so the following ``1x1`` / ``1x3x3``
convolutions of a 2-D (C2D / TSN) network mix neighbouring frames. With ``f = C // fold_div``:

  y[:, t, ..., c]  = x[:, t + 1, ..., c]   for c in [0, f)     (zero at t = T - 1)
  y[:, t, ..., c]  = x[:, t - 1, ..., c]   for c in [f, 2f)    (zero at t = 0)
  y[:, t, ..., c]  = x[:, t, ..., c]       for c in [2f, C)

``fold_div = 8`` shifts 1/8 of the channels each way, 1/4 in all (the slides' "1/4"). ``f = 0``
(fewer channels than ``fold_div``) leaves ``x`` unchanged, as the released code does.

"Residual shift" (the released ``place='blockres'``): the shift is applied to the input of conv1
inside each bottleneck's residual branch only; the shortcut adds the unshifted input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def temporal_shift(x: Array, fold_div: int = 8) -> Array:
  """Shifts channels ``[0, C/fold_div)`` back by one frame and the next ``C/fold_div`` forward.

  ``x (N, T, H, W, C)`` -> same shape and dtype; frames never mix across clips (the released
  code's ``(N*T, C, H, W) -> (N, T, C, H, W)`` view). Its transpose (the VJP) is the opposite shift,
  which is what the released in-place version's backward computes.
  """
  if x.ndim != 5:
    raise ValueError(f'temporal_shift expects (N, T, H, W, C), got shape {x.shape}')
  if fold_div < 1:
    raise ValueError(f'fold_div={fold_div} must be >= 1')
  fold = x.shape[-1] // fold_div
  if fold == 0:
    return x
  end = min(2 * fold, x.shape[-1])  # fold_div = 1 shifts every channel back (no forward part)
  zeros = lambda c: jnp.zeros_like(x[:, :1, ..., :c])  # noqa: E731
  from_next = jnp.concatenate([x[:, 1:, ..., :fold], zeros(fold)], axis=1)             # t <- t + 1
  from_prev = jnp.concatenate([zeros(end - fold), x[:, :-1, ..., fold:end]], axis=1)   # t <- t - 1
  return jnp.concatenate([from_next, from_prev, x[..., end:]], axis=-1)
