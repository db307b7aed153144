"""Learning-rate schedules and the optimizer (the papers' SGD recipes, ``configs/base_*.py``).

* peak lr = ``base_learning_rate * global_batch_size / lr_base_batch_size`` (linear scaling);
* ``schedule='step'``: linear warm-up over ``warmup_epochs``, then x``lr_decay_factor`` at
  each of ``lr_decay_epochs`` (absolute epochs; ImageNet: 5 / (30, 60, 80); Kinetics: 0 / (40, 80));
* the warm-up starts at ``warmup_start_factor * peak`` (default 0) and ramps per update
  (``warmup_granularity='step'``, default: update ``s`` uses ``start + (peak - start)(s + 1) / W``)
  or per epoch (``'epoch'``, the released SNL ``train_val.py``'s ``adjust_learning_rate``: epoch
  ``e < E`` uses ``np.linspace(start, peak, E)[e]`` for all its updates);
* ``schedule='cosine'``: linear warm-up, then cosine decay to 0 at the last step;
  ``config.cosine_span`` says over which steps the cosine runs: ``'after_warmup'`` (default: it
  starts at the peak when the warm-up ends) or ``'all_steps'`` (the released BAT video code's
  ``adjust_learning_rate`` in ``main.py``: ``lr = peak * (1 + cos(pi * step / N)) / 2`` with
  ``step`` counted from the first warm-up step and ``N`` all steps, so the warm-up's last step
  is followed by the cosine's value at that step; Mini-Kinetics);
* SGD with momentum (PyTorch's form: ``v = m v + g; p -= lr v``; optax's ``sgd`` is the same);
  ``config.nesterov`` (default False; True in the RSA recipe): PyTorch's Nesterov form
  ``v = m v + g; p -= lr (g + m v)``, optax's ``sgd(nesterov=True)`` (``g`` after weight decay);
* weight decay is L2 added to the gradient before momentum, as PyTorch's ``weight_decay``, on
  ``'all'`` parameters (released image code) or only ``'conv_fc_weights'`` — every ``kernel`` of
  rank >= 2 and the RSA layers' ``H1``, ``H2``, ``G``, ``P1``, ``I`` — leaving BN scales/biases
  and biases undecayed (released video code's ``TrainPolicy``, ``utils.py``: conv/linear weights
  decay 1, biases and BN decay 0; released RSA ``TSN.get_optim_policies``, ``ops/models.py``:
  the RSA module's ``P1`` and ``I`` join ``normal_weight``, its convolution weights too);
* ``config.bias_lr_mult`` (default 1): the learning rate of every conv / linear ``bias`` (a
  ``bias`` next to a ``kernel``: the BAT and NL blocks' convs, the classifier; not BN's shift)
  times this. 2 in the video recipes: the released BAT video ``TrainPolicy`` and RSA's
  ``get_optim_policies`` give biases ``lr_mult`` 2. SGD is linear in the learning rate, so this
  scales those leaves' final updates (momentum and Nesterov included);
* gradient clipping by global norm (``grad_clip_norm > 0``; 20 for Kinetics) on the raw
  gradients, before weight decay, like ``clip_grad_norm_`` before ``optimizer.step()``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

SCHEDULES = ('step', 'cosine')
WARMUP_GRANULARITY = ('step', 'epoch')
COSINE_SPANS = ('after_warmup', 'all_steps')
OPTIMIZERS = ('sgd',)
WEIGHT_DECAY_ON = ('all', 'conv_fc_weights')
# RSA layer parameters the released get_optim_policies decays (``normal_weight``) although they
# are not conv kernels here (bat_jax/blocks/rsa.py names them as the released module does).
RSA_DECAYED_PARAMS = frozenset({'H1', 'H2', 'G', 'P1', 'I'})


def _leaf_name(path: tuple[Any, ...]) -> str | None:
  return getattr(path[-1], 'key', None) if path else None


def conv_fc_bias_mask(params: Any) -> Any:
  """True on the ``bias`` of every conv / dense layer (a ``bias`` whose module has a ``kernel``);
  BatchNorm's ``bias`` (next to ``scale``) is False."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  layers = {jax.tree_util.keystr(path[:-1]) for path, _ in flat if _leaf_name(path) == 'kernel'}
  return jax.tree_util.tree_map_with_path(
      lambda path, _: _leaf_name(path) == 'bias' and jax.tree_util.keystr(path[:-1]) in layers,
      params)


