r"""Where a BAT-Block looks: attention maps of a trained run, as PNGs (matplotlib, Agg).

  python -m bat_jax.tools.visualize --config=configs/demo_toy_c2d_3dbat.py \
      --workdir=workdirs/demo --video=data/toy_video/val/red_up/red_up_val_0000.mp4 \
      --out=workdirs/demo/attention [--block=res4_bat1] [--positions='1,1;3,2'] [--step=-1]
  python -m bat_jax.tools.visualize --config=configs/imagenet_r50_bat.py --workdir=DIR \
      --image=cat.jpg --out=OUT

Restores ``WORKDIR/checkpoints/<step>`` (default: the latest), runs the clip (``--video``: the
centre clip at the eval resolution, as ``evaluate.py`` sees it) or the image (``--image``;
repeated over the clip's frames for a video model) through the model with the BAT blocks'
``intermediates`` collection mutable, so each block sows its full-resolution ``P (H x H)``,
``Q (W x W)`` per frame and group, and ``T`` (frames x frames) per temporal group
(``bat_jax.blocks.bat``). For the chosen block (``--block``; default the last BAT block, the one
the papers show) it writes into ``--out``:

* ``<block>_attention.png`` -- ``bat_cvpr2020.md`` §4.4, Eq. 8: ``W = P^T A Q^T`` with ``A`` all
  ones (``W[m, n] = (sum_i P[i, m]) (sum_j Q[n, j])``: how much input position ``(m, n)`` feeds
  the whole output), one row per frame the block sees, one column per group, each map normalised
  to [0, 1] (the paper: 0-255) and laid over the input frame;
* ``<block>_contribution.png`` -- ``bat_supplementary.md`` §3, Eq. 1: contribution maps
  ``C^{ij}[m, n] = P[i, m] Q[n, j]`` (the weight of input ``(m, n)`` in output ``(i, j)``) for
  the ``--positions`` (block-resolution ``i,j``; default the centre and the top-left quarter),
  one row per position, one column per group, on frame ``--frame`` (default the middle one);
  the position is marked with a green circle as in the supplement's Figure 2;
* ``<block>_temporal.png`` (3D blocks) -- the temporal matrices ``T`` (``Z = T Y`` over frames,
  Eq. 7; rows sum to 1), one per temporal group;
* ``training_curves.png`` -- ``train_loss``, ``learning_rate`` and ``eval_top1`` against the
  step, from ``WORKDIR/metrics.jsonl`` (when present);
* ``maps.npz`` -- the arrays behind the figures (``P, Q, T, W, C, positions, frames``).

Frames shown: the block sees ``T_block`` frames (``T / 2`` after pool2); frame ``f`` of the block
is drawn over input frame ``f * T / T_block`` (the first of the frames pool2 merged).

Every panel is ``PANEL_INCHES`` square at ``DPI``, so a figure of ``r x c`` panels is
``c * PANEL_PIXELS`` by ``r * PANEL_PIXELS`` pixels.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Sequence

import matplotlib

matplotlib.use('Agg')
# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from bat_jax.data import decode as D
from bat_jax.data import video as video_lib
from bat_jax.data.normalization import input_stats, normalize
from bat_jax.models.registry import build_model, is_video
from bat_jax.ops import bilinear
from bat_jax.training import checkpoint as ckpt_lib
from bat_jax.training.metrics import quiet_library_logs, read_metrics
from bat_jax.training.state import init_input_shape
# pylint: enable=g-import-not-at-top,wrong-import-position

PANEL_INCHES = 2.0
DPI = 80
PANEL_PIXELS = int(PANEL_INCHES * DPI)
CURVES_SIZE_INCHES = (12.0, 3.5)  # training_curves.png: 960 x 280 pixels
CURVES = ('train_loss', 'learning_rate', 'eval_top1')


@dataclasses.dataclass
class BlockMaps:
  """One block's maps for one clip (batch element 0)."""
  block: str
  p: np.ndarray  # (t, k, H, H) full-resolution P per block frame and group
  q: np.ndarray  # (t, k, W, W)
  t: np.ndarray | None  # (tk, T, T) temporal matrices, 3D blocks only
  w: np.ndarray  # (t, k, H, W) Eq. 8
  positions: list[tuple[int, int]]
  c: np.ndarray  # (len(positions), t, k, H, W) supplement Eq. 1


