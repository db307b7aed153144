"""Checkpoints: Orbax ``CheckpointManager`` with the ``ocp.args`` API; ``resolve_state_dir`` finds
the checkpoint ``config.init_from`` names (``training/transfer.py`` loads it).

A checkpoint ``WORKDIR/checkpoints/<step>/`` holds three items:

* ``state``: the ``TrainState`` pytree (step, params, batch_stats, opt_state, rng)
  — ``ocp.args.StandardSave``, written asynchronously;
* ``meta``: JSON (``ocp.args.JsonSave``): the per-step train metrics of the current, not yet
  logged window, so the next ``metrics.jsonl`` line after a resume is the one an uninterrupted
  run writes; and the process count;
* ``data``: every process's data-iterator state, one ``process_<i>-of-<n>.json`` each
  (``DataStateSave``, below; like grain's own orbax handler, but it stores a state dict taken when
  the batch was drawn rather than asking a live iterator).

Before restoring, the checkpoint's tree metadata is compared with the model's parameters and
batch statistics, so a checkpoint of another model fails with the mismatched names instead of an
opaque Orbax/tensorstore error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from bat_jax.training.state import TrainState

_MAX_LISTED = 20


# ---------------------------------------------------------------------------------------------
# Per-process data iterator state.


class DataStateHandler(ocp.CheckpointHandler):
  """Saves / restores one JSON state per process: ``process_<i>-of-<n>.json``."""

  def save(self, directory: epath.Path, args: 'DataStateSave') -> None:
    name = f'process_{jax.process_index()}-of-{jax.process_count()}.json'
    (directory / name).write_text(json.dumps(args.state, sort_keys=True))

  def restore(self, directory: epath.Path, args: 'DataStateRestore | None' = None) -> Any:
    name = f'process_{jax.process_index()}-of-{jax.process_count()}.json'
    path = directory / name
    if not path.exists():
      saved = sorted(p.name for p in directory.iterdir())
      raise ValueError(f'{directory} has no data-iterator state for this process ({name}; saved: '
                       f'{saved}). Resume with the process count the run was saved with.')
    return json.loads(path.read_text())

  def metadata(self, directory: epath.Path) -> None:
    return None

  def structure(self, directory: epath.Path) -> None:
    return None

  def finalize(self, directory: epath.Path) -> None:
    pass

  def close(self) -> None:
    pass


@ocp.args.register_with_handler(DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  state: Any


@ocp.args.register_with_handler(DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  pass


# ---------------------------------------------------------------------------------------------
# Comparing a checkpoint's tree with the model's.


def leaf_name(path: Sequence[Any]) -> str:
  """A pytree path as ``'params/res2_block0/conv1/kernel'``."""
  parts = []
  for p in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(p, attr):
        parts.append(str(getattr(p, attr)))
        break
    else:
      parts.append(str(p))
  return '/'.join(parts)


def flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """``{'params/res2_block0/conv1/kernel': shape}`` for arrays, ShapeDtypeStructs or Orbax
  ``ArrayMetadata`` leaves."""
  leaves = jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: hasattr(x, 'shape') and not isinstance(x, Mapping))[0]
  return {leaf_name(path): tuple(leaf.shape) for path, leaf in leaves if hasattr(leaf, 'shape')}


@dataclasses.dataclass
class TreeDiff:
  missing: list[str]  # in the model, not in the checkpoint
  unexpected: list[str]  # in the checkpoint, not in the model
  mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # name, checkpoint, model

  def __bool__(self) -> bool:
    return bool(self.missing or self.unexpected or self.mismatched)

  def describe(self) -> str:
    """One line per name (parameters before batch statistics), at most 20 per kind."""
    return '\n'.join(name_sections([
        ('in the model but not in the checkpoint', self.missing),
        ('in the checkpoint but not in the model', self.unexpected),
        ('shape differs', [f'{n} checkpoint {c} vs model {m}' for n, c, m in self.mismatched]),
    ]))


def name_list(header: str, names: Sequence[str], limit: int = _MAX_LISTED) -> str:
  """``header`` then one indented line per name, at most ``limit`` (then ``... and K more``)."""
  more = [f'... and {len(names) - limit} more'] if len(names) > limit else []
  return header + ''.join(f'\n    {n}' for n in list(names[:limit]) + more)


def name_sections(sections: Sequence[tuple[str, Sequence[str]]],
                  limit: int = _MAX_LISTED) -> list[str]:
  """``'  title (N):'`` and its names (:func:`name_list`) for each non-empty ``(title, names)``."""
  return [name_list(f'  {title} ({len(names)}):', names, limit) for title, names in sections
          if names]


def _order(name: str) -> tuple[bool, str]:
  return (not name.startswith('params/'), name)


def diff_trees(checkpoint: Mapping[str, tuple[int, ...]],
               model: Mapping[str, tuple[int, ...]]) -> TreeDiff:
  return TreeDiff(
      missing=sorted(set(model) - set(checkpoint), key=_order),
      unexpected=sorted(set(checkpoint) - set(model), key=_order),
      mismatched=[(n, tuple(checkpoint[n]), tuple(model[n])) for n in sorted(model, key=_order)
                  if n in checkpoint and tuple(checkpoint[n]) != tuple(model[n])])


def variables_only(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
  """The ``params`` and ``batch_stats`` entries of ``flat_shapes`` output."""
  return {k: v for k, v in shapes.items() if k.split('/')[0] in ('params', 'batch_stats')}


def tree_metadata(state_dir: epath.Path) -> Any:
  """The saved tree's metadata (shapes, dtypes) of a ``state`` item, without reading arrays."""
  md = ocp.PyTreeCheckpointHandler().metadata(state_dir)
  return getattr(md, 'tree', md)


