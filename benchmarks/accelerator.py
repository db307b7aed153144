r"""One command for a lent GPU / TPU: train-step speed, MFU and memory per model, and whether the
host's input pipeline keeps up.

    python benchmarks/accelerator.py                 # real sizes (aim: <= 8 minutes)
    python benchmarks/accelerator.py --tiny          # CPU smoke mode (width 4, 2x32^2; tests)
        [--models r50,c2d,c2d_3dbat,c2d_nl,i3d] [--dtypes float32,bfloat16] [--repeats 5]
        [--json workdirs/benchmarks/accelerator.json]

Per model (``benchmarks/models.py``'s ``MODELS``: the recipe's model and its real train step) and
dtype: the compiled train step at the recipes' batch per device (``global_batch_size / 8``: the
recipes' global batch over an 8-accelerator host; 8 clips of 8x224^2, 32 images of 224^2), timed
over ``--repeats`` calls after one warm-up call; clips (images) per second per device; model FLOPs
utilisation = XLA's cost-analysis FLOPs of the step / step time / the device's peak
(:data:`PEAK_TFLOPS`, dense, per chip; float32 rows use the TF32 tensor-core peak on NVIDIA
GPUs, which XLA's default matmul precision uses there); peak device memory (the allocator's
``peak_bytes_in_use`` where the device reports it, else XLA's compiled peak).

Then the input pipeline on this host with all its cores (``benchmarks/pipeline.py``'s ``measure``
with one grain worker per core on its Kinetics-like video) and, per video model, the verdict:
"input-bound" when the pipeline's clips/s is below the train step's clips/s times the local
device count, else "compute-bound".

``--tiny``: every model at width 4 on 2x32^2 clips (32^2 images), batch 2, one pipeline batch of
2 clips in the main process: the same code path in seconds on a CPU, for the tests; its numbers
mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top
import models as models_bench  # noqa: E402  pylint: disable=g-import-not-at-top
import pipeline as pipeline_bench  # noqa: E402  pylint: disable=g-import-not-at-top

import jax  # noqa: E402  pylint: disable=g-import-not-at-top

DEFAULT_MODELS = ('r50', 'c2d', 'c2d_3dbat', 'c2d_nl', 'i3d')
HOST_ACCELERATORS = 8  # the recipes' global batch is for an 8-accelerator host

# Dense peak TFLOP/s per chip: (float32 rows, bfloat16 rows). NVIDIA: SXM data sheets, float32
# = TF32 tensor cores (dense); TPU: Google Cloud's per-chip bf16 peak (float32 matmuls run as
# bf16 passes, so the same figure bounds them).
PEAK_TFLOPS: dict[str, tuple[float, float]] = {
    'H200': (494.7, 989.4),
    'H100': (494.7, 989.4),
    'A100': (156.0, 312.0),
    'TPU v4': (275.0, 275.0),
    'TPU v5 lite': (197.0, 197.0),  # v5e
    'TPU v5p': (459.0, 459.0),
    'TPU v5': (459.0, 459.0),
}


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """The table's peak for ``device_kind`` (first matching name), or None (e.g. a CPU)."""
  for name, (f32, bf16) in PEAK_TFLOPS.items():
    if name.lower() in device_kind.lower():
      return bf16 if dtype == 'bfloat16' else f32
  return None


