r"""Whole-model throughput and memory: train step and inference, JAX against a PyTorch peer.

    python benchmarks/models.py                      # everything (about 30 min on 2 cores)
    python benchmarks/models.py --quick              # C2D, C2D+3D-BAT, ResNet-50, torch peer
    python benchmarks/models.py --models c2d,c2d_3dbat --dtypes float32 --repeats 7
    python benchmarks/models.py --torch-python PATH   # another peer interpreter (default: make venv-bench-peer)
    python benchmarks/models.py --models r50 --flag-sweep     # + XLA:CPU flag sets, r50 train step

Rows (``--models``): C2D, C2D + BAT, C2D + 3D-BAT, C2D + NL, I3D, I3D + BAT at 8x224^2 with
**batch 1 clip** (8 frames), and ImageNet ResNet-50 +- BAT at 224^2 with **batch 8 images**; an
ablation row ``c2d_bat_k0`` (the five 3D-BAT blocks with k = 0: no predictor, no transform; what
their convs and BNs cost alone); each in
float32 and, for ``--bf16-models``, with ``model.dtype='bfloat16'``. Every row is the recipe's
model (``configs/<name>.py``) and its real train step (``bat_jax.training.steps.make_train_step``:
forward, loss, backward, gradient clipping, weight decay, SGD momentum, BN statistics), with
inputs already on the device (no input pipeline in the loop; its throughput is measured apart).

The peer (``torch_r50``): torchvision's ResNet-50 in plain ``torch.nn`` (torchvision does not
import with the CPU build of torch 2.13.0; the layout and parameter count, 25,557,032, are
torchvision's), batch 8 images 224^2 — C2D's frames folded into the batch — train step
(forward, cross-entropy, backward, SGD momentum) and ``inference_mode`` forward, run by
``--torch-python`` (a separate venv with torch, so ``.venv`` stays light) as a persistent
subprocess that is timed in the same round-robin as the JAX rows. Skipped when that interpreter
has no torch.

Timing: compile, ``--warmup`` untimed calls (3), then ``--repeats`` rounds over all rows
(common.py); each row's time is the median over rounds, each ratio the median of the per-round
ratios. Memory:
XLA's ``memory_analysis()`` peak of the compiled step (temp + arguments + outputs - aliased),
for torch the process's peak RSS (an upper bound: it includes the interpreter and libraries).

Also in the same run (unless ``--no-long-clips`` / ``--no-pipeline``):

* long clips (target 4): C2D + 3D-BAT at 16x224^2 and 64x224^2 (``temporal_size=8`` as in
  Table 9), batch 1 and 4, with and without ``model.remat_stages`` (all four stages): compiled
  peak memory, and one executed step at batch 1 (when below ``--long-budget-gib``);
* input pipeline (target 5): decoded clips/s with 0, 1, 2 grain workers, from
  ``benchmarks/pipeline.py``'s ``measure`` (falls back to ``make_train_iterator`` on a toy video).

Writes ``benchmarks/results/models.json`` and ``docs/images/models_throughput.png``; prints the
markdown tables last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

# ---------------------------------------------------------------------------------------------
# The PyTorch peer. This part runs under --torch-python (no jax there), so it is kept above the
# jax imports: `python benchmarks/models.py --torch-worker` never imports jax.


def torch_resnet50(num_classes: int = 1000) -> Any:
  """torchvision's ``resnet50()`` (v1.5: stride on the 3x3 conv) in plain ``torch.nn``."""
  import torch.nn as nn  # pylint: disable=g-import-not-at-top

  class Bottleneck(nn.Module):

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
      super().__init__()
      self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(planes)
      self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(planes)
      self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
      self.bn3 = nn.BatchNorm2d(planes * 4)
      self.relu = nn.ReLU(inplace=True)
      self.downsample = None
      if stride != 1 or inplanes != planes * 4:
        self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                        nn.BatchNorm2d(planes * 4))

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.relu(self.bn2(self.conv2(out)))
      return self.relu(self.bn3(self.conv3(out)) + identity)

  class ResNet50(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(64)
      self.relu = nn.ReLU(inplace=True)
      self.maxpool = nn.MaxPool2d(3, 2, 1)
      inplanes, layers = 64, []
      for i, n in enumerate((3, 4, 6, 3)):
        planes, blocks = 64 * 2**i, []
        for j in range(n):
          blocks.append(Bottleneck(inplanes, planes, 2 if i > 0 and j == 0 else 1))
          inplanes = planes * 4
        layers.append(nn.Sequential(*blocks))
      self.layer1, self.layer2, self.layer3, self.layer4 = layers
      self.avgpool = nn.AdaptiveAvgPool2d(1)
      self.fc = nn.Linear(2048, num_classes)

    def forward(self, x):
      x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
      x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
      return self.fc(self.avgpool(x).flatten(1))

  return ResNet50()


def torch_worker(batch: int, size: int, threads: int, channels_last: bool) -> None:
  """Line protocol on stdin/stdout: ``train`` / ``infer`` -> seconds of one call; ``info``."""
  import resource  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = torch_resnet50()
  opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
  x = torch.randn(batch, 3, size, size)
  y = torch.randint(0, 1000, (batch,))
  if channels_last:
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)

  def train() -> None:
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()

  def infer() -> None:
    model.eval()
    with torch.inference_mode():
      model(x)

  for line in sys.stdin:
    cmd = line.strip()
    if cmd in ('train', 'infer'):
      t0 = time.perf_counter()
      (train if cmd == 'train' else infer)()
      print(json.dumps({'seconds': time.perf_counter() - t0}), flush=True)
    elif cmd == 'info':
      print(json.dumps({
          'torch': torch.__version__, 'threads': torch.get_num_threads(),
          'params': sum(p.numel() for p in model.parameters()),
          'peak_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
          'mkldnn': bool(torch.backends.mkldnn.is_available())}), flush=True)
    elif cmd == 'quit':
      return


