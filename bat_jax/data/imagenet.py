"""ImageNet (ILSVRC-2012) input pipelines: tfds ArrayRecord files or JPEG folders, through grain.

Same interface as the trainer's other sources (``bat_jax.data.pipeline``, ``bat_jax.data.cifar``)::

    it = make_train_iterator(config.data, global_batch_size, process_index, process_count, seed)
    batch = next(it)            # {'image': uint8 (B, 224, 224, 3), 'label': i32 (B,)}
    state = it.get_state()      # JSON-serialisable; the trainer saves it in the checkpoint
    it.set_state(state)         # resume exactly (fresh iterator, same arguments)
    it.num_examples, it.steps_per_epoch, it.num_classes

    ev = make_eval_iterator(config.data, global_batch_size, process_index, process_count)
    for batch in ev: ...        # + 'mask' (B,) bool (False on padding rows and unreadable
                                # images); finite, len(ev) batches on every process

Sources (``config.data.name``):

* ``'imagenet2012'``: ``tfds.data_source('imagenet2012', split, data_dir=config.data.data_dir)``
  reads the prepared ArrayRecord files with random access; no TensorFlow at training time. tfds
  decodes each JPEG with PIL (or OpenCV if installed) when an element is read, i.e. inside the
  grain workers. (``decoders={'image': tfds.decode.SkipDecoding()}`` would give the encoded
  bytes, but in tfds 4.9.10 it needs TensorFlow, so the default numpy decoding is used.)
  Preparing the files needs TensorFlow once, anywhere, and the two ILSVRC-2012 tars
  (``ILSVRC2012_img_train.tar``, ``ILSVRC2012_img_val.tar``) in the manual dir::

      pip install tensorflow tensorflow-datasets
      tfds build imagenet2012 --data_dir=/data/tfds --manual_dir=/data/imagenet_tars \
          --file_format=array_record

  Splits: ``train`` (1,281,167) and ``validation`` (50,000).
* ``'imagenet_folder'``: JPEG folders under ``config.data.root``: ``train/<wnid>/*.JPEG`` and
  ``val/<wnid>/*.JPEG`` (``validation/`` also works). Labels are the indices of the sorted
  training class folders, which for the 1000 ``n0...`` synset ids is the order tfds uses, so a
  model trained on one source evaluates on the other. The official validation tar is flat
  (``ILSVRC2012_val_*.JPEG``); move each file into its synset folder first (e.g. with the
  well-known ``valprep.sh``, or from ``LOC_val_solution.csv``), see ``docs/data.md``.

Transforms (numpy + PIL; ``bat_cvpr2020.md`` §4.1, the released image code's torchvision ones):

* training: ``RandomResizedCrop(image_size, scale=(0.08, 1), ratio=(3/4, 4/3))`` — up to 10
  tries of an area fraction uniform in ``scale`` and a log-uniform aspect ratio, the box uniform
  in the image; if none fits, the whole image cropped to the nearest allowed ratio, centred —
  resized bilinearly (PIL, antialiased) to ``image_size``; horizontal flip with p = 1/2;
* evaluation: resize the short side to ``eval_resize`` (256; long side ``int(256 * long /
  short)``, as torchvision), centre crop ``image_size`` (224);
* images leave the workers as uint8; the steps apply ``(x / 255 - mean) / std`` (ImageNet
  statistics by default) on the device (:mod:`bat_jax.data.normalization`).

Order, sharding, determinism and state are those of :mod:`bat_jax.data.core`: epoch ``e``
is a permutation drawn from ``(seed, e)``, process ``p`` reads its contiguous rows of each global
batch, an example's augmentation draws from ``np.random.default_rng([seed, epoch, position])``,
and the iterator state (grain's own, plus the batch index) restores exactly, also with another
worker or process count. An image that cannot be read (missing, zero bytes, not an image,
truncated) is replaced by the next record in training and masked in evaluation, and listed by
:func:`broken_files` (the trainer writes ``WORKDIR/broken_files_process<i>.json``).

``config.data`` fields: ``name``, ``data_dir`` (tfds) or ``root`` (folders), ``image_size``
(224), ``eval_resize`` (256), optional ``random_resized_crop_scale`` ((0.08, 1)),
``random_resized_crop_ratio`` ((3/4, 4/3)), ``random_flip`` (True), ``mean``, ``std`` (0-1 RGB;
read by the steps),
``num_workers`` (grain worker processes; 0 = in-process), ``num_threads`` (2),
``train_split`` (``'train'``), ``eval_split`` (``'validation'``).
"""

from __future__ import annotations

import functools
import io
import math
import os
from typing import Any, Sequence

import numpy as np
from PIL import Image