def step_flops(compiled: Any) -> float:
  """FLOPs of one call from XLA's cost analysis (a dict, or a list of one dict in older jax)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0]
  return float(cost.get('flops', 0.0))


def device_peak_gib(device: Any) -> float | None:
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if not stats or 'peak_bytes_in_use' not in stats:
    return None
  return stats['peak_bytes_in_use'] / common.GIB


def measure_model(key: str, dtype: str, tiny: bool, repeats: int) -> dict[str, Any]:
  module, _, label, base = models_bench.MODELS[key]
  cfg = models_bench.load_config(module, dtype)
  if tiny:
    cfg.model.width = 4
    cfg.model.input_size = (2, 32, 32) if len(cfg.model.input_size) == 3 else (32, 32)
    batch = 2
  else:
    batch = int(cfg.global_batch_size) // HOST_ACCELERATORS
  row = models_bench.Row(key, cfg, batch, label, base, with_infer=False)
  state, arrays = row.state, row.batch_arrays
  state, metrics = row.compiled_train(state, arrays)  # warm-up
  jax.block_until_ready((state, metrics))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    state, metrics = row.compiled_train(state, arrays)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - t0)
  step_s = common.median(times)
  flops = step_flops(row.compiled_train)
  device = jax.devices()[0]
  peak = peak_tflops(device.device_kind, dtype)
  measured_peak = device_peak_gib(device)
  return {'model': key, 'label': label, 'dtype': dtype, 'batch': batch,
          'input': 'video' if row.input_key == 'video' else 'image',
          'step_s': step_s, 'clips_per_s': batch / step_s, 'tflops_per_step': flops / 1e12,
          'achieved_tflops': flops / step_s / 1e12,
          'mfu': None if peak is None else flops / step_s / 1e12 / peak,
          'peak_gib': measured_peak if measured_peak is not None
                      else row.mem_train.get('peak_gib'),
          'peak_source': 'allocator' if measured_peak is not None else 'xla compiled',
          'compile_s': row.compile_train_s}


def pipeline_clips_per_s(tiny: bool) -> dict[str, Any]:
  cores = pipeline_bench.usable_cores()
  with tempfile.TemporaryDirectory() as tmp:
    info = pipeline_bench.make_video(os.path.join(tmp, 'clip.mp4'), 256, 340, 30,
                                     1.0 if tiny else 10.0, 250)
    workers = 0 if tiny else cores
    r = pipeline_bench.measure(info['path'], workers, 1, 1 if tiny else 8,
                               2 if tiny else 16)
  return {'cores': cores, 'workers': workers, 'clips_per_s': r['clips_per_second']}


def verdict(row: dict[str, Any], pipeline_cps: float, local_devices: int) -> str:
  if row['input'] != 'video':
    return 'n/a (image model; the video pipeline was measured)'
  return ('input-bound' if pipeline_cps < row['clips_per_s'] * local_devices
          else 'compute-bound')


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--tiny', action='store_true', help='CPU smoke mode (see the docstring)')
  p.add_argument('--models', default=','.join(DEFAULT_MODELS))
  p.add_argument('--dtypes', default='float32,bfloat16')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--json', default=os.path.join('workdirs', 'benchmarks', 'accelerator.json'))
  a = p.parse_args(argv)
  keys = [k for k in a.models.split(',') if k]
  unknown = [k for k in keys if k not in models_bench.MODELS]
  if unknown:
    raise ValueError(f'--models: unknown {unknown}; known: {sorted(models_bench.MODELS)}')
  dtypes = [d for d in a.dtypes.split(',') if d]
  bad = [d for d in dtypes if d not in ('float32', 'bfloat16')]
  if bad:
    raise ValueError(f'--dtypes: {bad}; allowed: float32, bfloat16')
  t_start = time.perf_counter()
  devices = jax.local_devices()
  kind = devices[0].device_kind
  print(f'devices: {len(devices)} x {kind} ({jax.default_backend()}); peak table entry: '
        f'{peak_tflops(kind, "bfloat16") or "none"}' + ('; --tiny' if a.tiny else ''))
  rows = []
  for key in keys:
    for dtype in dtypes:
      rows.append(measure_model(key, dtype, a.tiny, a.repeats))
      r = rows[-1]
      mfu = '-' if r['mfu'] is None else f"{100 * r['mfu']:.1f}%"
      print(f"  {r['label']:<24} {dtype:<9} batch {r['batch']:>3}: {1000 * r['step_s']:8.1f} ms, "
            f"{r['clips_per_s']:8.1f} /s, {r['achieved_tflops']:.3f} TFLOP/s, MFU {mfu}, peak "
            f"{r['peak_gib']:.2f} GiB ({r['peak_source']})", flush=True)
  pipe = pipeline_clips_per_s(a.tiny)
  print(f"input pipeline: {pipe['clips_per_s']:.1f} clips/s with {pipe['workers']} workers on "
        f"{pipe['cores']} cores")
  for r in rows:
    r['verdict'] = verdict(r, pipe['clips_per_s'], len(devices))
    print(f"  {r['label']:<24} {r['dtype']:<9} needs {r['clips_per_s'] * len(devices):8.1f} "
          f"/s per host: {r['verdict']}")
  out = {'machine': common.machine_info(), 'device_kind': kind, 'local_devices': len(devices),
         'tiny': a.tiny, 'rows': rows, 'pipeline': pipe,
         'seconds': time.perf_counter() - t_start}
  if a.json:
    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, 'w') as f:
      json.dump(out, f, indent=2)
    print(f'wrote {a.json} ({out["seconds"]:.0f} s)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