if __name__ == '__main__' and '--torch-worker' in sys.argv:
  _p = argparse.ArgumentParser()
  _p.add_argument('--torch-worker', action='store_true')
  _p.add_argument('--batch', type=int, default=8)
  _p.add_argument('--size', type=int, default=224)
  _p.add_argument('--threads', type=int, default=os.cpu_count() or 1)
  _p.add_argument('--channels-last', action='store_true')
  _a = _p.parse_args()
  torch_worker(_a.batch, _a.size, _a.threads, _a.channels_last)
  sys.exit(0)

# ---------------------------------------------------------------------------------------------
# JAX side.

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import importlib  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bat_jax import build_model  # noqa: E402
from bat_jax.models.registry import is_video  # noqa: E402
from bat_jax.tools import summary  # noqa: E402
from bat_jax.data import mesh as mesh_lib  # noqa: E402
from bat_jax.training import optim  # noqa: E402
from bat_jax.training import state as state_lib  # noqa: E402
from bat_jax.training import steps  # noqa: E402

# name -> (config module, batch, label, baseline row for the ratio)
MODELS: dict[str, tuple[str, int, str, str]] = {
    'c2d': ('kinetics_c2d', 1, 'C2D R50', 'c2d'),
    'c2d_bat': ('kinetics_c2d_bat', 1, 'C2D + BAT', 'c2d'),
    'c2d_3dbat': ('kinetics_c2d_3dbat', 1, 'C2D + 3D-BAT', 'c2d'),
    'c2d_bat_k0': ('kinetics_c2d_3dbat', 1, 'C2D + BAT blocks, k=0 (no transform)', 'c2d'),
    'c2d_nl': ('kinetics_c2d_nl', 1, 'C2D + NL', 'c2d'),
    'i3d': ('kinetics_i3d', 1, 'I3D R50', 'c2d'),
    'i3d_bat': ('kinetics_i3d_bat', 1, 'I3D + BAT', 'i3d'),
    'r50': ('imagenet_r50', 8, 'ResNet-50 (ImageNet)', 'r50'),
    'r50_bat': ('imagenet_r50_bat', 8, 'ResNet-50 + BAT', 'r50'),
}
QUICK = ('c2d', 'c2d_3dbat', 'r50')
# Config changes of ablation rows: the 3D-BAT blocks with P = Q = I and no predictor (Table 4's
# k = 0, no temporal transform): what the blocks' 1x1 convs, BNs and the residual add cost alone.
OVERRIDES: dict[str, dict[str, Any]] = {
    'c2d_bat_k0': {'block.groups': 0, 'block.temporal_groups': 0},
}


