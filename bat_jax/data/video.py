"""Numpy clip transforms on uint8 (T, H, W, 3) clips, and the per-example train / eval
transforms of the video data sets (numpy + PIL only: safe inside grain workers; decoding is
:mod:`bat_jax.data.decode`).

Spatially, training uses scale jittering (random short side in ``[256, 320]``), a random 224
crop and a random horizontal flip (``bat_cvpr2020.md`` §4.1, ``bat_supplementary.md`` §1);
evaluation resizes the short side to 256 and takes a centre crop, 3 crops along the long side
(fully-convolutional 30-view testing) or 10 crops (4 corners + centre, x flip; 250-view
testing); crop positions: :mod:`bat_jax.data.views`.

``train_augment='multiscale_crop'`` is the released BAT video code's training crop instead
(``main.py``: ``GroupMultiScaleCrop(224, [1, .875, .75, .66])`` + ``GroupRandomHorizontalFlip``;
TSN's ``transforms.py``): frames decoded at one short side, a crop whose height and width are
each one of ``base x scales`` (``base`` = the short side; sizes within 3 pixels of the output
snapped to it), the two scale indices at most ``max_distort`` apart, its corner one of 13 fixed
offsets, resized (bilinear) to ``crop x crop``; the same crop and flip for every frame
(:func:`multiscale_crop_candidates`, :func:`multiscale_crop`).

Clips leave these transforms as uint8 (T, crop, crop, 3) RGB (from videos, crop and flip are
views of the decoded frames; frame stores and folders resize only the training crop's box while
reading, :class:`bat_jax.data.decode.CropBox`; collating the batch is the one copy); the recipe's
mean / std are applied on the device inside the jitted steps (:mod:`bat_jax.data.normalization`).

Nothing here imports JAX: these functions run in grain worker processes.
"""

from __future__ import annotations

import fractions
from typing import Sequence

import numpy as np
from PIL import Image

from bat_jax.data import views
from bat_jax.data.decode import (CropBox, apply_box, decode_clip, decode_segments,
                                 short_side_shape)

__all__ = [
    'SAMPLINGS',
    'resize_short_side',
    'random_crop_box',
    'random_crop',
    'center_crop',
    'spatial_crop',
    'horizontal_flip',
    'multiscale_crop_candidates',
    'multiscale_crop_box',
    'multiscale_crop',
    'TRAIN_AUGMENTS',
    'check_train_augment',
    'train_transform',
    'eval_transform',
]

SAMPLINGS = ('dense', 'segments')  # data.sampling
TRAIN_AUGMENTS = ('scale_jitter', 'multiscale_crop')  # data.train_augment
MULTISCALE_SCALES = (1.0, 0.875, 0.75, 0.66)  # released main.py: GroupMultiScaleCrop(224, ...)