class CheckpointMismatchError(ValueError):
  pass


class DamagedCheckpointError(ValueError):
  """A checkpoint's files are missing, truncated or corrupted."""


def _reason(error: BaseException) -> str:
  """The root cause of ``error`` (Orbax wraps tensorstore's), type and message, on one line."""
  while error.__cause__ is not None or error.__context__ is not None:
    error = error.__cause__ or error.__context__
  text = ' '.join(str(error).split())
  return f'{type(error).__name__}: {text[:300]}'


def _check_restored(tree: Mapping[str, Any], step: int | None) -> None:
  """Raises ``DamagedCheckpointError`` when a restored float array holds a non-finite value (the
  loop never saves one, so it is corruption) or ``step`` differs from the saved step count."""
  bad = [leaf_name(p) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
         if jnp.issubdtype(x.dtype, jnp.inexact) and not bool(jnp.all(jnp.isfinite(x)))]
  if bad:
    raise DamagedCheckpointError(f'non-finite values in {bad[:5]}')
  if step is not None and int(tree['step']) != step:
    raise DamagedCheckpointError(f'its state says step {int(tree["step"])}')


# ---------------------------------------------------------------------------------------------
# Checksums: a byte flip inside an array file can leave finite values that no reader notices.

CHECKSUMS_FILE = 'checksums.json'


def _file_digests(step_dir: epath.Path) -> dict[str, list[Any]]:
  out = {}
  for root, _, files in os.walk(os.fspath(step_dir)):
    for name in files:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, os.fspath(step_dir))
      if rel == CHECKSUMS_FILE:
        continue
      digest = hashlib.sha256()
      with open(path, 'rb') as f:
        for chunk in iter(lambda f=f: f.read(1 << 20), b''):
          digest.update(chunk)
      out[rel] = [os.path.getsize(path), digest.hexdigest()]
  return out


def write_checksums(step_dir: epath.Path) -> None:
  """Process 0 writes ``<step>/checksums.json`` (size and SHA-256 of every file) once the step is
  committed; written to a temporary name and renamed, so it is whole or absent."""
  if jax.process_index() != 0:
    return
  tmp = step_dir / (CHECKSUMS_FILE + '.tmp')
  tmp.write_text(json.dumps(_file_digests(step_dir), sort_keys=True))
  os.replace(os.fspath(tmp), os.fspath(step_dir / CHECKSUMS_FILE))


def verify_checksums(step_dir: epath.Path) -> None:
  """Raises ``DamagedCheckpointError`` naming the files whose size or SHA-256 differ from
  ``checksums.json``, or that are missing (a step without the file, e.g. killed between commit
  and checksum, is not checked)."""
  path = step_dir / CHECKSUMS_FILE
  if not path.exists():
    return
  saved = json.loads(path.read_text())
  now = _file_digests(step_dir)
  missing = sorted(set(saved) - set(now))
  changed = sorted(n for n in saved if n in now and now[n] != saved[n])
  if missing or changed:
    raise DamagedCheckpointError(f'files missing: {missing[:5]}; files whose checksum differs: '
                                 f'{changed[:5]}')


# ---------------------------------------------------------------------------------------------
# The manager.

_TMP_SUFFIX = '.orbax-checkpoint-tmp'  # Orbax writes <step><suffix>-<time>, renamed when committed


def remove_half_written(directory: epath.Path) -> list[str]:
  """Removes (process 0) the step directories a crash left half-written; returns their names.
  Orbax never lists them as steps; this removes them before the manager starts (Orbax's own
  cleanup runs in the background and is awaited only by the next save)."""
  if jax.process_index() != 0 or not directory.is_dir():
    return []
  names = sorted(p.name for p in directory.iterdir() if _TMP_SUFFIX in p.name)
  for name in names:
    logging.warning('removing %s: a checkpoint write a crash interrupted', directory / name)
    shutil.rmtree(os.fspath(directory / name), ignore_errors=True)
  return names