from bat_jax.data import core
from bat_jax.data.core import broken_files, config_get, reset_broken_files

__all__ = ['make_train_iterator', 'make_eval_iterator', 'random_resized_crop_box',
           'random_resized_crop', 'resize_short_side', 'center_crop', 'eval_image',
           'train_image', 'ImageFileSource', 'FolderSource', 'ImageDecodeError', 'broken_files',
           'reset_broken_files', 'NUM_CLASSES']

NUM_CLASSES = 1000
IMAGE_EXTENSIONS = ('.jpeg', '.jpg', '.png')
_SPLIT_DIRS = {'train': ('train', 'training'), 'validation': ('val', 'validation', 'valid'),
               'val': ('val', 'validation', 'valid')}


class ImageDecodeError(Exception):
  """An image that cannot be read or decoded."""

  def __init__(self, path: str, reason: str):
    self.path, self.reason = str(path), str(reason)
    super().__init__(f'{self.path}: {self.reason}')

  def __reduce__(self):
    return (ImageDecodeError, (self.path, self.reason))


# ------------------------------------------------------------------------------------------------
# Transforms (numpy / PIL; run in grain workers).


def _as_rgb(image: Any) -> np.ndarray:
  """uint8 (H, W, 3) from an array (grey / RGBA / RGB) or a PIL image."""
  if isinstance(image, Image.Image):
    return np.asarray(image.convert('RGB'))
  a = np.asarray(image)
  if a.ndim == 2:
    a = a[..., None]
  if a.shape[-1] == 1:
    a = np.repeat(a, 3, axis=-1)
  elif a.shape[-1] == 4:
    a = a[..., :3]
  if a.dtype != np.uint8:
    a = a.astype(np.uint8)
  return a