def resize_short_side(frames: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize (PIL, per frame) so the short side is ``size``; aspect ratio kept."""
  frames = np.asarray(frames)
  _, h, w, _ = frames.shape
  nh, nw = short_side_shape(h, w, size)
  if (nh, nw) == (h, w):
    return frames
  out = np.empty((frames.shape[0], nh, nw, frames.shape[3]), dtype=np.uint8)
  for i, f in enumerate(frames):
    out[i] = np.asarray(Image.fromarray(f).resize((nw, nh), Image.BILINEAR))
  return out


def _check_crop(height: int, width: int, size: int) -> None:
  if height < size or width < size:
    raise ValueError(f'crop {size} larger than the frames ({height}x{width})')


def random_crop_box(height: int, width: int, size: int, rng: np.random.Generator) -> CropBox:
  """A uniformly random ``size x size`` box of a ``height x width`` frame (``y``, then ``x``
  drawn from ``rng``)."""
  _check_crop(height, width, size)
  y = int(rng.integers(0, height - size + 1))
  x = int(rng.integers(0, width - size + 1))
  return CropBox(y, x, size, size, size)


def random_crop(frames: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  """The same random ``size`` x ``size`` crop of every frame (:func:`random_crop_box`)."""
  return apply_box(frames, random_crop_box(*np.shape(frames)[1:3], size, rng))


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
  h, w = frames.shape[1:3]
  _check_crop(h, w, size)
  y, x = (h - size) // 2, (w - size) // 2
  return frames[:, y:y + size, x:x + size]


def spatial_crop(frames: np.ndarray, size: int, index: int, num_crops: int = 3) -> np.ndarray:
  """Crop ``index`` of ``num_crops`` (:func:`bat_jax.data.views.crop_box`).

  ``num_crops == 1`` is the centre crop; 3 crops: left/top, centre, right/bottom along the long
  side; 10 crops: 4 corners + centre, then the same 5 flipped horizontally.
  """
  _check_crop(*frames.shape[1:3], size)
  return views.apply_crop(frames, size, index, num_crops)


def horizontal_flip(frames: np.ndarray) -> np.ndarray:
  return frames[:, :, ::-1]


def multiscale_crop_candidates(height: int, width: int, crop_size: int,
                               scales: Sequence[float] = MULTISCALE_SCALES,
                               max_distort: int = 1) -> list[tuple[int, int, int, int]]:
  """Every crop ``(y, x, h, w)`` TSN's ``GroupMultiScaleCrop`` (``fix_crop``,
  ``more_fix_crop``) can take from a ``height x width`` frame; each is equally likely.

  Sizes: ``int(min(height, width) * s)`` for ``s`` in ``scales``, replaced by ``crop_size`` when
  within 3 pixels of it; the pairs ``(h_i, w_j)`` with ``|i - j| <= max_distort``, in the order
  ``i`` (height) then ``j`` (width). Offsets of each pair, with ``dx = (width - w) // 4`` and
  ``dy = (height - h) // 4``, as multiples ``(x / dx, y / dy)``: (0, 0), (4, 0), (0, 4), (4, 4),
  (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3). TSN draws a pair and
  then one of its 13 offsets uniformly, i.e. one of these ``13 x pairs`` entries uniformly.
  """
  if crop_size <= 0 or max_distort < 0 or not scales:
    raise ValueError(f'multiscale crop: crop_size {crop_size}, max_distort {max_distort} and '
                     f'scales {tuple(scales)} must be positive / >= 0 / non-empty')
  base = min(height, width)
  sizes = [crop_size if abs(int(base * s) - crop_size) < 3 else int(base * s) for s in scales]
  if any(not 0 < z <= base for z in sizes):
    raise ValueError(f'multiscale crop: scales {tuple(scales)} of the short side {base} give '
                     f'crop sizes {sizes}; each must be in [1, {base}]')
  fixed = ((0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0),
           (1, 1), (3, 1), (1, 3), (3, 3))
  out = []
  for i, h in enumerate(sizes):
    for j, w in enumerate(sizes):
      if abs(i - j) > max_distort:
        continue
      dx, dy = (width - w) // 4, (height - h) // 4
      out.extend((a * dy, b * dx, h, w) for b, a in fixed)
  return out


def multiscale_crop_box(height: int, width: int, crop_size: int, rng: np.random.Generator,
                        scales: Sequence[float] = MULTISCALE_SCALES,
                        max_distort: int = 1) -> CropBox:
  """One of :func:`multiscale_crop_candidates` drawn uniformly from ``rng``, to be resized to
  ``crop_size x crop_size``."""
  candidates = multiscale_crop_candidates(height, width, crop_size, scales, max_distort)
  y, x, h, w = candidates[int(rng.integers(len(candidates)))]
  return CropBox(y, x, h, w, crop_size)


def multiscale_crop(frames: np.ndarray, crop_size: int, rng: np.random.Generator,
                    scales: Sequence[float] = MULTISCALE_SCALES,
                    max_distort: int = 1) -> np.ndarray:
  """:func:`multiscale_crop_box`, the same for every frame, resized (PIL bilinear, as TSN) to
  ``crop_size x crop_size``."""
  frames = np.asarray(frames)
  return apply_box(frames, multiscale_crop_box(*frames.shape[1:3], crop_size, rng, scales,
                                               max_distort))


def check_train_augment(augment: str, short_side_range: Sequence[int]) -> None:
  """Raises ``ValueError`` naming ``config.data.train_augment`` / ``train_short_side`` when
  they do not go together."""
  if augment not in TRAIN_AUGMENTS:
    raise ValueError(f'config.data.train_augment={augment!r}; allowed: {list(TRAIN_AUGMENTS)}')
  lo, hi = (int(x) for x in short_side_range)
  if augment == 'multiscale_crop' and lo != hi:
    raise ValueError(f'config.data.train_short_side=({lo}, {hi}): train_augment='
                     "'multiscale_crop' decodes at one short side (give it twice)")


def train_transform(path, rng: np.random.Generator, *, num_frames: int, stride: int,
                    crop_size: int, short_side_range: Sequence[int], flip: bool = True,
                    sampling: str = 'dense', augment: str = 'scale_jitter',
                    start: int | None = None) -> np.ndarray:
  """Decode a random clip, crop, horizontal flip with p = 0.5 (none when ``flip`` is False)
  -> uint8 (T, crop, crop, 3). ``augment``: ``'scale_jitter'`` (short side uniform
  in the inclusive range, random ``crop x crop`` crop) or ``'multiscale_crop'`` (short side
  ``short_side_range[0]``, which must equal ``[1]``; :func:`multiscale_crop`). ``sampling``:
  ``'dense'`` (``num_frames`` x ``stride`` window) or ``'segments'`` (TSN, random frame per
  segment; ``stride`` unused). Frame stores and folders resize only the crop's box (one resize
  from the source pixels; :mod:`bat_jax.data.decode`), videos the whole frame. ``start``: the
  dense window's first frame (an int, clamped to the valid starts; Charades draws it to label the
  window) or None (uniformly random from ``rng``)."""
  lo, hi = int(short_side_range[0]), int(short_side_range[1])
  if lo < crop_size:
    raise ValueError(f'short side {lo} smaller than the crop {crop_size}')
  check_train_augment(augment, (lo, hi))
  short = int(rng.integers(lo, hi + 1))
  # The crop is drawn from the resized frames' size (after the start: the same draws in the same
  # order for every source), so frame stores and folders resize only the box they keep.
  box = multiscale_crop_box if augment == 'multiscale_crop' else random_crop_box

  def crop(height: int, width: int) -> CropBox:
    return box(height, width, crop_size, rng)

  if sampling == 'segments':
    clip = decode_segments(path, num_frames, rng, train=True, short_side=short, crop=crop)
  elif sampling == 'dense':
    clip = decode_clip(path, num_frames, stride, start, rng, short_side=short, crop=crop)
  else:
    raise ValueError(f'sampling={sampling!r}; allowed: {list(SAMPLINGS)}')
  if flip and rng.random() < 0.5:
    clip = horizontal_flip(clip)
  return clip


def eval_transform(path, *, num_frames: int, stride: int, crop_size: int, short_side: int,
                   clip_index: int = 0, num_clips: int = 1, crop_index: int = 0,
                   num_crops: int = 1, sampling: str = 'dense') -> np.ndarray:
  """Deterministic view: clip ``clip_index`` of ``num_clips`` (centre when 1) and crop
  ``crop_index`` of ``num_crops`` (centre when 1; 3: along the long side; 10: corners, centre and
  their flips) -> uint8 (T, crop, crop, 3). Positions: :mod:`bat_jax.data.views`.
  ``sampling='segments'``: TSN segment centres (clip ``k`` of ``K``: the fraction ``(k + 1/2) / K``
  of every segment, :func:`bat_jax.data.decode.segment_indices`) instead of a dense window."""
  if short_side < crop_size:
    raise ValueError(f'short side {short_side} smaller than the crop {crop_size}')
  if not 0 <= clip_index < num_clips:
    raise ValueError(f'clip_index {clip_index} not in [0, {num_clips})')
  if sampling == 'segments':
    clip = decode_segments(path, num_frames, train=False, clip_index=clip_index,
                           num_clips=num_clips, short_side=short_side)
  elif sampling == 'dense':
    start = ('center' if num_clips == 1 else
             fractions.Fraction(int(clip_index), int(num_clips) - 1))
    clip = decode_clip(path, num_frames, stride, start, short_side=short_side)
  else:
    raise ValueError(f'sampling={sampling!r}; allowed: {list(SAMPLINGS)}')
  return spatial_crop(clip, crop_size, crop_index, num_crops)