def reprojected_attention(p: np.ndarray, q: np.ndarray) -> np.ndarray:
  """Eq. 8, ``W = P^T A Q^T`` (``A`` all ones), over the last two axes of ``p (.., H, H)`` and
  ``q (.., W, W)``."""
  return np.asarray(bilinear.reprojected_attention(p, q))


def contribution_maps(p: np.ndarray, q: np.ndarray,
                      positions: Sequence[tuple[int, int]]) -> np.ndarray:
  """Supplement Eq. 1 for each output position: ``(len(positions), .., H, W)``."""
  h, w = p.shape[-1], q.shape[-1]
  for i, j in positions:
    if not (0 <= i < h and 0 <= j < w):
      raise ValueError(f'position ({i}, {j}) is outside the block\'s {h} x {w} map')
  return np.stack([np.asarray(bilinear.contribution_map(p, q, i, j)) for i, j in positions])


def bat_blocks(variables: Any) -> list[str]:
  """Names of the BAT blocks with a transform (a ``predictor``) in stage order."""
  params = variables['params']
  names = [n for n, v in params.items() if hasattr(v, 'keys') and 'predictor' in v]
  def order(name: str) -> tuple[str, int]:
    stage, _, idx = name.rpartition('_')
    digits = ''.join(ch for ch in idx if ch.isdigit())
    return stage, int(digits or 0)
  return sorted(names, key=order)