def _compiler_options() -> dict[str, Any]:
  """What the trainer's steps compile with (``{}`` for a checkout older than that option)."""
  return getattr(steps, 'compiler_options', dict)()


def load_config(module: str, dtype: str = 'float32', **model_overrides: Any) -> Any:
  """``configs/<module>.py``'s config; ``model_overrides`` keys are ``model`` fields, dotted for
  nested ones (``'block.groups'``). BatchNorm runs over the whole timed batch (1 clip, 8 images:
  ``bn_group_size=0``), which a recipe's per-GPU group size need not divide."""
  cfg = importlib.import_module(f'configs.{module}').get_config()
  cfg.model.dtype = dtype
  cfg.model.bn_group_size = 0
  for k, v in model_overrides.items():
    target = cfg.model
    *path, last = k.split('.')
    for part in path:
      target = target[part]
    target[last] = v
  return cfg


class Row:
  """One model x dtype: its compiled train step and inference, state and inputs."""

  def __init__(self, key: str, cfg: Any, batch: int, label: str, base: str,
               with_infer: bool = True):
    self.key, self.cfg, self.batch, self.label, self.base = key, cfg, batch, label, base
    self.model = build_model(cfg.model)
    mesh = mesh_lib.make_mesh()
    shape = (batch, *tuple(int(s) for s in cfg.model.input_size), 3)
    self.input_key = 'video' if is_video(cfg.model) else 'image'
    x = jax.random.normal(jax.random.key(1), shape, jnp.float32)
    labels = jnp.arange(batch, dtype=jnp.int32) % int(cfg.model.num_classes)
    self.batch_arrays = {self.input_key: x, 'label': labels}
    schedule = optim.learning_rate_schedule(cfg, 100, 10_000)
    tx = optim.make_optimizer(cfg, schedule)
    self.state = state_lib.create_train_state(self.model, tx, 0, (1, *shape[1:]), mesh)
    self.train_step = steps.make_train_step(self.model, tx, mesh, cfg.label_smoothing)
    model = self.model
    self.infer = jax.jit(lambda v, x: model.apply(v, x, train=False),
                         compiler_options=_compiler_options())
    t0 = time.perf_counter()
    self.compiled_train = self.train_step.lower(self.state, self.batch_arrays).compile()
    self.compile_train_s = time.perf_counter() - t0
    self.mem_train = common.memory_stats(self.compiled_train)
    if with_infer:
      t0 = time.perf_counter()
      compiled = self.infer.lower(self.state.variables(), x).compile()
      self.compile_infer_s = time.perf_counter() - t0
      self.mem_infer = common.memory_stats(compiled)
    counts = summary.summarize(cfg.model)
    self.gmacs = counts['gmacs'] * batch
    self.params = counts['params']

  def run_train(self) -> None:
    self.state, metrics = self.train_step(self.state, self.batch_arrays)
    jax.block_until_ready((self.state, metrics))

  def run_infer(self) -> None:
    jax.block_until_ready(self.infer(self.state.variables(), self.batch_arrays[self.input_key]))


class TorchPeer(common.LineWorker):
  """The persistent ``--torch-worker`` subprocess."""

  def __init__(self, python: str, batch: int, threads: int, channels_last: bool = False):
    super().__init__([python, os.path.abspath(__file__), '--torch-worker', '--batch', str(batch),
                      '--threads', str(threads)] + (['--channels-last'] if channels_last else []))
    self.channels_last = channels_last


def torch_available(python: str) -> str:
  """'' if ``python`` imports torch, else why not."""
  if not python or not os.path.exists(python):
    return f'no interpreter at {python!r}'
  r = subprocess.run([python, '-c', 'import torch; print(torch.__version__)'],
                     capture_output=True, text=True, check=False)
  return '' if r.returncode == 0 else (r.stderr.strip().splitlines() or ['import failed'])[-1]


# ---------------------------------------------------------------------------------------------
# Long clips and remat (target 4).