def random_resized_crop_box(height: int, width: int, rng: np.random.Generator,
                            scale: Sequence[float] = (0.08, 1.0),
                            ratio: Sequence[float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
  """``(top, left, h, w)`` of torchvision's ``RandomResizedCrop.get_params``.

  Up to 10 tries: area ``u * H * W`` with ``u ~ U(scale)``, aspect ``w / h = exp(U(log ratio))``,
  ``w = round(sqrt(area * aspect))``, ``h = round(sqrt(area / aspect))``; accepted if it fits,
  placed uniformly. Otherwise the whole image cut to the nearest allowed aspect, centred.
  """
  area = height * width
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  for _ in range(10):
    target = area * rng.uniform(scale[0], scale[1])
    aspect = math.exp(rng.uniform(log_lo, log_hi))
    w = int(round(math.sqrt(target * aspect)))
    h = int(round(math.sqrt(target / aspect)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  in_ratio = width / height
  if in_ratio < min(ratio):
    w, h = width, int(round(width / min(ratio)))
  elif in_ratio > max(ratio):
    h, w = height, int(round(height * max(ratio)))
  else:
    w, h = width, height
  return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                        scale: Sequence[float] = (0.08, 1.0),
                        ratio: Sequence[float] = (3 / 4, 4 / 3)) -> np.ndarray:
  """The box of :func:`random_resized_crop_box`, cut out and resized (PIL bilinear,
  antialiased) to ``size`` x ``size``, as torchvision's ``resized_crop`` (crop, then resize: the
  filter sees no pixel outside the box)."""
  image = _as_rgb(image)
  top, left, h, w = random_resized_crop_box(image.shape[0], image.shape[1], rng, scale, ratio)
  crop = np.ascontiguousarray(image[top:top + h, left:left + w])
  return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))


def resize_short_side(image: np.ndarray, size: int) -> np.ndarray:
  """torchvision ``Resize(size)`` (PIL bilinear): short side ``size``, long side
  ``int(size * long / short)``."""
  image = _as_rgb(image)
  h, w = image.shape[:2]
  if h <= w:
    nh, nw = size, int(size * w / h)
  else:
    nh, nw = int(size * h / w), size
  if (nh, nw) == (h, w):
    return image
  return np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  """torchvision ``CenterCrop(size)``: top ``round((H - size) / 2)`` (Python rounding)."""
  h, w = image.shape[:2]
  if h < size or w < size:
    raise ValueError(f'crop {size} larger than the image ({h}x{w})')
  top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
  return image[top:top + size, left:left + size]


def train_image(image: np.ndarray, rng: np.random.Generator, *, size: int = 224,
                scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True) -> np.ndarray:
  """RandomResizedCrop + flip (p = 1/2) -> uint8 (size, size, 3). Draws, in order: the crop
  box, then the flip."""
  out = random_resized_crop(image, size, rng, scale, ratio)
  if flip and rng.random() < 0.5:
    out = out[:, ::-1]
  return out


def eval_image(image: np.ndarray, *, size: int = 224, resize: int = 256) -> np.ndarray:
  """Resize the short side to ``resize``, centre crop ``size`` -> uint8 (size, size, 3)."""
  if resize < size:
    raise ValueError(f'eval_resize {resize} < image_size {size}')
  return center_crop(resize_short_side(image, resize), size)


# ------------------------------------------------------------------------------------------------
# Sources.


def decode_image_file(path: str) -> np.ndarray:
  """uint8 RGB array of an image file; ``ImageDecodeError`` if it is missing or unreadable."""
  if not os.path.exists(path):
    raise ImageDecodeError(path, 'file does not exist')
  if os.path.getsize(path) == 0:
    raise ImageDecodeError(path, 'zero-byte file')
  try:
    with open(path, 'rb') as f:
      data = f.read()
    with Image.open(io.BytesIO(data)) as img:
      img.load()  # a truncated JPEG raises here (PIL's LOAD_TRUNCATED_IMAGES stays off)
      return np.asarray(img.convert('RGB'))
  except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:
    raise ImageDecodeError(path, f'{type(e).__name__}: {e}') from None


def _find_split_dir(root: str, split: str) -> str | None:
  for name in _SPLIT_DIRS.get(split, (split,)):
    d = os.path.join(root, name)
    if os.path.isdir(d):
      return d
  return None


class ImageFileSource:
  """Random-access ``{'image': uint8 (H, W, 3), 'label': int, 'file_name': str}`` over
  ``records``, a list of (image file, label) that a subclass's ``__init__`` sets."""
  records: list[tuple[str, int]]

  def __len__(self) -> int:
    return len(self.records)

  def __getitem__(self, index: int) -> dict[str, Any]:
    path, label = self.records[int(index)]
    return {'image': decode_image_file(path), 'label': label, 'file_name': path}


class FolderSource(ImageFileSource):
  """The images of ``root/<split>/<class>/*.{JPEG,jpg,png}``; ``class_names`` are the sorted
  training folders."""

  def __init__(self, root: str, split: str, class_names: Sequence[str] | None = None):
    split_dir = _find_split_dir(root, split)
    if split_dir is None:
      raise FileNotFoundError(f'no {split}/ folder under {root!r} (tried '
                              f'{list(_SPLIT_DIRS.get(split, (split,)))})')
    if class_names is None:
      train_dir = _find_split_dir(root, 'train') or split_dir
      class_names = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
    self.class_names = list(class_names)
    label_of = {c: i for i, c in enumerate(self.class_names)}
    records = []
    for c in sorted(e.name for e in os.scandir(split_dir) if e.is_dir()):
      if c not in label_of:
        raise ValueError(f'class folder {c!r} of {split_dir} is not a training class')
      folder = os.path.join(split_dir, c)
      for fn in sorted(os.listdir(folder)):
        if os.path.splitext(fn)[1].lower() in IMAGE_EXTENSIONS:
          records.append((os.path.join(folder, fn), label_of[c]))
    if not records:
      raise ValueError(f'no images under {split_dir}/<class>/')
    self.records = records


def _source(data_config: Any, split: str) -> Any:
  name = config_get(data_config, 'name', 'imagenet2012')
  if name == 'imagenet_folder':
    root = config_get(data_config, 'root', '')
    if not root:
      raise ValueError('config.data.root is required for imagenet_folder')
    return FolderSource(root, split)
  if name != 'imagenet2012':
    raise ValueError(f"config.data.name={name!r}; allowed: 'imagenet2012', 'imagenet_folder'")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  data_dir = config_get(data_config, 'data_dir', '') or None
  return tfds.data_source('imagenet2012', split=split, data_dir=data_dir)


def _read(source: Any, index: int) -> tuple[np.ndarray, int, str]:
  """(image, label, name) of record ``index``; ``ImageDecodeError`` if unreadable."""
  try:
    example = source[index]
  except ImageDecodeError:
    raise
  except (OSError, ValueError) as e:  # tfds' PIL decoding of a damaged record
    raise ImageDecodeError(f'record {index}', f'{type(e).__name__}: {e}') from None
  name = example.get('file_name', f'record {index}')
  if isinstance(name, bytes):
    name = name.decode('utf-8', 'replace')
  return _as_rgb(example['image']), int(example['label']), str(name)


# ------------------------------------------------------------------------------------------------
# Per-element work (grain workers).


class _TrainLoad:

  def __init__(self, source: Any, seed: int, opts: dict[str, Any]):
    self.source, self.seed, self.opts = source, seed, opts

  def __call__(self, item):
    epoch, pos, rec = item
    rng = np.random.default_rng([self.seed, epoch, pos])
    (image, label, _), broken = core.first_readable(functools.partial(_read, self.source), rec,
                                                    len(self.source), ImageDecodeError,
                                                    'unreadable images')
    return {'image': train_image(image, rng, **self.opts), 'label': np.int32(label),
            '_broken': broken}


class _EvalLoad:

  def __init__(self, source: Any, opts: dict[str, Any]):
    self.source, self.opts = source, opts

  def __call__(self, item):
    index = int(item[0])
    size = self.opts['size']
    broken = ()
    if index >= 0:
      try:
        image, label, _ = _read(self.source, index)
        return {'image': eval_image(image, **self.opts), 'label': np.int32(label),
                'mask': np.bool_(True), '_broken': ()}
      except ImageDecodeError as e:
        broken = ((e.path, e.reason),)
    return {'image': np.zeros((size, size, 3), np.uint8), 'label': np.int32(0),
            'mask': np.bool_(False), '_broken': broken}


# ------------------------------------------------------------------------------------------------
# Entry points.


def _num_classes(source: Any) -> int:
  names = getattr(source, 'class_names', None)
  return len(names) if names else NUM_CLASSES


def make_train_iterator(data_config: Any, global_batch_size: int, process_index: int = 0,
                        process_count: int = 1, seed: int = 0, *,
                        num_epochs: int | None = None,
                        source: Any = None) -> core.GrainIterator:
  """Endless (or ``num_epochs``-long) augmented training batches for this process.

  ``source`` (random access ``{'image', 'label'}``) replaces the one ``config.data`` names.
  """
  split = config_get(data_config, 'train_split', 'train')
  source = _source(data_config, split) if source is None else source
  n = len(source)
  index = core.train_source(n, global_batch_size, process_index, process_count, seed, num_epochs,
                            'images')
  b, steps = index.b, index.steps
  opts = dict(size=int(config_get(data_config, 'image_size', 224)),
              scale=tuple(float(x) for x in config_get(data_config, 'random_resized_crop_scale',
                                                       (0.08, 1.0))),
              ratio=tuple(float(x) for x in config_get(data_config, 'random_resized_crop_ratio',
                                                       (3 / 4, 4 / 3))),
              flip=bool(config_get(data_config, 'random_flip', True)))
  ds = core.train_batches(_TrainLoad(source, int(seed), opts), index)
  num_workers, num_threads = core.worker_counts(data_config)
  fingerprint = {'kind': 'train', 'name': config_get(data_config, 'name', 'imagenet2012'),
                 'split': split, 'seed': int(seed), 'global_batch_size': global_batch_size,
                 'num_records': n, 'process_index': process_index,
                 'process_count': process_count}
  info = {'steps_per_epoch': steps, 'num_examples': n, 'num_classes': _num_classes(source),
          'class_names': getattr(source, 'class_names', None), 'per_process_batch_size': b}
  return core.GrainIterator(
      ds, num_batches=None if num_epochs is None else num_epochs * steps,
      num_workers=num_workers, num_threads=num_threads, split=split, fingerprint=fingerprint,
      info=info)


def make_eval_iterator(data_config: Any, global_batch_size: int, process_index: int = 0,
                       process_count: int = 1, *, source: Any = None) -> core.GrainIterator:
  """The eval split once (resize + centre crop), padded with ``mask = False`` rows; process
  ``p`` of ``P`` evaluates examples ``p::P`` and every process yields ``len(iterator)``
  batches."""
  split = config_get(data_config, 'eval_split', 'validation')
  source = _source(data_config, split) if source is None else source
  n = len(source)
  b = core.process_batch_size(global_batch_size, process_count)
  opts = dict(size=int(config_get(data_config, 'image_size', 224)),
              resize=int(config_get(data_config, 'eval_resize', 256)))
  if opts['resize'] < opts['size']:
    raise ValueError(f"config.data.eval_resize={opts['resize']} < image_size={opts['size']}")
  assignment, num_batches = core.eval_assignment(n, 1, b, process_index, process_count)
  ds = core.eval_batches(_EvalLoad(source, opts), assignment, b)
  num_workers, num_threads = core.worker_counts(data_config)
  fingerprint = {'kind': 'eval', 'name': config_get(data_config, 'name', 'imagenet2012'),
                 'split': split, 'global_batch_size': global_batch_size, 'num_records': n,
                 'views': 1, 'process_index': process_index, 'process_count': process_count}
  info = {'num_examples': n, 'num_classes': _num_classes(source),
          'class_names': getattr(source, 'class_names', None), 'per_process_batch_size': b}
  return core.GrainIterator(ds, num_batches=num_batches, num_workers=num_workers,
                            num_threads=num_threads, split=split, fingerprint=fingerprint,
                            info=info)
