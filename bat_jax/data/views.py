"""Multi-view video evaluation: which clips and crops a video's views are, and how they combine.

Pure numpy (no JAX): the sampling functions also run inside grain workers
(:func:`bat_jax.data.video.eval_transform` uses them).

Protocols (``bat_cvpr2020.md`` §4.1, ``bat_supplementary.md`` §2 and Table 2):

=========  =====  =====  ===========================  ==========================================
protocol   clips  crops  crop size                    what
=========  =====  =====  ===========================  ==========================================
clip       1      1      ``data.crop_size``           centre clip, centre crop ("clip top-1")
30view     10     3      ``data.eval_short_side``     fully convolutional: 3 full-short-side
                                                      squares along the long side (left, centre,
                                                      right), the model runs at 256 x 256
250view    25     10     ``data.crop_size``           5 positions (4 corners + centre) x flip
rsa        1 / 2  1      ``data.crop_size``           frames resized to ``data.eval_frame_size``
                                                      (240 x 320), centre crop; clips from
                                                      ``config.eval_num_clips``
=========  =====  =====  ===========================  ==========================================

Frames are resized to short side ``data.eval_short_side`` first (256 for Kinetics; the toy
demo's config says 64), except in ``rsa``, which resizes every frame to exactly
``data.eval_frame_size`` = (H, W) = (240, 320), whatever its aspect ratio
(``rsa_neurips2021_supplementary.md`` §1 "Testing": "resize them to 240 x 320, and center-crop by
224 x 224"). The video prediction is the mean of the softmax over the video's views
(the released BAT code averages logits; :class:`ViewAccumulator` reports both).

Clip starts (temporal). A clip of ``T`` frames at stride ``tau`` spans ``window = (T - 1) tau + 1``
frames; the valid starts of an ``n``-frame video are ``0 .. n - window``. Clip ``k`` of ``K`` starts
at ``round_half_up(k (n - window) / (K - 1))`` in exact integer arithmetic: the first clip starts at
frame 0, the last one ends on the last frame, and neighbouring starts differ by
``floor`` or ``ceil`` of ``(n - window) / (K - 1)`` -- the clips are spread evenly over the whole
video (Wang et al.'s non-local testing and PySlowFast's ``use_offset`` sampling; PySlowFast's
default ``k (n - window) / K`` never reaches the end, TSN takes segment centres). With ``K = 1``
the clip is the centre one, ``round_half_up((n - window) / 2)``. A video shorter than the window
has the single start 0 (its frames loop, :func:`bat_jax.data.decode.clip_indices`), so all its
clips are the same.

Crop positions (spatial), after the short-side resize to an ``h x w`` frame:

* 1 crop: centre, ``((h - s) // 2, (w - s) // 2)``;
* 3 crops: along the long side at offsets ``0``, ``(L - s) // 2``, ``L - s`` (left / centre /
  right for landscape frames, top / centre / bottom for portrait ones), centred on the short side;
  with ``s`` = the short side these three squares cover the whole frame;
* 10 crops: crop ``c`` is position ``c % 5`` of (top-left, top-right, bottom-left, bottom-right,
  centre), flipped horizontally when ``c >= 5``. torchvision's ``TenCrop`` flips the image and
  then takes the five positions; the set of 10 views is the same (the flipped image's top-left
  crop is the mirror of the top-right crop), only the order differs.
"""

from __future__ import annotations

import dataclasses
import numpy as np

__all__ = ['ViewSpec', 'PROTOCOL_VIEWS', 'clip_window', 'clip_start', 'clip_starts', 'crop_box',
           'crop_boxes', 'apply_crop', 'softmax', 'ViewAccumulator', 'video_metric_sums',
           'metrics_from_sums']


@dataclasses.dataclass(frozen=True)
class ViewSpec:
  """``num_clips`` x ``num_crops`` views per video; ``crop`` names the ``config.data`` field that
  gives the crop size (``'crop_size'`` or ``'eval_short_side'``); ``frame_size`` ``(H, W)``:
  frames are resized to exactly that size first (RSA's protocol) instead of to the short side
  ``data.eval_short_side``."""
  num_clips: int
  num_crops: int
  crop: str
  frame_size: tuple[int, int] | None = None

  @property
  def num_views(self) -> int:
    return self.num_clips * self.num_crops