def long_clip_rows(frames_list: list[int], batches: list[int], run_step: bool,
                   budget_gib: float) -> list[dict]:
  """C2D + 3D-BAT (ts=8) at T x 224^2: the compiled train step's peak with and without remat of
  all four stages, and one executed step for batch 1 when the peak is below ``budget_gib``."""
  rows = []
  all_stages = ('res2', 'res3', 'res4', 'res5')
  for frames in frames_list:
    for batch in batches:
      for remat in ((), all_stages):
        cfg = load_config('kinetics_c2d_3dbat', input_size=(frames, 224, 224),
                          remat_stages=remat)
        cfg.model.block.temporal_size = 8
        model = build_model(cfg.model)
        mesh = mesh_lib.make_mesh()
        tx = optim.make_optimizer(cfg, optim.learning_rate_schedule(cfg, 100, 10_000))
        shape = (batch, frames, 224, 224, 3)
        abstract = state_lib.abstract_train_state(model, tx, (1, *shape[1:]), mesh)
        arrays = {'video': jax.ShapeDtypeStruct(shape, jnp.float32),
                  'label': jax.ShapeDtypeStruct((batch,), jnp.int32)}
        step = steps.make_train_step(model, tx, mesh)
        t0 = time.perf_counter()
        compiled = step.lower(abstract, arrays).compile()
        row = {'frames': frames, 'batch': batch, 'remat_stages': '+'.join(remat) or 'none',
               'compile_s': time.perf_counter() - t0, **common.memory_stats(compiled)}
        print(f"[long] T={frames} batch {batch} remat={row['remat_stages']}: peak "
              f"{row['peak_gib']:.2f} GiB (compile {row['compile_s']:.0f} s)", flush=True)
        if run_step and batch == 1 and row['peak_gib'] < budget_gib:
          state = state_lib.create_train_state(model, tx, 0, (1, *shape[1:]), mesh)
          data = {'video': jax.random.normal(jax.random.key(0), shape, jnp.float32),
                  'label': jnp.zeros((batch,), jnp.int32)}
          t0 = time.perf_counter()
          state, metrics = compiled(state, data)
          jax.block_until_ready((state, metrics))
          row.update(step_s=time.perf_counter() - t0, loss=float(metrics['loss']),
                     finite=bool(np.isfinite(float(metrics['grad_norm']))))
          print(f"[long]   one step {row['step_s']:.1f} s, loss {row['loss']:.3f}", flush=True)
          del state, data
        rows.append(row)
  return rows


# ---------------------------------------------------------------------------------------------
# Input pipeline (target 5).


