r"""Weights of one model into another: 2-D -> 3-D inflation and the transfer plan behind
``config.init_from`` and ``python -m bat_jax.tools.import_torch``.

Every kernel here is ``(t, h, w, in, out)`` and an image model runs as one-frame clips, so an
ImageNet ResNet (with or without BAT blocks) and a C2D video model have the *same* names and
shapes: a 2-D checkpoint goes into C2D unchanged. I3D differs only in the ``t`` of some kernels
(``conv1`` ``5x7x7``, the first conv of the inflated residual blocks ``3x1x1``); those are
*inflated* (Carreira & Zisserman; the released BAT video code's ``load_checkpoint``): the 2-D
kernel is repeated ``t`` times along time and divided by ``t``, so on a clip whose frames are all
the same image every inflated conv computes exactly the 2-D conv -- wherever its temporal window
lies inside the clip (the zero padding at the clip's ends changes the frames near them).

:func:`plan_transfer` compares the names and shapes of a source (checkpoint) with a target
(model) and sorts every name into one of:

* ``load``: same shape, copied;
* ``inflate``: source ``(1, h, w, i, o)``, target ``(t, h, w, i, o)``: inflated;
* ``new``: only in the model, and expected to start at its initial value in a 2-D -> 3-D
  transfer: the temporal predictor (``predictor/predict_t``) of a 3D BAT-Block fed from a 2D
  BAT-Block;
* ``reinit``: the classifier (``params/fc/*``) when its class count differs and the transfer is
  image -> video (``reinit_classifier``);
* ``ignored``: would load, but match one of the ``ignore`` regexes (``config.init_from_ignore``):
  kept at init;
* ``missing`` / ``unexpected`` / ``mismatched``: everything else that does not fit; each
  mismatch comes with a hint when the cause is known (BAT groups ``k``, block grid ``s``,
  class count).

``config.init_from`` applies a plan as the released BAT video code's ``--soft_resume`` does
(``main.py``: ``load_checkpoint(model, state_dict, strict=not args.soft_resume)``): whatever
fits is loaded, everything else keeps its fresh initialisation, and
:meth:`TransferPlan.init_report` says which is which (``WORKDIR/init_report.json``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from etils import epath

from bat_jax.models.registry import is_video
from bat_jax.training.checkpoint import (CheckpointMismatchError, flat_shapes, leaf_name,
                                         name_list, name_sections, partial_restore,
                                         resolve_state_dir, tree_metadata, variables_only)
from bat_jax.training.state import TrainState

Shape = tuple[int, ...]

_CLASSIFIER = re.compile(r'^params/fc/')
_TEMPORAL_PREDICTOR = re.compile(r'^(params|batch_stats)/(.*)/predictor/predict_t/')
_PREDICTOR_CONV = re.compile(r'/predictor/conv/(kernel|bias)$|/predictor/bn/')
_WINDOW_CONV = re.compile(r'/predictor/predict_([pqt])/conv/(kernel|bias)$')


def inflate_kernel(kernel: Any, t: int) -> Any:
  """``(1, h, w, i, o)`` -> ``(t, h, w, i, o)``: the 2-D kernel repeated ``t`` times along time
  and divided by ``t`` (numpy or jax arrays)."""
  if kernel.ndim != 5 or kernel.shape[0] != 1:
    raise ValueError(f'inflate_kernel expects a (1, h, w, in, out) kernel, got {kernel.shape}')
  if t < 1:
    raise ValueError(f'inflate_kernel: t={t} must be >= 1')
  xp = np if isinstance(kernel, np.ndarray) else jnp
  return xp.repeat(kernel, t, axis=0) / xp.asarray(t, kernel.dtype)


def is_inflatable(source: Shape, target: Shape) -> bool:
  """A 2-D kernel ``(1, h, w, i, o)`` going into a 3-D one ``(t, h, w, i, o)``, ``t > 1``."""
  return (len(source) == 5 and len(target) == 5 and source[0] == 1 and target[0] > 1
          and tuple(source[1:]) == tuple(target[1:]))


def _hint(name: str, source: Shape, target: Shape) -> str:
  """Why a shape differs, when the cause is a known config field."""
  if _CLASSIFIER.search(name):
    return (f'classifier: {source[-1]} classes in the checkpoint, {target[-1]} in the model '
            '(model.num_classes)')
  m = _WINDOW_CONV.search(name)
  if m and m.group(2) == 'kernel' and len(source) == 3 and len(target) == 3:
    field = 'model.block.temporal_size' if m.group(1) == 't' else 'model.block.size'
    if source[0] != target[0]:
      return (f'BAT block grid: window {source[0]} in the checkpoint, {target[0]} in the model '
              f'({field}; must match)')
    return (f'BAT groups: k={source[1]} in the checkpoint, k={target[1]} in the model '
            '(model.block.groups; the spatial k must match)')
  if m:  # a window conv's bias: s*s*k outputs
    return ('BAT predictor outputs s*s*k differ (model.block.groups / size / temporal_groups '
            'must match the checkpoint)')
  if _PREDICTOR_CONV.search(name):
    return (f'BAT groups: k={source[-1]} in the checkpoint, k={target[-1]} in the model '
            '(model.block.groups; the spatial k must match)')
  if len(source) == 5 and len(target) == 5 and source[1:] == target[1:]:
    return f'temporal kernel t={source[0]} in the checkpoint, t={target[0]} in the model'
  return ''


@dataclasses.dataclass
class TransferPlan:
  load: list[str]
  inflate: dict[str, int]  # name -> t
  new: list[str]  # kept at init: new in a 2-D -> 3-D transfer
  reinit: list[str]  # kept at init: classifier with another class count
  ignored: list[str]  # kept at init: would load, but config.init_from_ignore names them
  missing: list[str]  # in the model only
  unexpected: list[str]  # in the source only
  mismatched: list[tuple[str, Shape, Shape, str]]  # name, source, target, hint

  @property
  def kept_at_init(self) -> list[str]:
    """Names that take the model's initial values (whatever the cause)."""
    return sorted(set(self.new) | set(self.reinit) | set(self.ignored) | set(self.missing)
                  | {m[0] for m in self.mismatched})

  @property
  def unused(self) -> list[str]:
    """Names of the source that are not loaded (whatever the cause)."""
    return sorted(set(self.unexpected) | set(self.reinit) | set(self.ignored)
                  | {m[0] for m in self.mismatched}, key=_order)

  @property
  def ok(self) -> bool:
    """Nothing missing, unexpected or mismatched (``new`` / ``reinit`` are by design)."""
    return not (self.missing or self.unexpected or self.mismatched)

  def describe(self, limit: int = 20) -> str:
    lines = [f'  loaded: {len(self.load) + len(self.inflate)} arrays'
             + (f' ({len(self.inflate)} inflated 2-D -> 3-D)' if self.inflate else '')]
    if self.inflate:
      lines.append(name_list('  inflated (repeated along time / t):',
                             [f'{n} t={t}' for n, t in sorted(self.inflate.items())], limit))
    lines += name_sections([
        ('new in the 3-D model, kept at init', self.new),
        ('classifier re-initialised', self.reinit),
        ('kept at init by init_from_ignore', self.ignored),
        ('missing: in the model but not in the checkpoint', self.missing),
        ('unexpected: in the checkpoint but not in the model', self.unexpected),
        ('shape mismatched', [f'{n} checkpoint {s} vs model {t}' + (f'  [{h}]' if h else '')
                              for n, s, t, h in self.mismatched]),
    ], limit)
    return '\n'.join(lines)

  def as_dict(self) -> dict[str, Any]:
    return {'loaded': sorted(self.load), 'inflated': dict(sorted(self.inflate.items())),
            'new': self.new, 'reinit': self.reinit, 'ignored': self.ignored,
            'missing': self.missing,
            'unexpected': self.unexpected,
            'mismatched': [{'name': n, 'checkpoint': list(s), 'model': list(t), 'hint': h}
                           for n, s, t, h in self.mismatched]}

  def init_report(self) -> dict[str, Any]:
    """What a soft transfer (``config.init_from``) did with every name: ``loaded`` (same name
    and shape), ``inflated`` (name -> t), ``reinitialised`` (name -> why it keeps its fresh
    initialisation) and ``unused`` (checkpoint names not loaded), with their counts."""
    why = {n: 'new in the 3-D model (temporal predictor of a block loaded from 2-D)'
           for n in self.new}
    why.update({n: 'classifier: another class count (model.num_classes)' for n in self.reinit})
    why.update({n: 'named by config.init_from_ignore' for n in self.ignored})
    why.update({n: 'not in the checkpoint' for n in self.missing})
    why.update({n: f'shape: checkpoint {list(s)} vs model {list(t)}' + (f' ({h})' if h else '')
                for n, s, t, h in self.mismatched})
    reinitialised = {n: why[n] for n in sorted(why, key=_order)}
    return {'counts': {'loaded': len(self.load), 'inflated': len(self.inflate),
                       'reinitialised': len(reinitialised), 'unused': len(self.unused)},
            'loaded': sorted(self.load, key=_order),
            'inflated': dict(sorted(self.inflate.items())),
            'reinitialised': reinitialised, 'unused': self.unused}


