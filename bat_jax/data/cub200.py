"""CUB-200-2011 (Caltech-UCSD Birds, 200 classes) for fine-grained classification, through the
ImageNet image pipeline (:mod:`bat_jax.data.imagenet`: its transforms, order, sharding, iterator
state and broken-image report).

Sources (``config.data.name``):

* ``'cub200'``: ``tfds.data_source('caltech_birds2011', split, data_dir=config.data.data_dir)``
  (ArrayRecord, random access, no TensorFlow at training time). tfds' builder (version 0.2.0)
  has the splits ``train`` (5,994 images) and ``test`` (5,794), the official
  ``train_test_split.txt``; its features ``image``, ``image/filename`` and ``label`` (0-based,
  ``ClassLabel(num_classes=200)`` from the class folder's number). Preparing the files needs
  TensorFlow once, anywhere::

      tfds build caltech_birds2011 --data_dir=/data/tfds --file_format=array_record

* ``'cub200_folder'``: the official ``CUB_200_2011.tgz`` unpacked; ``config.data.root`` is the
  ``CUB_200_2011/`` folder holding::

      images.txt                 <image id> <class dir>/<file>.jpg
      train_test_split.txt       <image id> <1 = train | 0 = test>
      image_class_labels.txt     <image id> <class, 1-based>
      classes.txt                <class, 1-based> <class dir name>
      images/<class dir>/<file>.jpg

  Labels are ``class - 1`` (0..199), the same numbers tfds gives, so a model trained on one source
  evaluates on the other. Records are in ``images.txt`` order. An image that is listed but
  missing or unreadable stays a record: it is replaced by the next one in training and masked in
  evaluation, and listed by :func:`broken_files`.

Split names: ``train`` and ``test`` (the paper's 5,994 / 5,794, chebysnl §3.2 "as Yue et al.").
The transforms are :func:`bat_jax.data.imagenet.train_image` / :func:`~bat_jax.data.imagenet.
eval_image` with ``config.data``'s ``image_size``, ``eval_resize``, crop scale / ratio, flip,
``mean`` and ``std`` (fields as in ``bat_jax.data.imagenet``); ``eval_split`` defaults to
``test``.
"""

from __future__ import annotations

import os
from typing import Any

from bat_jax.data import annotation_files, core, imagenet
from bat_jax.data.core import config_get, config_require
from bat_jax.data.core import broken_files, reset_broken_files  # pylint: disable=unused-import

__all__ = ['NUM_CLASSES', 'TFDS_NAME', 'SPLITS', 'read_id_table', 'FolderSource', 'TfdsSource',
           'make_source', 'make_train_iterator', 'make_eval_iterator', 'broken_files',
           'reset_broken_files']

NUM_CLASSES = 200
TFDS_NAME = 'caltech_birds2011'
SPLITS = {'train': 1, 'test': 0}  # split name -> its flag in train_test_split.txt


def read_id_table(path: str) -> dict[int, str]:
  """``{id: rest of the line}`` of a ``<id> <value>`` file (the CUB annotation format)."""
  table = {}
  for n, line in annotation_files.text_lines(path, 'CUB-200-2011 annotation file'):
    key, _, value = line.partition(' ')
    if not key.isdigit() or not value.strip():
      raise ValueError(f'{path}:{n}: expected "<id> <value>", got {line!r}')
    if int(key) in table:
      raise ValueError(f'{path}:{n}: id {key} listed twice')
    table[int(key)] = value.strip()
  return table


class FolderSource(imagenet.ImageFileSource):
  """The images of one split of the official ``CUB_200_2011/`` layout; ``class_names`` from
  ``classes.txt``."""

  def __init__(self, root: str, split: str):
    if split not in SPLITS:
      raise ValueError(f'CUB-200-2011 split {split!r}; allowed: {sorted(SPLITS)}')
    root = os.fspath(root)
    images = read_id_table(os.path.join(root, 'images.txt'))
    flags = read_id_table(os.path.join(root, 'train_test_split.txt'))
    labels = read_id_table(os.path.join(root, 'image_class_labels.txt'))
    classes = read_id_table(os.path.join(root, 'classes.txt'))
    if sorted(classes) != list(range(1, len(classes) + 1)):
      raise ValueError(f'{root}/classes.txt: class ids are not 1..{len(classes)}')
    self.class_names = [classes[i] for i in range(1, len(classes) + 1)]
    records = []
    for image_id, rel in images.items():
      if image_id not in flags or image_id not in labels:
        raise ValueError(f'{root}: image id {image_id} ({rel}) is missing from '
                         'train_test_split.txt or image_class_labels.txt')
      if flags[image_id] not in ('0', '1'):
        raise ValueError(f'{root}/train_test_split.txt: image id {image_id} has flag '
                         f'{flags[image_id]!r}; allowed: 1 (train), 0 (test)')
      label = int(labels[image_id]) - 1
      if not 0 <= label < len(self.class_names):
        raise ValueError(f'{root}/image_class_labels.txt: image id {image_id} has class '
                         f'{label + 1}; allowed: 1..{len(self.class_names)}')
      if int(flags[image_id]) == SPLITS[split]:
        records.append((os.path.join(root, 'images', rel), label))
    if not records:
      raise ValueError(f'{root}: no {split} images listed')
    self.records = records


class TfdsSource:
  """tfds' ``caltech_birds2011`` data source with the element keys the image pipeline reads
  (``image``, ``label``, ``file_name`` from ``image/filename``) and ``class_names``."""

  def __init__(self, source: Any):
    self.source = source
    self.class_names = [str(i) for i in range(NUM_CLASSES)]

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict[str, Any]:
    example = self.source[int(index)]
    return {'image': example['image'], 'label': example['label'],
            'file_name': example.get('image/filename', f'record {index}')}


def make_source(data_config: Any, split: str) -> FolderSource | TfdsSource:
  """The split of the source ``config.data.name`` names (``cub200`` or ``cub200_folder``)."""
  name = config_get(data_config, 'name', 'cub200')
  if split not in SPLITS:
    raise ValueError(f'CUB-200-2011 split {split!r} (config.data.train_split / eval_split); '
                     f'allowed: {sorted(SPLITS)}')
  if name == 'cub200_folder':
    return FolderSource(config_require(data_config, 'root'), split)
  if name != 'cub200':
    raise ValueError(f"config.data.name={name!r}; allowed: 'cub200', 'cub200_folder'")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = config_get(data_config, 'data_dir', '') or None
  return TfdsSource(tfds.data_source(TFDS_NAME, split=split, data_dir=data_dir))


def make_train_iterator(data_config: Any, global_batch_size: int, process_index: int = 0,
                        process_count: int = 1, seed: int = 0, *,
                        num_epochs: int | None = None) -> core.GrainIterator:
  """:func:`bat_jax.data.imagenet.make_train_iterator` on the ``train_split`` (``train``)."""
  source = make_source(data_config, config_get(data_config, 'train_split', 'train'))
  return imagenet.make_train_iterator(data_config, global_batch_size, process_index,
                                      process_count, seed, num_epochs=num_epochs, source=source)


def make_eval_iterator(data_config: Any, global_batch_size: int, process_index: int = 0,
                       process_count: int = 1) -> core.GrainIterator:
  """:func:`bat_jax.data.imagenet.make_eval_iterator` on the ``eval_split`` (``test``)."""
  source = make_source(data_config, config_get(data_config, 'eval_split', 'test'))
  return imagenet.make_eval_iterator(data_config, global_batch_size, process_index,
                                     process_count, source=source)