def pipeline_rows(workers: list[int], batches: int, batch_size: int) -> dict[str, Any]:
  """Decoded training clips/s (8x224^2 after the Kinetics transform) per worker count, by
  ``benchmarks/pipeline.py``'s ``measure`` on its Kinetics-like video."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  import tempfile  # pylint: disable=g-import-not-at-top
  import pipeline as pipeline_bench  # benchmarks/pipeline.py  # pylint: disable=g-import-not-at-top
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    info = pipeline_bench.make_video(os.path.join(tmp, 'clip.mp4'), 256, 340, 30, 10.0, 250)
    for w in workers:
      rows.append(pipeline_bench.measure(info['path'], w, 1, batches, batch_size))
      print(f"[pipeline] {w} workers: {rows[-1]['clips_per_second']} clips/s", flush=True)
  return {'source': 'benchmarks/pipeline.py measure() on its Kinetics-like 340x256 30 fps H.264 '
                    'video', 'rows': rows}


# ---------------------------------------------------------------------------------------------
# XLA:CPU flags (target 2: what jaxlib offers).

FLAG_SETS = (
    '',
    '--xla_cpu_experimental_ynn_fusion_type=-reduce',
    '--xla_cpu_experimental_ynn_fusion_type=-eltwise,-reduce',
    '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',
    '--xla_cpu_experimental_ynn_fusion_type=-dot,-individual_dot',
    '--xla_cpu_use_xnnpack=false',
    '--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce',
    '--xla_cpu_use_onednn=true',
    '--xla_cpu_experimental_onednn_fusion_type=dot,eltwise',
    '--xla_cpu_enable_fast_math=true',
    '--xla_cpu_multi_thread_eigen=false',
    '--xla_cpu_prefer_vector_width=512',
)


def flag_probe(model: str, steps: int) -> None:
  """Child of the flag sweep: ``model``'s train step and inference under this process's
  XLA_FLAGS; prints one JSON line (medians of ``steps`` calls after a warm-up)."""
  module, batch, label, _ = MODELS[model]
  row = Row(model, load_config(module, **OVERRIDES.get(model, {})), batch, label, model)
  times = common.interleaved_times({'train': row.run_train, 'infer': row.run_infer}, steps,
                                   warmup=1)
  print('PROBE ' + json.dumps({'train_s': common.median(times['train']),
                               'infer_s': common.median(times['infer']),
                               'compile_s': row.compile_train_s}), flush=True)


def flag_sweep(model: str, flag_sets: list[str], rounds: int, steps: int,
               timeout_s: int = 600) -> list[dict[str, Any]]:
  """Each flag set in a fresh process (XLA_FLAGS is read at start-up), ``rounds`` times in a
  rotating order; the ratio is to the default flags' median."""
  results: dict[str, list[dict[str, Any]]] = {f: [] for f in flag_sets}
  for r in range(rounds):
    order = flag_sets[r % len(flag_sets):] + flag_sets[:r % len(flag_sets)]
    for flags in order:
      env = dict(os.environ, XLA_FLAGS=flags)
      cmd = [sys.executable, os.path.abspath(__file__), '--flag-probe', model,
             '--repeats', str(steps)]
      try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s,
                             check=False)
        lines = [l for l in out.stdout.splitlines() if l.startswith('PROBE ')]
        res = (json.loads(lines[-1][6:]) if lines else
               {'error': (out.stderr.strip().splitlines() or ['no output'])[-1][:200]})
      except subprocess.TimeoutExpired:
        res = {'error': f'timeout {timeout_s} s'}
      results[flags].append(res)
      print(f"[flags] round {r} {flags or '(default)'}: {res}", flush=True)
  rows = []
  for flags, runs in results.items():
    ok = [x for x in runs if 'train_s' in x]
    rows.append({'flags': flags or '(default)',
                 'train_s': common.median([x['train_s'] for x in ok]) if ok else None,
                 'infer_s': common.median([x['infer_s'] for x in ok]) if ok else None,
                 'runs': runs, 'error': '' if ok else runs[-1].get('error', '')})
  base = rows[0]
  for row in rows:
    if row['train_s'] and base['train_s']:
      row['train_ratio'] = row['train_s'] / base['train_s']
      row['infer_ratio'] = row['infer_s'] / base['infer_s']
  return rows


def profile(model: str) -> int:
  """Prints where ``model``'s train step spends its time (``common.op_profile``)."""
  module, batch, label, _ = MODELS[model]
  row = Row(model, load_config(module, **OVERRIDES.get(model, {})), batch, label, model)

  class Step:  # threads the donated state through the profiled calls
    def __call__(self, batch_arrays: Any) -> Any:
      row.state, metrics = row.train_step(row.state, batch_arrays)
      return metrics

    def lower(self, batch_arrays: Any) -> Any:
      return row.train_step.lower(row.state, batch_arrays)

  summary_ = common.summarize_profile(common.op_profile(Step(), (row.batch_arrays,), reps=3),
                                      top=25)
  import resource  # pylint: disable=g-import-not-at-top
  faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  jax.block_until_ready(Step()(row.batch_arrays))
  summary_['minor_page_faults_per_step'] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
  path = common.write_json(f'profile_{model}.json', {'machine': common.machine_info(),
                                                      'model': model, **summary_})
  print(f"{label} train step: {summary_['wall_ms']:.0f} ms wall, {summary_['sum_ms']:.0f} ms "
        f'attributed to HLO instructions (convolutions run by Eigen are not), '
        f"{summary_['minor_page_faults_per_step']} minor page faults per step; wrote {path}\n")
  print(common.format_table([{'bucket': k, 'ms': v} for k, v in summary_['buckets_ms'].items()],
                            [('bucket', 'bucket', ''), ('ms', 'ms per step', '.1f')]))
  print()
  print(common.format_table(summary_['top'], [('op', 'HLO instruction', ''), ('ms', 'ms', '.2f'),
                                              ('shape', 'shape', ''), ('op_name', 'JAX op', '')]))
  return 0


# ---------------------------------------------------------------------------------------------