def peak_learning_rate(config: ml_collections.ConfigDict) -> float:
  return config.base_learning_rate * config.global_batch_size / config.lr_base_batch_size


def learning_rate_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int,
                           num_train_steps: int) -> optax.Schedule:
  """lr as a function of the number of updates already applied (optax's ``count``)."""
  peak = peak_learning_rate(config)
  warmup = int(round(config.warmup_epochs * steps_per_epoch))
  if config.schedule == 'step':
    boundaries = {int(round(e * steps_per_epoch)) - warmup: config.lr_decay_factor
                  for e in config.lr_decay_epochs}
    main = optax.piecewise_constant_schedule(peak, boundaries)
  elif config.schedule == 'cosine':
    span = config.get('cosine_span', 'after_warmup')
    if span == 'after_warmup':
      main = optax.cosine_decay_schedule(peak, max(1, num_train_steps - warmup))
    elif span == 'all_steps':  # count after the warm-up; the cosine's phase is the global step
      total = max(1, num_train_steps)
      main = lambda count: peak * 0.5 * (  # noqa: E731
          1.0 + jnp.cos(jnp.pi * jnp.minimum(count + warmup, total) / total))
    else:
      raise ValueError(f'config.cosine_span={span!r}; allowed: {list(COSINE_SPANS)}')
  else:
    raise ValueError(f'config.schedule={config.schedule!r}; allowed: {list(SCHEDULES)}')
  if warmup <= 0:
    return main
  start = peak * float(config.get('warmup_start_factor', 0.0))
  if config.get('warmup_granularity', 'step') == 'epoch':
    epochs = int(config.warmup_epochs)
    slope = (peak - start) / (epochs - 1) if epochs > 1 else 0.0
    ramp = lambda count: start + slope * (count // steps_per_epoch)  # noqa: E731
  elif warmup > 1:
    # step s < warmup uses start + (peak - start) (s + 1) / warmup: the first update is not wasted
    # at lr 0, and the last warm-up step reaches the peak (Goyal et al.'s per-iteration ramp).
    ramp = optax.linear_schedule(start + (peak - start) / warmup, peak, warmup - 1)
  else:
    ramp = lambda count: peak  # noqa: E731
  return optax.join_schedules([ramp, main], [warmup])


def weight_decay_mask(params: Any, weight_decay_on: str) -> Any:
  """True on the leaves that are decayed."""
  if weight_decay_on == 'all':
    return jax.tree.map(lambda _: True, params)
  if weight_decay_on == 'conv_fc_weights':
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: (_leaf_name(path) == 'kernel' and leaf.ndim >= 2)
        or _leaf_name(path) in RSA_DECAYED_PARAMS, params)
  raise ValueError(f'config.weight_decay_on={weight_decay_on!r}; allowed: '
                   f'{list(WEIGHT_DECAY_ON)}')


def make_optimizer(config: ml_collections.ConfigDict,
                   schedule: optax.Schedule) -> optax.GradientTransformation:
  if config.optimizer != 'sgd':
    raise ValueError(f'config.optimizer={config.optimizer!r}; allowed: {list(OPTIMIZERS)}')
  parts = []
  if config.grad_clip_norm and config.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
  if config.weight_decay:
    parts.append(optax.add_decayed_weights(
        config.weight_decay,
        mask=lambda params: weight_decay_mask(params, config.weight_decay_on)))
  parts.append(optax.sgd(schedule, momentum=config.momentum,
                         nesterov=bool(config.get('nesterov', False))))
  bias_lr_mult = float(config.get('bias_lr_mult', 1.0))
  if bias_lr_mult != 1.0:
    parts.append(optax.masked(optax.scale(bias_lr_mult), conv_fc_bias_mask))
  return optax.chain(*parts)