def _order(name: str) -> tuple[bool, str]:
  return (not name.startswith('params/'), name)


def plan_transfer(source: Mapping[str, Shape], target: Mapping[str, Shape], *,
                  video_from_image: bool = False, ignore: Sequence[str] = ()) -> TransferPlan:
  """Sorts every name of ``source`` (checkpoint) and ``target`` (model) into a plan.

  ``video_from_image``: the transfer is an image model into a video model (``init_from`` of an
  ImageNet checkpoint): the temporal predictors of 3D BAT-Blocks whose 2D block is in the
  checkpoint are ``new``, and a classifier with another class count is ``reinit``. Without it
  those are ``missing`` / ``mismatched``. Inflation needs no flag: a ``(1, ...)`` kernel going
  into a ``(t, ...)`` one has no other meaning. ``ignore``: regexes (``re.search``) of names that
  keep their initial values although they would load (``ignored``).
  """
  patterns = [re.compile(p) for p in ignore]
  load, new, reinit, ignored, missing, mismatched = [], [], [], [], [], []
  inflate: dict[str, int] = {}
  source_blocks = {m.group(1) for n in source if (m := re.match(r'^params/(.*)/predictor/', n))}
  for name in sorted(target, key=_order):
    t_shape = tuple(target[name])
    if name not in source:
      m = _TEMPORAL_PREDICTOR.match(name)
      if video_from_image and m and m.group(2) in source_blocks:
        new.append(name)
      else:
        missing.append(name)
      continue
    s_shape = tuple(source[name])
    fits = s_shape == t_shape or is_inflatable(s_shape, t_shape)
    if fits and any(p.search(name) for p in patterns):
      ignored.append(name)
    elif s_shape == t_shape:
      load.append(name)
    elif is_inflatable(s_shape, t_shape):
      inflate[name] = t_shape[0]
    elif video_from_image and _CLASSIFIER.search(name):
      reinit.append(name)
    else:
      mismatched.append((name, s_shape, t_shape, _hint(name, s_shape, t_shape)))
  unexpected = sorted(set(source) - set(target), key=_order)
  return TransferPlan(load=load, inflate=inflate, new=new, reinit=reinit, ignored=ignored,
                      missing=missing, unexpected=unexpected, mismatched=mismatched)