def plot(result: dict[str, Any], path: str) -> None:
  plt = common.setup_matplotlib()
  rows = [r for r in result['rows']]
  fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
  labels = [r['label'] + ('' if r['dtype'] == 'float32' else ' (bf16)') for r in rows]
  y = np.arange(len(rows))
  for ax, key, title in ((axes[0], 'train', 'train step'), (axes[1], 'infer', 'inference')):
    vals = [r[f'{key}_clips_per_s'] for r in rows]
    colors = ['tab:orange' if r['key'].startswith('torch') else
              ('tab:green' if r['dtype'] == 'bfloat16' else 'tab:blue') for r in rows]
    ax.barh(y, vals, color=colors)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel('clips (video) or images (ImageNet) per second')
    ax.set_title(f'{title}: median of {result["args"]["repeats"]} interleaved rounds')
    for yi, v in zip(y, vals):
      ax.text(v, yi, f' {v:.2f}', va='center', fontsize=7)
  fig.suptitle(f"{result['machine']['cpu']}, {result['machine']['nproc']} cores; video rows: "
               'batch 1 clip of 8x224^2, image rows: batch 8 x 224^2', fontsize=9)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def tables(result: dict[str, Any]) -> str:
  rows = result['rows']
  out = ['### Throughput and memory (same run, interleaved)', '',
         common.format_table(rows, [
             ('label', 'model', ''), ('dtype', 'dtype', ''), ('batch', 'batch', ''),
             ('gmacs', 'GMACs / step input', '.1f'), ('gmacs_ratio', 'MAC ratio', '.3f'),
             ('train_s', 'train step s', '.3f'), ('train_clips_per_s', 'train clips/s', '.2f'),
             ('train_ratio', 'train time ratio', '.3f'),
             ('infer_s', 'inference s', '.3f'), ('infer_clips_per_s', 'infer clips/s', '.2f'),
             ('infer_ratio', 'infer time ratio', '.3f'),
             ('train_peak_gib', 'train peak GiB', '.2f'), ('infer_peak_gib', 'infer peak GiB', '.2f'),
             ('base', 'ratio to', '')])]
  if result.get('long_clips'):
    out += ['', '### Long clips: C2D + 3D-BAT, temporal_size 8 (train step, 224^2)', '',
            common.format_table(result['long_clips'], [
                ('frames', 'frames', ''), ('batch', 'batch', ''), ('remat_stages', 'remat', ''),
                ('peak_gib', 'peak GiB', '.2f'), ('temp_gib', 'temp GiB', '.2f'),
                ('argument_gib', 'args GiB', '.2f'), ('step_s', 'one step s', '.1f'),
                ('loss', 'loss', '.3f'), ('compile_s', 'compile s', '.0f')])]
  if result.get('flag_sweep'):
    out += ['', f"### XLA:CPU flags ({result['args']['flag_sweep_model']} train step; each "
            'in its own process, ratio to the default flags)', '',
            common.format_table(result['flag_sweep'], [
                ('flags', 'XLA_FLAGS', ''), ('train_s', 'train s', '.3f'),
                ('train_ratio', 'train ratio', '.3f'), ('infer_s', 'inference s', '.3f'),
                ('infer_ratio', 'infer ratio', '.3f'), ('error', 'error', '')])]
  if result.get('pipeline'):
    p = result['pipeline']
    out += ['', f"### Input pipeline ({p['source']})", '',
            common.format_table(p['rows'], [('workers', 'workers', ''),
                                            ('clips_per_second', 'decoded clips/s', '.2f')])]
  return '\n'.join(out)


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--quick', action='store_true', help=f'models {QUICK}, 3 repeats, T<=16 long '
                 'clips compile-only, pipeline with 2 batches')
  p.add_argument('--models', default='', help=f'comma-separated subset of {list(MODELS)}')
  p.add_argument('--dtypes', default='float32,bfloat16')
  p.add_argument('--bf16-models', default='c2d,c2d_3dbat,r50',
                 help='rows that also run with model.dtype=bfloat16')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--warmup', type=int, default=3,
                 help='untimed calls of each row first (a fresh process ran its first ResNet-50 '
                      'train steps up to 35%% slower: 0.96 s falling to 0.71 s over 15 steps)')
  p.add_argument('--torch-python', default=os.path.join(common.REPO, '.venv-bench-peer', 'bin', 'python'),
                 help='the peer'"'"'s interpreter (`make venv-bench-peer`: torch 2.13.0, CPU build)')
  p.add_argument('--torch-threads', type=int, default=os.cpu_count() or 1)
  p.add_argument('--torch-channels-last', action='store_true',
                 help='also time the peer in channels_last memory format')
  p.add_argument('--no-long-clips', action='store_true')
  p.add_argument('--long-frames', default='16,64')
  p.add_argument('--long-batches', default='1,4',
                 help='batch sizes of the long-clip rows (compiled; only batch 1 is executed)')
  p.add_argument('--long-budget-gib', type=float, default=12.0,
                 help='execute a long-clip step only when its compiled peak is below this')
  p.add_argument('--no-pipeline', action='store_true')
  p.add_argument('--wait-load', type=float, default=0.0,
                 help='wait (up to 20 min) for the 1-min load average to drop below this')
  p.add_argument('--flag-sweep', action='store_true',
                 help='also time --flag-sweep-model under each XLA_FLAGS set of FLAG_SETS')
  p.add_argument('--flag-sweep-model', default='r50')
  p.add_argument('--flag-rounds', type=int, default=2)
  p.add_argument('--flag-sets', default='', help="';'-separated XLA_FLAGS sets (default: "
                 'FLAG_SETS); the first is the reference')
  p.add_argument('--flag-probe', default='', help=argparse.SUPPRESS)
  p.add_argument('--profile', default='', metavar='MODEL',
                 help='only profile MODEL\'s train step per HLO instruction (jax.profiler): time '
                      'by bucket and the top instructions; writes profile_MODEL.json')
  p.add_argument('--json', default='models.json')
  p.add_argument('--plot', default=os.path.join(common.IMAGES_DIR, 'models_throughput.png'))
  a = p.parse_args(argv)
  if a.flag_probe:
    flag_probe(a.flag_probe, a.repeats)
    return 0
  if a.profile:
    return profile(a.profile)

  names = a.models.split(',') if a.models else (list(QUICK) if a.quick else list(MODELS))
  dtypes = a.dtypes.split(',')
  bf16_models = set(a.bf16_models.split(','))
  repeats = 3 if a.quick and a.repeats == 5 else a.repeats
  if a.wait_load:
    common.wait_for_quiet(a.wait_load, 1200)
  machine = common.machine_info()
  print(f"machine: {machine['cpu']}, nproc {machine['nproc']}, {machine['memory']}, jax "
        f"{machine.get('jax')}, load {machine['load_average_start']:.2f}", flush=True)

  rows: dict[str, Row] = {}
  for name in names:
    module, batch, label, base = MODELS[name]
    for dtype in dtypes:
      if dtype != 'float32' and name not in bf16_models:
        continue
      key = name if dtype == 'float32' else f'{name}@{dtype}'
      print(f'[compile] {key}', flush=True)
      rows[key] = Row(key, load_config(module, dtype, **OVERRIDES.get(name, {})), batch, label,
                      base if dtype == 'float32' else name)
      print(f'[compile] {key}: train {rows[key].compile_train_s:.0f} s, infer '
            f'{rows[key].compile_infer_s:.0f} s, train peak {rows[key].mem_train["peak_gib"]:.2f} '
            f'GiB', flush=True)

  fns = {}
  for key, row in rows.items():
    fns[f'{key}/train'] = row.run_train
    fns[f'{key}/infer'] = row.run_infer
  peer_note = torch_available(a.torch_python)
  peers: list[TorchPeer] = []
  if not peer_note:
    peers.append(TorchPeer(a.torch_python, 8, a.torch_threads))
    if a.torch_channels_last:
      peers.append(TorchPeer(a.torch_python, 8, a.torch_threads, channels_last=True))
    for peer in peers:
      tag = 'torch_r50' + ('_cl' if peer.channels_last else '')
      fns[f'{tag}/train'] = lambda peer=peer: peer.call('train')
      fns[f'{tag}/infer'] = lambda peer=peer: peer.call('infer')
  else:
    print(f'[torch] peer skipped: {peer_note}', flush=True)

  print(f'[time] {len(fns)} functions x {repeats} rounds', flush=True)
  times = common.interleaved_times(fns, repeats, warmup=a.warmup, verbose=True)

  out_rows = []
  for key, row in rows.items():
    out_rows.append({
        'key': key, 'label': row.label, 'dtype': str(row.cfg.model.dtype), 'batch': row.batch,
        'params': row.params, 'gmacs': row.gmacs,
        'train_s': common.median(times[f'{key}/train']),
        'infer_s': common.median(times[f'{key}/infer']),
        'train_times': times[f'{key}/train'], 'infer_times': times[f'{key}/infer'],
        'train_peak_gib': row.mem_train.get('peak_gib'),
        'infer_peak_gib': row.mem_infer.get('peak_gib'),
        'memory_train': row.mem_train, 'memory_infer': row.mem_infer,
        'compile_train_s': row.compile_train_s, 'compile_infer_s': row.compile_infer_s,
        'base': row.base})
  for peer in peers:
    tag = 'torch_r50' + ('_cl' if peer.channels_last else '')
    info = peer.call('info')
    out_rows.append({
        'key': tag, 'label': 'torch ResNet-50' + (' (channels_last)' if peer.channels_last
                                                 else ' (NCHW)'),
        'dtype': 'float32', 'batch': 8, 'params': info['params'],
        'gmacs': rows['r50'].gmacs if 'r50' in rows else None,
        'train_s': common.median(times[f'{tag}/train']),
        'infer_s': common.median(times[f'{tag}/infer']),
        'train_times': times[f'{tag}/train'], 'infer_times': times[f'{tag}/infer'],
        'train_peak_gib': info['peak_rss_gib'], 'infer_peak_gib': None,
        'torch': info, 'base': 'r50'})
    peer.close()
  by_key = {r['key']: r for r in out_rows}
  for r in out_rows:
    r['train_clips_per_s'] = r['batch'] / r['train_s']
    r['infer_clips_per_s'] = r['batch'] / r['infer_s']
    base = by_key.get(r['base'])
    if base is not None:
      r['train_ratio'] = common.paired_ratio(r['train_times'], base['train_times'])
      r['infer_ratio'] = common.paired_ratio(r['infer_times'], base['infer_times'])
      if r['gmacs'] and base['gmacs']:
        r['gmacs_ratio'] = r['gmacs'] / base['gmacs']

  result: dict[str, Any] = {'args': {**vars(a), 'repeats': repeats}, 'machine': machine,
                            'torch_peer': peer_note or 'ran', 'rows': out_rows}
  targets = {}
  if 'c2d' in by_key and 'c2d_3dbat' in by_key:
    r = by_key['c2d_3dbat']
    targets['target1_train_ratio'] = r['train_ratio']
    targets['target1_infer_ratio'] = r['infer_ratio']
    targets['target1_mac_ratio'] = r['gmacs_ratio']
  if 'r50' in by_key and 'torch_r50' in by_key:
    targets['target2_jax_over_torch_train_time'] = common.paired_ratio(
        by_key['r50']['train_times'], by_key['torch_r50']['train_times'])
    targets['target2_jax_over_torch_infer_time'] = common.paired_ratio(
        by_key['r50']['infer_times'], by_key['torch_r50']['infer_times'])
  result['targets'] = targets
  machine['load_average_end'] = common.load_average()

  if not a.no_long_clips:
    frames = [int(f) for f in a.long_frames.split(',')]
    if a.quick:
      frames = [f for f in frames if f <= 16] or frames[:1]
    batches = [int(b) for b in a.long_batches.split(',')]
    result['long_clips'] = long_clip_rows(frames, batches, run_step=not a.quick,
                                          budget_gib=a.long_budget_gib)
  if a.flag_sweep:
    sets = [f.strip() for f in a.flag_sets.split(';')] if a.flag_sets else list(FLAG_SETS)
    result['flag_sweep'] = flag_sweep(a.flag_sweep_model, sets, a.flag_rounds, 3)
  if not a.no_pipeline:
    result['pipeline'] = pipeline_rows([0, 1, 2], 2 if a.quick else 6, 8)

  path = common.write_json(a.json, result)
  if a.plot:
    plot(result, a.plot)
  common.print_written(path, a.plot, machine)
  print(tables(result))
  if targets:
    print()
    print('targets: ' + json.dumps({k: round(v, 3) for k, v in targets.items()}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
