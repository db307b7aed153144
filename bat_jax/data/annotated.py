"""Video data sets given as an annotation list over files or frame folders: the split record and
the train / eval iterators of :mod:`bat_jax.data.pipeline` over it.

A data-set module (:mod:`bat_jax.data.something_something`, :mod:`bat_jax.data.diving48`,
:mod:`bat_jax.data.finegym`) reads its official annotation files into a :class:`Split` with a
``load(data_config, split) -> Split`` function and gets its two public entry points from
:func:`entry_points`::

    make_train_iterator, make_eval_iterator = annotated.entry_points(_load, 'Diving-48')

Everything after the listing is the shared pipeline's: decoding (:mod:`bat_jax.data.decode`),
sampling (``data.sampling``: ``'segments'`` is TSN's, as RSA uses it), augmentation, no-flip
keywords, sharding, resumable iterator state (:class:`bat_jax.data.core.GrainIterator`) and
broken files (reported and substituted in training, masked in evaluation).

Listed videos without a file (``Split.missing``, from :func:`split_present`) are left out of the
records and enter the broken-file report once (:func:`bat_jax.data.core.record_missing`), as
Kinetics does; the iterators carry them as ``missing``.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable, Sequence

from bat_jax.data import core, pipeline
from bat_jax.data.core import config_get

__all__ = ['Split', 'split_present', 'entry_points']


@dataclasses.dataclass
class Split:
  """``records``: (video path, label) in annotation order; ``class_names``: label -> name;
  ``annotation``: the file the records come from; ``missing``: (path, label) listed without a
  file (not in ``records``)."""
  records: list[tuple[str, int]]
  class_names: list[str]
  annotation: str
  missing: list[tuple[str, int]] = dataclasses.field(default_factory=list)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __len__(self) -> int:
    return len(self.records)


def split_present(listed: Iterable[tuple[str, int]]
                  ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
  """``(records whose path exists, records whose path does not)``, each in listed order."""
  present, missing = [], []
  for path, label in listed:
    (present if os.path.exists(path) else missing).append((path, int(label)))
  return present, missing


Load = Callable[..., Split]


def _split(load: Load, data_config, key: str, default: str) -> Split:
  name = config_get(data_config, key, default)
  sp = load(data_config, name)
  if not sp.records:
    raise ValueError(f'{sp.annotation}: none of the {len(sp.missing)} listed videos has a file')
  core.record_missing([(p, sp.class_names[l]) for p, l in sp.missing], name,
                      os.path.dirname(sp.missing[0][0]) if sp.missing else '')
  return sp


def entry_points(load: Load, dataset: str, eval_split: str = 'val'
                 ) -> tuple[Callable[..., core.GrainIterator], Callable[..., core.GrainIterator]]:
  """``(make_train_iterator, make_eval_iterator)`` of the data set whose ``load(data_config,
  split)`` lists the records of a split (``data.train_split``, default 'train';
  ``data.eval_split``, default ``eval_split``)."""

  def make_train_iterator(data_config, global_batch_size: int, process_index: int = 0,
                          process_count: int = 1, seed: int = 0, *,
                          num_epochs: int | None = None) -> core.GrainIterator:
    sp = _split(load, data_config, 'train_split', 'train')
    it = pipeline.make_train_iterator(data_config, global_batch_size, process_index,
                                      process_count, seed, num_epochs=num_epochs,
                                      records=sp.records, class_names=sp.class_names)
    it.missing = list(sp.missing)
    return it

  def make_eval_iterator(data_config, global_batch_size: int, process_index: int = 0,
                         process_count: int = 1, *, num_clips: int = 1, num_crops: int = 1,
                         crop_size: int | None = None,
                         frame_size: Sequence[int] | None = None) -> core.GrainIterator:
    sp = _split(load, data_config, 'eval_split', eval_split)
    it = pipeline.make_eval_iterator(data_config, global_batch_size, process_index,
                                     process_count, num_clips=num_clips, num_crops=num_crops,
                                     crop_size=crop_size, frame_size=frame_size,
                                     records=sp.records)
    it.class_names, it.num_classes = list(sp.class_names), sp.num_classes
    it.missing = list(sp.missing)
    return it

  make_train_iterator.__doc__ = (
      f':func:`bat_jax.data.pipeline.make_train_iterator` on the {dataset} records.')
  make_eval_iterator.__doc__ = (
      f':func:`bat_jax.data.pipeline.make_eval_iterator` on the {dataset} records.')
  return make_train_iterator, make_eval_iterator