def compute_maps(model: Any, variables: Any, clip: np.ndarray, block: str | None = None,
                 positions: Sequence[tuple[int, int]] | None = None) -> BlockMaps:
  """Runs ``clip`` (``(T, H, W, 3)`` normalised, or ``(H, W, 3)`` for an image model) and
  returns the maps of ``block`` (default: the last BAT block)."""

  blocks = bat_blocks(variables)
  if not blocks:
    raise ValueError('the model has no BAT block with a transform (model.block.type=bat, '
                     'groups > 0)')
  block = block or blocks[-1]
  if block not in blocks:
    raise ValueError(f'--block={block!r}: the model\'s BAT blocks are {blocks}')
  _, state = model.apply(variables, jnp.asarray(clip[None], jnp.float32), train=False,
                         mutable=['intermediates'])
  sown = state['intermediates'][block]
  p = np.asarray(sown['P'][0])[0]  # (t, k, H, H)
  q = np.asarray(sown['Q'][0])[0]
  t = np.asarray(sown['T'][0])[0] if 'T' in sown else None
  h, w = p.shape[-1], q.shape[-1]
  if positions is None:
    positions = [(h // 2, w // 2), (h // 4, w // 4)]
  positions = [(int(i), int(j)) for i, j in positions]
  return BlockMaps(block=block, p=p, q=q, t=t, w=reprojected_attention(p, q),
                   positions=positions, c=contribution_maps(p, q, positions))


def _normalise(m: np.ndarray) -> np.ndarray:
  lo, hi = float(m.min()), float(m.max())
  return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def _figure(rows: int, cols: int) -> tuple[Any, np.ndarray]:
  fig, axes = plt.subplots(rows, cols, figsize=(cols * PANEL_INCHES, rows * PANEL_INCHES),
                           dpi=DPI, squeeze=False)
  title_inches = 0.5  # the figure title above the panels' own titles
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01,
                      top=1.0 - title_inches / (rows * PANEL_INCHES), wspace=0.05, hspace=0.2)
  for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
  return fig, axes


def _overlay(ax: Any, frame: np.ndarray, heat: np.ndarray, title: str) -> None:
  fh, fw = frame.shape[:2]
  ax.imshow(frame)
  ax.imshow(_normalise(heat), cmap='jet', alpha=0.5, extent=(0, fw, fh, 0),
            interpolation='bilinear', vmin=0.0, vmax=1.0)
  ax.set_title(title, fontsize=7)


def _block_frame(f: int, t_block: int, t_input: int) -> int:
  return min(f * t_input // t_block, t_input - 1)


def _save(fig: Any, path: str) -> str:
  fig.savefig(path, dpi=DPI)
  plt.close(fig)
  return path


def write_attention_png(maps: BlockMaps, frames: np.ndarray, path: str) -> str:
  """Eq. 8 maps: rows = block frames, columns = input frame + one per group."""
  t, k = maps.w.shape[:2]
  fig, axes = _figure(t, k + 1)
  fig.suptitle(f'{maps.block}: reprojected attention $W = P^\\top A\\, Q^\\top$ (Eq. 8)',
               fontsize=8)
  for f in range(t):
    frame = frames[_block_frame(f, t, len(frames))]
    axes[f, 0].imshow(frame)
    axes[f, 0].set_title(f'frame {_block_frame(f, t, len(frames))}', fontsize=7)
    for g in range(k):
      _overlay(axes[f, g + 1], frame, maps.w[f, g], f'group {g}')
  return _save(fig, path)


def write_contribution_png(maps: BlockMaps, frames: np.ndarray, path: str,
                           frame: int | None = None) -> str:
  """Supplement Eq. 1: rows = output positions, columns = input frame + one per group."""
  t, k, h, w = maps.w.shape
  f = t // 2 if frame is None else frame
  if not 0 <= f < t:
    raise ValueError(f'--frame={f}: the block sees frames 0..{t - 1}')
  image = frames[_block_frame(f, t, len(frames))]
  fh, fw = image.shape[:2]
  fig, axes = _figure(len(maps.positions), k + 1)
  fig.suptitle(f'{maps.block}: contribution maps $C^{{ij}}_{{mn}} = P_{{im}} Q_{{nj}}$ '
               f'(supp. Eq. 1), block frame {f}', fontsize=8)
  for r, (i, j) in enumerate(maps.positions):
    centre = ((j + 0.5) * fw / w, (i + 0.5) * fh / h)
    axes[r, 0].imshow(image)
    axes[r, 0].set_title(f'output ({i}, {j})', fontsize=7)
    for g in range(k):
      _overlay(axes[r, g + 1], image, maps.c[r, f, g], f'group {g}')
    for ax in axes[r]:
      ax.add_patch(plt.Circle(centre, radius=max(fh, fw) / 20, fill=False, color='lime', lw=1.5))
  return _save(fig, path)


def write_temporal_png(maps: BlockMaps, path: str) -> str | None:
  """The temporal matrices of a 3D block, one panel per temporal group."""
  if maps.t is None:
    return None
  tk, n, _ = maps.t.shape
  fig, axes = _figure(1, tk)
  fig.suptitle(f'{maps.block}: temporal T (row: output frame)', fontsize=8)
  for g in range(tk):
    ax = axes[0, g]
    top = max(float(maps.t.max()), 1e-6)
    ax.imshow(maps.t[g], cmap='viridis', vmin=0.0, vmax=top)
    ax.set_title(f'temporal group {g}', fontsize=7)
    if n <= 8:
      for a in range(n):
        for b in range(n):
          ax.text(b, a, f'{maps.t[g, a, b]:.2f}', ha='center', va='center', fontsize=5,
                  color='w' if maps.t[g, a, b] < 0.6 * top else 'k')
  return _save(fig, path)


def write_training_curves(workdir: str, path: str) -> str | None:
  """``train_loss``, ``learning_rate``, ``eval_top1`` vs step from ``metrics.jsonl``."""
  lines = read_metrics(workdir)
  if not lines:
    return None
  fig, axes = plt.subplots(1, len(CURVES), figsize=CURVES_SIZE_INCHES, dpi=DPI, squeeze=False)
  fig.subplots_adjust(left=0.06, right=0.98, bottom=0.15, top=0.85, wspace=0.3)
  for ax, key in zip(axes[0], CURVES):
    pts = [(m['step'], m[key]) for m in lines if key in m and 'step' in m]
    if pts:
      xs, ys = zip(*pts)
      ax.plot(xs, ys, marker='o' if len(pts) < 30 else None, markersize=3)
    ax.set_title(key, fontsize=9)
    ax.set_xlabel('step', fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
  fig.suptitle(os.path.basename(os.path.normpath(workdir)), fontsize=9)
  return _save(fig, path)


def write_all(maps: BlockMaps, frames: np.ndarray, out: str, workdir: str | None = None,
              frame: int | None = None) -> list[str]:
  """Every PNG (and ``maps.npz``) for ``maps`` into ``out``; returns the paths written."""
  os.makedirs(out, exist_ok=True)
  paths = [write_attention_png(maps, frames, os.path.join(out, f'{maps.block}_attention.png')),
           write_contribution_png(maps, frames, os.path.join(out,
                                                             f'{maps.block}_contribution.png'),
                                  frame)]
  temporal = write_temporal_png(maps, os.path.join(out, f'{maps.block}_temporal.png'))
  if temporal:
    paths.append(temporal)
  if workdir:
    curves = write_training_curves(workdir, os.path.join(out, 'training_curves.png'))
    if curves:
      paths.append(curves)
  npz = os.path.join(out, 'maps.npz')
  np.savez_compressed(npz, P=maps.p, Q=maps.q, W=maps.w, C=maps.c,
                      positions=np.asarray(maps.positions),
                      T=maps.t if maps.t is not None else np.zeros((0,)), frames=frames)
  return paths + [npz]


# ---------------------------------------------------------------------------------------------
# Inputs and the run's variables.


def _data_get(config: Any, name: str, default: Any) -> Any:
  data = config.get('data') or {}
  value = data.get(name, default) if hasattr(data, 'get') else default
  return default if value is None else value


def load_input(config: Any, video: str | None = None,
               image: str | None = None) -> tuple[np.ndarray, np.ndarray]:
  """``(model input, uint8 frames to draw on)``: a clip ``(T, H, W, 3)`` for video models, an
  image ``(H, W, 3)`` otherwise (frames are always ``(T, H, W, 3)``)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top


  if (video is None) == (image is None):
    raise ValueError('give exactly one of --video and --image')
  size = tuple(int(s) for s in config.model.input_size)
  crop = int(_data_get(config, 'crop_size', size[-1]))
  short = int(_data_get(config, 'eval_short_side', _data_get(config, 'eval_resize', crop)))
  if video is not None:
    num_frames = int(_data_get(config, 'num_frames', size[0] if len(size) == 3 else 1))
    stride = int(_data_get(config, 'frame_stride', 1))
    frames = D.decode_clip(video, num_frames, stride, 'center', short_side=short)
  else:
    with Image.open(image) as im:
      frame = np.asarray(im.convert('RGB'))
    frames = video_lib.resize_short_side(frame[None], short)
    if is_video(config.model):
      frames = np.repeat(frames, size[0], axis=0)
  frames = video_lib.center_crop(frames, crop)
  x = np.asarray(normalize(frames, input_stats(config.get('data') or {})))  # the steps' formula
  if not is_video(config.model):
    x, frames = x[len(x) // 2], frames[len(frames) // 2:len(frames) // 2 + 1]
  return x, frames


def restore_variables(config: Any, workdir: str, step: int | None = None) -> tuple[Any, Any, int]:
  """``(model, variables, step)`` of ``WORKDIR/checkpoints/<step>`` (default: the latest).

  Read-only: unlike ``evaluate.py`` no ``CheckpointManager`` is opened (it would clean up the
  temporary directories of a run that is still saving), so a live run can be visualised."""


  model = build_model(config.model)
  ckpt_dir = os.path.join(os.path.abspath(workdir), 'checkpoints')
  steps = sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit() and os.path.isdir(
      os.path.join(ckpt_dir, n, 'state'))) if os.path.isdir(ckpt_dir) else []
  if not steps:
    raise ValueError(f'no checkpoint in {ckpt_dir}')
  step = steps[-1] if step is None or step < 0 else step
  if step not in steps:
    raise ValueError(f'--step={step}: {ckpt_dir} has steps {steps}')
  state_dir = ckpt_lib.resolve_state_dir(os.path.join(ckpt_dir, str(step)))
  shapes = jax.eval_shape(lambda k: model.init({'params': k, 'dropout': k}, jnp.zeros(
      init_input_shape(config.model), jnp.float32), train=False), jax.random.key(0))
  target = {'params': shapes['params'], 'batch_stats': shapes.get('batch_stats', {})}
  diff = ckpt_lib.diff_trees(
      ckpt_lib.variables_only(ckpt_lib.flat_shapes(ckpt_lib.tree_metadata(state_dir))),
      ckpt_lib.flat_shapes(target))
  if diff:
    raise ValueError(f'{state_dir.parent} was written by another model than config.model:\n'
                     f'{diff.describe()}')
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                        target)
  variables = ckpt_lib.partial_restore(state_dir, target)
  return model, variables, int(step)


def parse_positions(text: str) -> list[tuple[int, int]] | None:
  """``'i,j;i,j'`` -> ``[(i, j), ...]`` (empty: None, the default positions)."""
  if not text:
    return None
  out = []
  for part in text.split(';'):
    i, j = part.split(',')
    out.append((int(i), int(j)))
  return out


def visualize(config: Any, workdir: str, out: str, *, video: str | None = None,
              image: str | None = None, block: str | None = None,
              positions: Sequence[tuple[int, int]] | None = None, frame: int | None = None,
              step: int | None = None) -> list[str]:
  model, variables, step = restore_variables(config, workdir, step)
  x, frames = load_input(config, video, image)
  maps = compute_maps(model, variables, x, block, positions)
  paths = write_all(maps, frames, out, workdir, frame)
  print(f'{maps.block} at step {step}: wrote\n' + '\n'.join(f'  {p}' for p in paths))
  return paths


def main(argv: Sequence[str] | None = None) -> None:
  config = config_flags.DEFINE_config_file('config', None, 'The run\'s config.', lock_config=True)
  workdir = flags.DEFINE_string('workdir', None, 'Run directory (checkpoints/, metrics.jsonl).')
  video = flags.DEFINE_string('video', None, 'A video file (the centre clip is used).')
  image = flags.DEFINE_string('image', None, 'An image file.')
  out = flags.DEFINE_string('out', None, 'Output directory for the PNGs.')
  block = flags.DEFINE_string('block', None, 'BAT block, e.g. res4_bat1 (default: the last).')
  positions = flags.DEFINE_string('positions', '', 'Output positions i,j;i,j (block '
                                  'resolution) for the contribution maps.')
  frame = flags.DEFINE_integer('frame', None, 'Block frame of the contribution maps.')
  step = flags.DEFINE_integer('step', -1, 'Checkpoint step; -1: the latest.')
  flags.mark_flags_as_required(['config', 'workdir', 'out'])

  def run(args: list[str]) -> None:
    if len(args) > 1:
      raise app.UsageError(f'unexpected arguments: {args[1:]}')
    quiet_library_logs()
    try:
      visualize(config.value, workdir.value, out.value, video=video.value, image=image.value,
                block=block.value, positions=parse_positions(positions.value),
                frame=frame.value, step=step.value)
    except ValueError as e:
      sys.exit(f'visualize: {e}')

  app.run(run, argv=list(argv) if argv is not None else None)


if __name__ == '__main__':
  main()