def apply_plan(plan: TransferPlan, source: Mapping[str, Any],
               initial: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Flat ``{name: array}`` of every target name: source values where the plan loads them
  (inflated where it says so), ``initial`` ones for ``plan.kept_at_init`` (needed only when
  that is not empty)."""
  if plan.kept_at_init and initial is None:
    raise ValueError(f'{len(plan.kept_at_init)} names keep their initial values but no initial '
                     'values were given')
  out = {name: initial[name] for name in plan.kept_at_init}
  for name in plan.load:
    out[name] = source[name]
  for name, t in plan.inflate.items():
    out[name] = inflate_kernel(source[name], t)
  return out


# ---------------------------------------------------------------------------------------------
# config.init_from: soft-loading a checkpoint (the released ``--soft_resume``).


def source_model_config(state_dir: epath.Path) -> dict[str, Any] | None:
  """``model`` of the ``config.json`` beside the checkpoint (``<workdir>/config.json``, written by
  ``train.py`` and ``tools.import_torch``), or None."""
  for parent in (state_dir.parent.parent.parent, state_dir.parent.parent):
    path = parent / 'config.json'
    if path.exists():
      try:
        return dict(json.loads(path.read_text()).get('model') or {}) or None
      except (json.JSONDecodeError, AttributeError):
        return None
  return None


def _video_from_image(state_dir: epath.Path, model_config: Any) -> bool:
  """The transfer is an image checkpoint into a video model (2-D -> 3-D)."""
  if model_config is None:
    return False
  source = source_model_config(state_dir)
  if source is None or 'name' not in source:
    return False
  return is_video(model_config) and not is_video(source)


def load_init_variables(init_from: str, abstract_state: TrainState, state: TrainState,
                        ignore: Sequence[str] = (), *,
                        model_config: Any = None) -> tuple[Any, Any, dict[str, Any]]:
  """``(params, batch_stats, report)``: ``state``'s variables with every entry of ``init_from``
  that fits loaded, as the released BAT video code's ``--soft_resume`` (``main.py``:
  ``load_checkpoint(..., strict=not args.soft_resume)``).

  A name loads when the checkpoint has it with the model's shape; 2-D -> 3-D
  (:func:`inflate_kernel`): a ``(1, h, w, i, o)`` kernel going into a ``(t, h, w, i, o)`` one
  (I3D) is inflated, i.e. repeated ``t`` times along time and divided by ``t``; a C2D model takes
  an image checkpoint unchanged (same names and shapes). Every other name of the model keeps its
  value in ``state`` (its fresh initialisation): names the checkpoint lacks, names whose shapes
  differ (a new classifier, a BAT block with another ``groups`` k), the temporal predictor of a
  3D BAT-Block fed from a 2D one, and names matching an ``ignore`` regex
  (``config.init_from_ignore``). ``report`` (``TransferPlan.init_report``) lists loaded /
  inflated / re-initialised (with the reason and, for a shape, the config field behind it) /
  unused names; it is logged, and ``train.py`` writes it to ``WORKDIR/init_report.json``.
  ``model_config`` (the run's ``config.model``) tells whether the transfer is image -> video.

  Raises ``CheckpointMismatchError`` when nothing at all fits (another model entirely).
  """
  state_dir = resolve_state_dir(init_from)
  saved = variables_only(flat_shapes(tree_metadata(state_dir)))
  model = variables_only(flat_shapes(abstract_state.as_dict()))
  plan = plan_transfer(saved, model, ignore=ignore,
                               video_from_image=_video_from_image(state_dir, model_config))
  if not plan.load and not plan.inflate:
    raise CheckpointMismatchError(
        f'config.init_from={init_from!r} ({state_dir.parent}): no array of the checkpoint fits '
        f'config.model (same name and shape):\n{plan.describe()}')
  report = {'init_from': os.fspath(state_dir.parent), **plan.init_report()}
  counts = report['counts']
  logging.info('init_from %s: loaded %d arrays, inflated %d, re-initialised %d, %d of the '
               'checkpoint unused', state_dir.parent, counts['loaded'], counts['inflated'],
               counts['reinitialised'], counts['unused'])
  if report['reinitialised'] or report['unused']:
    logging.warning('init_from %s:\n%s', state_dir.parent, plan.describe())
  abstract_vars = {'params': abstract_state.params, 'batch_stats': abstract_state.batch_stats}
  wanted = set(plan.load) | set(plan.inflate)

  def target_leaf(path: Any, leaf: Any) -> Any:
    name = leaf_name(path)
    if name not in wanted:
      return None
    if name in plan.inflate:  # restored at the checkpoint's (2-D) shape, inflated below
      return jax.ShapeDtypeStruct(saved[name], leaf.dtype, sharding=getattr(leaf, 'sharding',
                                                                             None))
    return leaf

  target = _prune_none(jax.tree_util.tree_map_with_path(target_leaf, abstract_vars))
  loaded = partial_restore(state_dir, target) if target else {}
  loaded_flat = {leaf_name(p): v for p, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}
  abstract_flat = {leaf_name(p): v
                   for p, v in jax.tree_util.tree_flatten_with_path(abstract_vars)[0]}
  for name, t in plan.inflate.items():
    sharding = getattr(abstract_flat[name], 'sharding', None)
    loaded_flat[name] = jax.jit(lambda k, t=t: inflate_kernel(k, t),
                                out_shardings=sharding)(loaded_flat[name])
  merged = jax.tree_util.tree_map_with_path(
      lambda path, leaf: loaded_flat.get(leaf_name(path), leaf),
      {'params': state.params, 'batch_stats': state.batch_stats})
  return merged['params'], merged['batch_stats'], report


def _prune_none(tree: Any) -> Any:
  """``tree`` without ``None`` leaves and the mappings they leave empty."""
  if isinstance(tree, Mapping):
    out = {k: _prune_none(v) for k, v in tree.items()}
    return {k: v for k, v in out.items()
            if v is not None and not (isinstance(v, Mapping) and not v)}
  return tree