PROTOCOL_VIEWS = {
    'clip': ViewSpec(1, 1, 'crop_size'),
    '30view': ViewSpec(10, 3, 'eval_short_side'),
    '250view': ViewSpec(25, 10, 'crop_size'),
}

_TEN_CROP_POSITIONS = ('top_left', 'top_right', 'bottom_left', 'bottom_right', 'center')


# ------------------------------------------------------------------------------------------------
# Temporal sampling.


def clip_window(num_frames: int, stride: int) -> int:
  """Frames spanned by a clip of ``num_frames`` frames taken every ``stride`` frames."""
  return (int(num_frames) - 1) * int(stride) + 1


def clip_start(num_video_frames: int, num_frames: int, stride: int, clip_index: int,
               num_clips: int) -> int:
  """First frame of clip ``clip_index`` of ``num_clips`` (see the module docstring)."""
  if not 0 <= clip_index < num_clips:
    raise ValueError(f'clip_index {clip_index} not in [0, {num_clips})')
  max_start = max(int(num_video_frames) - clip_window(num_frames, stride), 0)
  if num_clips == 1:
    num, den = max_start, 2
  else:
    num, den = clip_index * max_start, num_clips - 1
  return (2 * num + den) // (2 * den)  # floor(num / den + 1/2), exactly


def clip_starts(num_video_frames: int, num_frames: int, stride: int,
                num_clips: int) -> np.ndarray:
  """Start frames of all ``num_clips`` clips, (num_clips,) int."""
  return np.asarray([clip_start(num_video_frames, num_frames, stride, k, num_clips)
                     for k in range(num_clips)], np.int64)


# ------------------------------------------------------------------------------------------------
# Spatial sampling.


def crop_box(height: int, width: int, size: int, crop_index: int,
             num_crops: int) -> tuple[int, int, bool]:
  """``(top, left, flip)`` of crop ``crop_index`` of ``num_crops`` (1, 3 or 10) of a ``size`` x
  ``size`` square in a ``height`` x ``width`` frame."""
  h, w, s = int(height), int(width), int(size)
  if h < s or w < s:
    raise ValueError(f'crop {s} larger than the frames ({h}x{w})')
  if not 0 <= crop_index < num_crops:
    raise ValueError(f'crop_index {crop_index} not in [0, {num_crops})')
  cy, cx = (h - s) // 2, (w - s) // 2
  if num_crops == 1:
    return cy, cx, False
  if num_crops == 3:
    if w >= h:  # landscape (or square): left, centre, right
      return cy, (0, cx, w - s)[crop_index], False
    return (0, cy, h - s)[crop_index], cx, False
  if num_crops == 10:
    position = _TEN_CROP_POSITIONS[crop_index % 5]
    top, left = {'top_left': (0, 0), 'top_right': (0, w - s), 'bottom_left': (h - s, 0),
                 'bottom_right': (h - s, w - s), 'center': (cy, cx)}[position]
    return top, left, crop_index >= 5
  raise ValueError(f'num_crops={num_crops}; allowed: 1, 3, 10')


def crop_boxes(height: int, width: int, size: int, num_crops: int) -> list[tuple[int, int, bool]]:
  return [crop_box(height, width, size, c, num_crops) for c in range(num_crops)]


def apply_crop(frames: np.ndarray, size: int, crop_index: int, num_crops: int) -> np.ndarray:
  """Crop ``crop_index`` of ``num_crops`` of frames ``(..., H, W, C)`` (flipped along W if the
  view says so)."""
  h, w = frames.shape[-3], frames.shape[-2]
  top, left, flip = crop_box(h, w, size, crop_index, num_crops)
  out = frames[..., top:top + size, left:left + size, :]
  return out[..., ::-1, :] if flip else out


def describe(protocol: str, spec: ViewSpec, crop_size: int, short_side: int) -> str:
  """One line for logs: ``30view: 10 clips x 3 crops of 256x256 at short side 256`` (``rsa: ...
  of frames resized to 240x320``)."""
  size = (f'frames resized to {spec.frame_size[0]}x{spec.frame_size[1]}' if spec.frame_size
          else f'short side {short_side}')
  return (f'{protocol}: {spec.num_clips} clip(s) x {spec.num_crops} crop(s) of '
          f'{crop_size}x{crop_size} at {size}')

