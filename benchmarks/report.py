r"""Writes ``benchmarks/RESULTS.md`` from the JSON that ``models.py``, ``blocks.py``, ``ops.py``,
``precision.py``, ``pipeline.py --compare``, ``store_resize.py`` and ``checkouts.py`` wrote.

    python benchmarks/report.py    # reads benchmarks/results/{models,blocks,ops,precision,
                                   #   pipeline_compare,store_resize,checkouts}.json

Every number in RESULTS.md comes from those files (no hand-copied figures): the machine, the
target ratios with pass / miss marks, the model tables, and the block grid pivoted so that a row
is one shape and a column one block.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkouts as checkouts_bench  # noqa: E402  pylint: disable=g-import-not-at-top
import common  # noqa: E402  pylint: disable=g-import-not-at-top

# (key in models.json 'targets', description, limit (None: reported only), True if the measured
# value must be <= limit)
TARGETS = (
    ('target1_train_ratio', '1. C2D + 3D-BAT / C2D, train step time', 1.27, True),
    ('target1_infer_ratio', '1. C2D + 3D-BAT / C2D, inference time', 1.27, True),
    ('target2_jax_over_torch_train_time', '2. JAX ResNet-50 / torch ResNet-50, train step time',
     1.0, True),
    ('target2_jax_over_torch_infer_time', '   JAX ResNet-50 / torch ResNet-50, inference time',
     None, True),
)


def _load(path: str) -> dict[str, Any] | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _mark(ok: bool) -> str:
  return '**met**' if ok else '**not met**'


# Input-pipeline targets (issue 15, item 6): (row video or None for the multi-view row, key,
# description, limit).
PIPELINE_TARGETS = (
    ('340x256 keyint 250', 'ours_over_pyslowfast',
     'training clips/s, ours / PySlowFast-style, 340x256 keyint 250', 2.0),
    ('340x256 prepared (keyint 32)', 'ours_over_pyslowfast',
     'training clips/s, ours / PySlowFast-style, after prepare_videos', 3.0),
    ('340x256 prepared (keyint 32)', 'ours_over_limit',
     'training clips/s / decode-only limit (fps / 57-frame window), after prepare_videos', 0.6),
    (None, 'frames_ratio', '30-view: decoded frames per video, per view / one decode', 5.0),
)


def pipeline_section(cmp: dict[str, Any]) -> list[str]:
  """The reader comparison of ``benchmarks/pipeline.py --compare`` with the item-6 targets."""
  rows = {r['video']: r for r in cmp['rows']}
  mv = cmp['multiview_30view']
  m = cmp['machine']
  lines = ['## Input pipeline: our reader against PySlowFast\'s PyAV path', '',
           f"Machine: {m['cpu']}, {m['cores']} usable cores, Python {m['python']}, PyAV "
           f"{m['pyav']}; load average {cmp['load_average'][0]:.2f} -> "
           f"{cmp['load_average_after'][0]:.2f} (the cores were shared with other jobs; times are "
           'the process\'s CPU seconds, so clips/s are per core, and ratios are paired per '
           'round). Command: `python '
           f"benchmarks/pipeline.py --compare --rounds {cmp['rounds']} --clips "
           f"{cmp['clips_per_round']}`; one process, one thread; 8 x 8 clips, short side U[256, "
           '320], 224 crop, flip; ours returns uint8 (normalised on the device), the '
           'PySlowFast-style reader float32 normalised on the host, as PySlowFast. Method: '
           '[docs/performance.md](../docs/performance.md'
           '#input-pipeline).', '',
           '| target | measured | limit |  |', '|---|---|---|---|']
  for video, key, what, limit in PIPELINE_TARGETS:
    value = mv[key] if video is None else rows[video][key]
    lines.append(f'| {what} | {value:.2f} | >= {limit} | {_mark(value >= limit)} |')
  fs = cmp['frame_store']
  lines += [f"| training clips/s, frame store (`--format=frames`) / video path, same prepared "
            f"content | {fs['frames_over_video']:.2f} | >= 3.0 | "
            f"{_mark(fs['frames_over_video'] >= 3.0)} |", '',
            '| video | MB | decode-only frames/s | limit clips/s | ours clips/s | ours without '
            'skip_frame | PySlowFast-style clips/s | ours / PySlowFast | ours / limit |',
            '|---|---|---|---|---|---|---|---|---|']
  for r in cmp['rows']:
    lines.append(f"| {r['video']} | {r['bytes'] / 1e6:.2f} | {r['decode_only_fps']:.0f} | "
                 f"{r['limit_clips_per_s']:.1f} | {r['ours_clips_per_s']:.1f} | "
                 f"{r['ours_no_skip_clips_per_s']:.1f} | {r['pyslowfast_clips_per_s']:.1f} | "
                 f"{r['ours_over_pyslowfast']:.2f} | {r['ours_over_limit']:.2f} |")
  stages = list(cmp['rows'][0]['stages_ms'])
  lines += ['', 'Where one of our training clips goes (ms, mean over the breakdown clips; '
            '"frames" = frames the decoder returned before / inside the window):', '',
            '| video | ' + ' | '.join(stages) + ' | frames before + in window |',
            '|---|' + '---|' * (len(stages) + 1)]
  for r in cmp['rows']:
    lines.append(f"| {r['video']} | " + ' | '.join(f"{r['stages_ms'][k]:.1f}" for k in stages) +
                 f" | {r['frames_before_window']:.0f} + {r['frames_window']:.0f} |")
  lines += ['', f"Frame store against the video path on the same content ({fs['video']}; store "
            f"written by `prepare_videos --format=frames --short-side {fs['short_side']}`, JPEG "
            f"quality {fs['jpeg_quality']}, {fs['frames']} frames; both read by the same "
            '`train_transform` in the same rounds):', '',
            '| reader | MB on disk | training clips/s | records read + JPEG decode only, clips/s |',
            '|---|---|---|---|',
            f"| video (mp4) | {fs['mp4_bytes'] / 1e6:.2f} | {fs['video_clips_per_s']:.1f} | – |",
            f"| frame store | {fs['store_bytes'] / 1e6:.2f} ({fs['size_ratio']:.1f}x) | "
            f"{fs['clips_per_s']:.1f} | {fs['decode_only_clips_per_s']:.1f} |", '',
            'Where a frame-store training clip goes (ms, mean): ' +
            ', '.join(f'{k} {v:.1f}' for k, v in fs['stages_ms'].items()) + '.']
  lines += ['', f"30-view evaluation of the 340x256 keyint-250 video: {mv['per_view_frames']} "
            f"decoded frames per video per view, {mv['one_decode_frames']} with one decode "
            f"({mv['frames_ratio']:.1f}x fewer); {mv['per_view_views_per_s']:.1f} -> "
            f"{mv['one_decode_views_per_s']:.1f} views/s ({mv['speedup']:.2f}x).", '']
  return lines


def store_resize_section(sr: dict[str, Any]) -> list[str]:
  """The frame-store decode + resize alternatives of ``benchmarks/store_resize.py``."""
  lines = ['### Frame store: JPEG decode + resize alternatives for one clip\'s 8 frames', '',
           f"Machine: {sr['machine']}, {sr['cores']} usable cores, load average "
           f"{sr['load_average'][0]:.2f}. Command: `python benchmarks/store_resize.py --rounds "
           f"{sr['rows'][0]['rounds']}`. CPU time of the reading thread (median over rounds, a "
           'fresh jittered short side per round), the ratio to the reader (`pil`) as the median of '
           'per-round ratios; accuracy on 0-255 against the video path\'s frames at the same size '
           'and against the reader. Alternatives: the script\'s docstring.', '']
  for row in sr['rows']:
    lines += [f"Store frames {row['stored']}, short side U{row['short_side_range']}:", '',
              '| alternative | CPU ms | / pil | mean abs vs video | max abs vs pil |',
              '|---|---|---|---|---|']
    for k, v in row['alternatives'].items():
      acc = ('– | –' if v['mean_abs_vs_video'] is None else
             f"{v['mean_abs_vs_video']:.2f} | {v['max_abs_vs_pil']}")
      lines.append(f"| {k} | {v['cpu_ms']:.2f} | {v['over_pil']:.3f} | {acc} |")
    lines.append('')
  return lines


def machine_line(m: dict[str, Any]) -> str:
  return (f"{m['cpu']}, {m['nproc']} cores, {m['memory']}, Python {m['python']}, jax "
          f"{m.get('jax')} ({m.get('backend')}), run {m['date']}, load average "
          f"{m['load_average_start']:.2f} -> {m.get('load_average_end', float('nan')):.2f}")


def targets_section(models: dict[str, Any], peers: Sequence[dict[str, Any]] = ()) -> list[str]:
  """The targets table; ``peers`` are extra runs of ResNet-50 against the torch peer alone
  (``models_r50_peer*.json``), listed under target 2."""
  t = models.get('targets', {})
  rows = []
  for key, what, limit, upper in TARGETS:
    for peer in peers if key == 'target2_jax_over_torch_infer_time' else ():
      v = peer['targets']['target2_jax_over_torch_train_time']
      env = peer['machine'].get('glibc_tunables', '')
      rows.append({'what': f"   same, these two rows alone ({peer['args']['repeats']} rounds"
                           + (f', both with GLIBC_TUNABLES={env})' if env else ')'),
                   'value': v, 'limit': '<= 1.0', 'status': _mark(v <= 1.0)})
    if key in t:
      v = t[key]
      if limit is None:
        rows.append({'what': what, 'value': v, 'limit': 'reported', 'status': ''})
        continue
      rows.append({'what': what, 'value': v, 'limit': f"{'<=' if upper else '>='} {limit}",
                   'status': _mark(v <= limit if upper else v >= limit)})
  if 'target1_mac_ratio' in t:
    rows.insert(2, {'what': '   (the multiply-add ratio of the two models)',
                    'value': t['target1_mac_ratio'], 'limit': '', 'status': ''})
  by_key = {r['key']: r for r in models['rows']}
  for key in ('c2d_3dbat@bfloat16', 'r50@bfloat16'):
    r = by_key.get(key)
    if r:
      rows.append({'what': f"3. bf16 / float32 train step time, {r['label']} (CPU: no bf16 "
                           'matrix units)', 'value': r['train_ratio'], 'limit': 'reported',
                   'status': ''})
  long = [r for r in models.get('long_clips', []) if r['frames'] == 64 and r['batch'] == 1]
  for r in long:
    ok = r['peak_gib'] < 24 and r.get('finite', False)
    rows.append({'what': f"4. C2D + 3D-BAT 64x224^2 batch 1 train step, remat {r['remat_stages']}:"
                         ' peak GiB', 'value': r['peak_gib'], 'limit': '< 24 (and one step runs)',
                 'status': _mark(ok)})
  pipe = models.get('pipeline', {}).get('rows', [])
  c2d = by_key.get('c2d')
  if pipe and c2d:
    best = max(pipe, key=lambda r: r['clips_per_second'])
    fastest_model = max(r['infer_clips_per_s'] for r in models['rows']
                        if r['batch'] == 1 and r['dtype'] == 'float32')
    rows.append({'what': f"5. decoded clips/s ({best['workers']} workers) / fastest video model's "
                         'inference clips/s', 'value': best['clips_per_second'] / fastest_model,
                 'limit': '>= 1', 'status': _mark(best['clips_per_second'] >= fastest_model)})
  missed, number = [], ''
  for r in rows:  # 'same, ...' rows belong to the numbered target above them
    number = r['what'].split('.')[0] if r['what'][:1].isdigit() else number
    if r['status'] == _mark(False) and f'target {number}' not in missed:
      missed.append(f'target {number}')
  left = (['', '**Left:** ' + ', '.join(missed) + ' not met (analysis and next steps: '
           '[docs/performance.md, What is left](../docs/performance.md#what-is-left)). No GPU '
           'figures: no device was lent to this work.'] if missed else [])
  return [common.format_table(rows, [('what', 'target', ''), ('value', 'measured', '.3f'),
                                     ('limit', 'limit', ''), ('status', '', '')])] + left


def blocks_pivot(blocks: dict[str, Any], key: str, fmt: str) -> str:
  rows = blocks['rows']
  names = [n for n in dict.fromkeys(r['block'] for r in rows)]
  shapes = list(dict.fromkeys((r['D'], r['T'], r['HW']) for r in rows))
  cell = {(r['D'], r['T'], r['HW'], r['block']): r for r in rows}
  out = []
  for d, t, hw in shapes:
    row = {'shape': f'D={d}, {t}x{hw}^2'}
    for n in names:
      r = cell.get((d, t, hw, n))
      if r is None:
        continue
      if 'skipped' in r:
        reason = r['skipped']
        row[n] = ('N^2 > budget' if 'N^2' in reason else 'peak > budget' if 'compiled peak' in reason
                  else 'activations > budget' if 'activations' in reason else reason)
      elif key == 'time':
        ratio = r.get('fwd_bwd_ratio')
        row[n] = f"{r['fwd_bwd_ms']:.1f} ({ratio:.2f}x)" if ratio else f"{r['fwd_bwd_ms']:.1f}"
      else:
        formula = r.get('table1_gflops')
        row[n] = format(r['gmacs'], fmt) + (f' / {formula:{fmt}}' if formula else '')
    out.append(row)
  return common.format_table(out, [('shape', 'shape', '')] + [(n, n, '') for n in names])


def write(models: dict[str, Any] | None, blocks: dict[str, Any] | None,
          precision: dict[str, Any] | None, path: str,
          peers: Sequence[dict[str, Any]] = (), ops: dict[str, Any] | None = None,
          pipeline_cmp: dict[str, Any] | None = None,
          store_resize: dict[str, Any] | None = None,
          checkouts: dict[str, Any] | None = None) -> str:
  lines = ['# Benchmark results', '',
           'Written by `python benchmarks/report.py` from `benchmarks/results/*.json`; every number '
           'below was measured by the commands named, on the machine named. Methods and findings: '
           '[docs/performance.md](../docs/performance.md).', '']
  if models:
    import models as models_bench  # pylint: disable=g-import-not-at-top
    a = models['args']
    lines += ['## Targets', '', f"Machine: {machine_line(models['machine'])}.", '',
              f"Command: `python benchmarks/models.py{' --flag-sweep' if a.get('flag_sweep') else ''}"
              f" --repeats {a['repeats']}` (torch peer: {models['torch_peer']}).", '']
    lines += targets_section(models, peers)
    lines += ['', 'Ratios are medians of per-round ratios (the rows run round-robin, so each '
              "ratio compares calls made seconds apart); times are medians over rounds.", '',
              '## Models', '', '![throughput](../docs/images/models_throughput.png)', '',
              models_bench.tables(models), '']
  if pipeline_cmp:
    lines += pipeline_section(pipeline_cmp)
  if store_resize:
    lines += store_resize_section(store_resize)
  if ops:
    import ops as ops_bench  # pylint: disable=g-import-not-at-top
    a = ops['args']
    lines += ['## ResNet-50 op by op against PyTorch (where target 2\'s gap is)', '',
              f"Machine: {machine_line(ops['machine'])}. Command: `python benchmarks/ops.py "
              f"--repeats {a['repeats']} --inner {a['inner']}` (torch peer: {ops['torch_peer']}; "
              f"torch {(ops.get('torch') or {}).get('torch', '-')}, oneDNN). Every distinct "
              'convolution, BatchNorm (+ReLU) and the max pool of the ResNet-50 train step at batch '
              '8 x 224^2, timed alone in each framework; the first table weights each by its count '
              'in the model.', '', ops_bench.tables(ops['rows'], ops['categories']), '']
  if precision:
    import precision as precision_bench  # pylint: disable=g-import-not-at-top
    lines += ['## bf16: what the backward pass keeps', '',
              f"Machine: {machine_line(precision['machine'])}. Command: "
              '`python benchmarks/precision.py`. Saved residuals are read from the jaxpr (the same '
              'on every backend); the compiled peak is XLA:CPU\'s, which computes bf16 convolutions '
              'in float32.', '', precision_bench.table(precision['rows']), '']
  if blocks:
    a = blocks['args']
    lines += ['## Blocks alone', '', f"Machine: {machine_line(blocks['machine'])}.", '',
              f"Command: `python benchmarks/blocks.py{' --quick' if a['mode'] == 'quick' else ''} "
              f"--repeats {a['repeats']}`. Batch 1, float32, training mode; `none` is a bottleneck "
              'residual block at the same shape, the reference of the ratios.', '',
              '![scaling](../docs/images/blocks_scaling.png)', '',
              '### Forward + backward ms (ratio to `none`)', '', blocks_pivot(blocks, 'time', ''),
              '', '### Forward GMACs (from the jaxpr) / Table 1 formula at that shape', '',
              'Table 1 (`bat_cvpr2020.md` §3.5) writes the BA-transform with dense H x H and W x W '
              'matrices and NL without subsampling; ours is block-based and NL pools keys and '
              'values (1, 2, 2), hence smaller counts where those terms dominate.', '',
              blocks_pivot(blocks, 'macs', '.3f'), '']
  if checkouts:
    a = checkouts['args']
    lines += ['## Train step: two checkouts, alternating processes', '',
              f"Machine: {machine_line(checkouts['machine'])}. Command: `python "
              f"benchmarks/checkouts.py --old <checkout of {checkouts['old']}> --models "
              f"{a['models']} --pairs {a['pairs']} --steps {a['steps']}` in the checkout of "
              f"{checkouts['new']}. Each measurement is its own process (float32, the recipe's "
              'train step, median of the steps); a pair is an old and a new process run back to '
              'back.', '', checkouts_bench.table(checkouts['results']), '']
  with open(path, 'w') as f:
    f.write('\n'.join(lines))
  return path


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--models', default=os.path.join(common.RESULTS_DIR, 'models.json'))
  p.add_argument('--blocks', default=os.path.join(common.RESULTS_DIR, 'blocks.json'))
  p.add_argument('--peers', default=','.join(
      os.path.join(common.RESULTS_DIR, f) for f in ('models_r50_peer.json',
                                                     'models_r50_peer_thp.json',
                                                     'models_r50_peer_malloc.json')),
                 help='runs of `models.py --models r50 --dtypes float32 --no-long-clips '
                      '--no-pipeline --repeats 15 --json NAME --plot ""` (comma-separated)')
  p.add_argument('--precision', default=os.path.join(common.RESULTS_DIR, 'precision.json'))
  p.add_argument('--ops', default=os.path.join(common.RESULTS_DIR, 'ops.json'))
  p.add_argument('--pipeline', default=os.path.join(common.RESULTS_DIR, 'pipeline_compare.json'))
  p.add_argument('--store-resize',
                 default=os.path.join(common.RESULTS_DIR, 'store_resize.json'))
  p.add_argument('--checkouts', default=os.path.join(common.RESULTS_DIR, 'checkouts.json'))
  p.add_argument('--out', default=os.path.join(common.REPO, 'benchmarks', 'RESULTS.md'))
  a = p.parse_args(argv)
  models, blocks, precision = _load(a.models), _load(a.blocks), _load(a.precision)
  if models is None and blocks is None and precision is None:
    print(f'no results at {a.models} or {a.blocks}: run benchmarks/models.py and blocks.py first')
    return 1
  peers = [p for p in (_load(f) for f in a.peers.split(',') if f) if p]
  out = write(models, blocks, precision, a.out, peers, _load(a.ops), _load(a.pipeline),
              _load(a.store_resize), _load(a.checkouts))
  print(f'wrote {out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