class Checkpointer:
  """Periodic async saves, keep-N, resume-from-latest, with a model check before restoring."""

  def __init__(self, directory: str | epath.Path, keep: int = 3, async_save: bool = True,
               create: bool = True):
    self.directory = epath.Path(directory)
    if create:
      remove_half_written(self.directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep if keep and keep > 0 else None, create=create,
            enable_async_checkpointing=async_save),
        item_handlers={'state': ocp.StandardCheckpointHandler(),
                       'meta': ocp.JsonCheckpointHandler(),
                       'data': DataStateHandler()})
    self._in_flight: int | None = None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def describe_latest(self) -> str:
    """The newest saved step's directory, for messages ("none" before the first save)."""
    step = self.latest_step()
    return 'none (no checkpoint saved yet)' if step is None else str(self.directory / str(step))

  def all_steps(self) -> Sequence[int]:
    return self.manager.all_steps()

  def save(self, step: int, state: TrainState, data_state: Any, meta: Mapping[str, Any]) -> bool:
    """Starts an async save of ``step`` (no-op if that step is already saved). A write error
    surfaces here or in the next ``settle``; the previous checkpoints stay (Orbax deletes the
    oldest only after a save is committed)."""
    if step in self.manager.all_steps():
      return False
    try:
      started = self.manager.save(step, force=True, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state.as_dict()),
          meta=ocp.args.JsonSave(dict(meta)),
          data=DataStateSave(data_state)))
    except Exception:
      self.manager.reload()  # forget the step: its files were not committed
      raise
    self._in_flight = step if started else None
    return started

  def settle(self) -> tuple[int, BaseException | None] | None:
    """Waits for the save in flight: ``(step, None)`` when it was committed, ``(step, error)``
    when its write failed (the step is then forgotten), ``None`` when none was in flight."""
    step, self._in_flight = self._in_flight, None
    try:
      self.manager.wait_until_finished()
      if step is not None:
        write_checksums(self.directory / str(step))
    except Exception as e:  # pylint: disable=broad-except
      self.manager.reload()
      return (-1 if step is None else step, e)
    return None if step is None else (step, None)

  def state_dir(self, step: int) -> epath.Path:
    return self.directory / str(step) / 'state'

  def check_compatible(self, step: int, abstract: TrainState | Mapping[str, Any]) -> None:
    """Raises ``CheckpointMismatchError`` naming every parameter / BN statistic that differs.
    ``abstract``: a (abstract) ``TrainState`` or ``{'params', 'batch_stats'}``."""
    saved = variables_only(flat_shapes(tree_metadata(self.state_dir(step))))
    if isinstance(abstract, TrainState):
      abstract = abstract.as_dict()
    model = variables_only(flat_shapes(abstract))
    diff = diff_trees(saved, model)
    if diff:
      raise CheckpointMismatchError(
          f'checkpoint {self.directory / str(step)} was written by a different model than '
          f'config.model describes:\n{diff.describe()}\n'
          'Use a fresh --workdir for a new model, or config.init_from to start from these '
          'weights.')

  def restore(self, step: int, abstract_state: TrainState
              ) -> tuple[TrainState, Any, dict[str, Any]]:
    """``(state, data_state, meta)`` of ``step``, the state placed as ``abstract_state`` says."""
    self.check_compatible(step, abstract_state)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state.as_dict()),
        meta=ocp.args.JsonRestore(),
        data=DataStateRestore()))
    return TrainState.from_dict(restored['state']), restored['data'], restored['meta']

  def restore_newest_intact(self, abstract_state: TrainState
                            ) -> tuple[int, TrainState, Any, dict[str, Any]] | None:
    """``(step, state, data_state, meta)`` of the newest step that reads back whole, or None when
    no step does. A damaged step (missing, truncated or corrupted files, non-finite values, a
    wrong step count) is logged with its reason and moved to ``<directory>_damaged/<step>``, so
    that the run saves that step anew; the next older step is tried. A checkpoint of another
    model still raises ``CheckpointMismatchError``."""
    for step in sorted(self.all_steps(), reverse=True):
      try:
        verify_checksums(self.directory / str(step))
        state, data_state, meta = self.restore(step, abstract_state)
        _check_restored(state.as_dict(), step)
      except CheckpointMismatchError:
        raise
      except Exception as e:  # pylint: disable=broad-except
        moved = self._set_aside(step)
        logging.error('checkpoint step %d is damaged (%s); moved to %s; trying the previous one',
                      step, _reason(e), moved)
        continue
      return step, state, data_state, meta
    return None

  def _set_aside(self, step: int) -> epath.Path:
    target = epath.Path(f'{self.directory}_damaged') / str(step)
    suffix = 0
    while target.exists():
      suffix += 1
      target = epath.Path(f'{self.directory}_damaged') / f'{step}.{suffix}'
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(os.fspath(self.directory / str(step)), os.fspath(target))
    self.manager.reload()
    return target

  def restore_variables(self, step: int, abstract_state: TrainState) -> dict[str, Any]:
    """Only ``{'params', 'batch_stats'}`` (evaluation: no optimizer state is read). Raises
    ``DamagedCheckpointError`` naming the step when its files do not read back whole."""
    self.check_compatible(step, abstract_state)
    target = {'params': abstract_state.params, 'batch_stats': abstract_state.batch_stats}
    try:
      verify_checksums(self.directory / str(step))
      variables = partial_restore(self.state_dir(step), target)
      _check_restored(variables, None)
    except Exception as e:  # pylint: disable=broad-except
      raise DamagedCheckpointError(f'checkpoint {self.directory / str(step)} is damaged: '
                                   f'{_reason(e)}') from e
    return variables

  def newest_intact_variables(self, abstract_state: TrainState) -> tuple[int, dict[str, Any]]:
    """``(step, variables)`` of the newest step whose variables read back whole; damaged steps
    are logged (and left in place: evaluation does not change the run's directory)."""
    for step in sorted(self.all_steps(), reverse=True):
      try:
        return step, self.restore_variables(step, abstract_state)
      except DamagedCheckpointError as e:
        logging.error('%s; trying the previous step', e)
    raise DamagedCheckpointError(f'no intact checkpoint in {self.directory}')

  def wait_until_finished(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def partial_restore(state_dir: epath.Path, target: Any) -> Any:
  """Restores only the leaves of ``target`` (a subtree of the saved one), onto its shardings."""
  return ocp.PyTreeCheckpointer().restore(state_dir, args=ocp.args.PyTreeRestore(
      item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
      partial_restore=True))


# ---------------------------------------------------------------------------------------------
# config.init_from: which checkpoint a path names.


def resolve_state_dir(path: str | epath.Path) -> epath.Path:
  """A step directory (``.../<step>``), a checkpoints directory (its latest step) or a workdir
  (``<workdir>/checkpoints``, latest step) -> the ``state`` item directory (absolute: Orbax
  refuses relative paths)."""
  path = epath.Path(os.path.abspath(os.fspath(path)))
  if (path / 'state').is_dir():
    return path / 'state'
  if (path / 'checkpoints').is_dir():
    path = path / 'checkpoints'
  steps = sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []
  if not steps:
    raise ValueError(f'config.init_from={str(path)!r}: no checkpoint there (expected a step '
                     'directory with state/, a checkpoints/ directory, or a workdir)')
  return path / str(steps[-1]) / 'state'


def write_variables_checkpoint(workdir: str | epath.Path, variables: Mapping[str, Any],
                               step: int = 0, config: Any = None,
                               extra: Mapping[str, Any] | None = None) -> epath.Path:
  """Writes ``{'params', 'batch_stats'}`` as ``WORKDIR/checkpoints/<step>/state`` (the layout
  ``config.init_from`` and ``evaluate.py`` read), plus ``WORKDIR/config.json`` (``config``) and
  any ``extra`` JSON files (name -> object). Returns the step directory."""
  workdir = epath.Path(os.path.abspath(os.fspath(workdir)))
  workdir.mkdir(parents=True, exist_ok=True)
  manager = ocp.CheckpointManager(
      workdir / 'checkpoints',
      options=ocp.CheckpointManagerOptions(create=True, enable_async_checkpointing=False),
      item_handlers={'state': ocp.StandardCheckpointHandler()})
  if step in manager.all_steps():
    raise ValueError(f'{workdir / "checkpoints" / str(step)} exists already: use a fresh --out')
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(
      {'params': variables['params'], 'batch_stats': variables.get('batch_stats', {})})))
  manager.wait_until_finished()
  manager.close()
  if config is not None and jax.process_index() == 0:
    text = (config.to_json_best_effort(indent=2, sort_keys=True)
            if hasattr(config, 'to_json_best_effort') else json.dumps(config, indent=2))
    (workdir / 'config.json').write_text(text)
  for name, obj in (extra or {}).items():
    if jax.process_index() == 0:
      (workdir / name).write_text(json.dumps(obj, indent=2, sort_keys=True))
  return workdir / 'checkpoints' / str(step)
