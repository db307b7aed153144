r"""The ResNet-50 train step op by op: each distinct convolution, BatchNorm (+ ReLU) and the max
pool, in JAX (XLA:CPU) and in the PyTorch peer (oneDNN), side by side in one run.

    python benchmarks/ops.py                  # every distinct op of ResNet-50, batch 8 x 224^2
    python benchmarks/ops.py --repeats 9 --inner 5
    python benchmarks/ops.py --torch-python PATH    # default: .venv-bench-peer (make venv-bench-peer)

Which ops: the JAX model itself is traced (``jax.eval_shape``, nothing computed) with
``flax.linen.intercept_methods`` recording every ``Conv`` and ``BatchNorm`` call — input shape,
kernel, stride, fused ReLU — and equal calls are merged with a count; the stem's 3x3 / 2 max pool
is added. Parts timed: a convolution's forward, input gradient ``dx`` and weight gradient ``dW``
(each its own jitted function, so XLA computes only that part; torch: ``F.conv2d`` and
``aten.convolution_backward`` with one output mask), a BatchNorm's forward and forward + backward
in training mode, the pool's forward + backward. JAX runs the model's own modules
(``layers.Conv``, ``layers.BatchNorm``, ``layers.max_pool_hw``) with the train step's compiler
options; torch runs NCHW float32 like the peer in ``models.py``.

Timing: rounds alternate torch (a persistent ``--torch-worker`` subprocess, no jax imported) and
JAX; in a round every op is called ``--inner`` times and its mean recorded; an op's time is the
median over ``--repeats`` rounds, its ratio the median of per-round ratios. The category table
weights each op by its count in the model (the stem's ``dx`` is not needed and not counted): what
each kind of op costs per train step in each framework (the whole step is ``models.py``'s).

Writes ``benchmarks/results/ops.json``; prints the tables last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Sequence

# ---------------------------------------------------------------------------------------------
# The PyTorch side: runs under --torch-python (no jax), kept above the jax imports.


def _torch_thunks(op: dict[str, Any]) -> dict[str, Any]:
  """``{part: thunk}`` for one op on NCHW float32 tensors."""
  import torch  # pylint: disable=g-import-not-at-top
  import torch.nn.functional as F  # pylint: disable=g-import-not-at-top
  n, h, w, c = op['input']
  x = torch.randn(n, c, h, w)
  if op['kind'] == 'conv':
    k, s, p, o = op['kernel'], op['stride'], op['pad'], op['out']
    weight = torch.randn(o, c, k, k) * 0.05
    dy = torch.randn(F.conv2d(x, weight, stride=s, padding=p).shape)

    def grad(mask):
      return lambda: torch.ops.aten.convolution_backward(
          dy, x, weight, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, mask)

    def fwd():
      with torch.no_grad():
        F.conv2d(x, weight, stride=s, padding=p)
    return {'fwd': fwd, 'dx': grad([True, False, False]), 'dW': grad([False, True, False])}
  if op['kind'] == 'bn':
    bn = torch.nn.BatchNorm2d(c).train()
    dy = torch.randn_like(x)
    xg = x.clone().requires_grad_(True)

    def bn_fwd():
      with torch.no_grad():
        y = bn(x)
        if op['relu']:
          torch.relu_(y)

    def bn_fwd_bwd():
      xg.grad = None
      bn.zero_grad(set_to_none=True)
      y = bn(xg)
      (torch.relu_(y) if op['relu'] else y).backward(dy)
    return {'fwd': bn_fwd, 'fwd+bwd': bn_fwd_bwd}
  if op['kind'] == 'pool':
    xg = x.clone().requires_grad_(True)
    dy = torch.randn(F.max_pool2d(x, 3, 2, 1).shape)

    def pool_fwd_bwd():
      xg.grad = None
      F.max_pool2d(xg, 3, 2, 1).backward(dy)
    return {'fwd+bwd': pool_fwd_bwd}
  raise ValueError(f"unknown op kind {op['kind']!r}")


def torch_worker(threads: int) -> None:
  """Line protocol: first line the ops (JSON list); then ``round N`` -> ``{op/part: seconds}``
  (mean of N calls of each, after one warm-up call when first seen); ``info``; ``quit``."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  ops = json.loads(sys.stdin.readline())
  thunks = {f"{op['key']}/{part}": fn for op in ops for part, fn in _torch_thunks(op).items()}
  for fn in thunks.values():
    fn()
  print(json.dumps({'ready': len(thunks)}), flush=True)
  for line in sys.stdin:
    cmd = line.split()
    if cmd and cmd[0] == 'round':
      inner = int(cmd[1])
      out = {}
      for name, fn in thunks.items():
        t0 = time.perf_counter()
        for _ in range(inner):
          fn()
        out[name] = (time.perf_counter() - t0) / inner
      print(json.dumps(out), flush=True)
    elif cmd == ['info']:
      print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(),
                        'mkldnn': bool(torch.backends.mkldnn.is_available())}), flush=True)
    elif cmd == ['quit']:
      return


if __name__ == '__main__' and '--torch-worker' in sys.argv:
  _p = argparse.ArgumentParser()
  _p.add_argument('--torch-worker', action='store_true')
  _p.add_argument('--threads', type=int, default=os.cpu_count() or 1)
  torch_worker(_p.parse_args().threads)
  sys.exit(0)

# ---------------------------------------------------------------------------------------------
# JAX side.

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  pylint: disable=g-import-not-at-top

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bat_jax import build_model  # noqa: E402
from bat_jax.nn import layers  # noqa: E402
from bat_jax.training import steps  # noqa: E402

import models as models_bench  # noqa: E402  pylint: disable=g-import-not-at-top

# Categories of the per-step table: (name, kind, part, 1 for 1x1 convs / 3 for larger kernels /
# None for any, counted in the sum). BatchNorm's forward alone is shown but not summed: its
# forward + backward row includes it.
CATEGORIES = (
    ('1x1 conv forward', 'conv', 'fwd', 1, True), ('1x1 conv dx', 'conv', 'dx', 1, True),
    ('1x1 conv dW', 'conv', 'dW', 1, True), ('3x3 / 7x7 conv forward', 'conv', 'fwd', 3, True),
    ('3x3 / 7x7 conv dx', 'conv', 'dx', 3, True), ('3x3 / 7x7 conv dW', 'conv', 'dW', 3, True),
    ('BatchNorm (+ReLU) forward (in the next row)', 'bn', 'fwd', None, False),
    ('BatchNorm (+ReLU) forward + backward', 'bn', 'fwd+bwd', None, True),
    ('max pool forward + backward', 'pool', 'fwd+bwd', None, True),
)


def model_ops(config_module: str = 'imagenet_r50', batch: int = 8) -> list[dict[str, Any]]:
  """The distinct Conv / BatchNorm calls of a recipe's model at ``batch`` (plus its stem pool),
  each ``{'key', 'kind', 'input': (n, h, w, c), ..., 'count', 'macs'}`` in order of first call.

  Convolutions carry ``kernel``, ``stride``, ``pad``, ``out``, ``needs_dx`` (False for the stem:
  the train step never asks for the image's gradient) and ``macs`` per call; BatchNorms ``relu``.
  Recorded with ``nn.intercept_methods`` under ``jax.eval_shape``: nothing is computed.
  """
  cfg = models_bench.load_config(config_module)
  model = build_model(cfg.model)
  if models_bench.is_video(cfg.model):
    raise ValueError(f'{config_module}: ops.py takes an image model (frames are not folded)')
  shape = (batch, *tuple(int(s) for s in cfg.model.input_size), 3)
  calls: list[dict[str, Any]] = []

  def record(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name == '__call__' and isinstance(module, (layers.Conv, layers.BatchNorm)):
      n, t, h, w, c = args[0].shape
      if t != 1:
        raise ValueError(f'{module.name}: expected one frame, got input {args[0].shape}')
      if isinstance(module, layers.Conv):
        (kt, kh, kw), (_, sh, _), (_, pad, _) = module.geometry()
        if kt != 1 or kh != kw or module.groups != 1:
          raise ValueError(f'{module.name}: ops.py times square 1 x k x k convs without groups')
        out_h = (h + 2 * pad - kh) // sh + 1
        out_w = (w + 2 * pad - kw) // sh + 1
        calls.append({'kind': 'conv', 'input': (n, h, w, c), 'kernel': kh, 'stride': sh,
                      'pad': pad, 'out': module.features, 'needs_dx': bool(calls),
                      'macs': n * out_h * out_w * c * module.features * kh * kw})
      else:
        calls.append({'kind': 'bn', 'input': (n, h, w, c), 'relu': bool(module.relu)})
    return next_fun(*args, **kwargs)

  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(lambda x: model.init({'params': jax.random.key(0)}, x), x)
  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']),
                   variables, x)
  stem = next(c for c in calls if c['kind'] == 'conv')
  s = stem['stride']
  calls.append({'kind': 'pool', 'input': (batch, shape[1] // s, shape[2] // s, stem['out'])})

  merged: dict[str, dict[str, Any]] = {}
  for call in calls:
    n, h, w, c = call['input']
    if call['kind'] == 'conv':
      key = (f"conv{call['kernel']}x{call['kernel']}/{call['stride']} {h}x{w} "
             f"{c}->{call['out']}" + ('' if call['needs_dx'] else ' (stem)'))
    elif call['kind'] == 'bn':
      key = f"bn{'+relu' if call['relu'] else ''} {h}x{w}x{c}"
    else:
      key = f'maxpool3x3/2 {h}x{w}x{c}'
    if key in merged:
      merged[key]['count'] += 1
    else:
      merged[key] = {'key': key, **call, 'count': 1}
  return list(merged.values())


def jax_thunks(op: dict[str, Any]) -> dict[str, Any]:
  """``{part: thunk}`` running the model's own module for ``op`` (NHWC, one frame)."""
  n, h, w, c = op['input']
  key = jax.random.key(0)
  x = jax.random.normal(key, (n, 1, h, w, c), jnp.float32)
  options = steps.compiler_options()
  jit = lambda f: jax.jit(f, compiler_options=options)  # noqa: E731
  if op['kind'] == 'conv':
    k, s, p = op['kernel'], op['stride'], op['pad']
    conv = layers.Conv(op['out'], (1, k, k), (1, s, s), (0, p, p))
    params = conv.init(key, x)
    dy = jax.random.normal(key, jax.eval_shape(conv.apply, params, x).shape, jnp.float32)
    fwd = jit(conv.apply)
    dx = jit(lambda v, x, dy: jax.vjp(lambda x: conv.apply(v, x), x)[1](dy)[0])
    dw = jit(lambda v, x, dy: jax.vjp(lambda v: conv.apply(v, x), v)[1](dy)[0])
    return {'fwd': lambda: common.block(fwd(params, x)),
            'dx': lambda: common.block(dx(params, x, dy)),
            'dW': lambda: common.block(dw(params, x, dy))}
  if op['kind'] == 'bn':
    bn = layers.BatchNorm(relu=op['relu'])
    variables = bn.init(key, x)
    dy = jax.random.normal(key, x.shape, jnp.float32)
    apply = lambda p, x: bn.apply({**variables, 'params': p}, x, mutable=['batch_stats'])[0]  # noqa: E731
    fwd = jit(apply)
    fwd_bwd = jit(lambda p, x, dy: jax.vjp(apply, p, x)[1](dy))
    params = variables['params']
    return {'fwd': lambda: common.block(fwd(params, x)),
            'fwd+bwd': lambda: common.block(fwd_bwd(params, x, dy))}
  if op['kind'] == 'pool':
    pool = lambda x: layers.max_pool_hw(x, 3, 2, 1)  # noqa: E731
    dy = jax.random.normal(key, jax.eval_shape(pool, x).shape, jnp.float32)
    fwd_bwd = jit(lambda x, dy: jax.vjp(pool, x)[1](dy)[0])
    return {'fwd+bwd': lambda: common.block(fwd_bwd(x, dy))}
  raise ValueError(f"unknown op kind {op['kind']!r}")


def category_totals(ops: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
  """Per category of ``CATEGORIES``: ``sum(count * time)`` over the rows of matching ops (ms per
  train step), JAX and torch, and their ratio; then the sum of the summed categories. The stem's
  ``dx`` is skipped (the train step never computes it)."""
  by_key = {op['key']: op for op in ops}
  out = []
  for name, kind, part, kernel, in_sum in CATEGORIES:
    jax_ms = torch_ms = 0.0
    for row in rows:
      op = by_key[row['op']]
      if op['kind'] != kind or row['part'] != part:
        continue
      if kernel is not None and (op['kernel'] == 1) != (kernel == 1):
        continue
      if part == 'dx' and not op['needs_dx']:
        continue
      jax_ms += op['count'] * row['jax_ms']
      torch_ms += op['count'] * (row['torch_ms'] if row['torch_ms'] is not None else float('nan'))
    out.append({'category': name, 'jax_ms': jax_ms, 'torch_ms': torch_ms, 'in_sum': in_sum,
                'ratio': jax_ms / torch_ms if torch_ms else float('nan')})
  total_j = sum(r['jax_ms'] for r in out if r['in_sum'])
  total_t = sum(r['torch_ms'] for r in out if r['in_sum'])
  out.append({'category': 'sum (all but the forward-only BatchNorm row)', 'jax_ms': total_j,
              'torch_ms': total_t, 'in_sum': False,
              'ratio': total_j / total_t if total_t else float('nan')})
  return out


def tables(rows: Sequence[dict[str, Any]], totals: Sequence[dict[str, Any]]) -> str:
  """The per-step category table, then the per-op table (markdown)."""
  return '\n'.join([
      '### Per train step (ms: sum over the model of count x time per call)', '',
      common.format_table(totals, [('category', 'ops', ''), ('jax_ms', 'JAX ms', '.1f'),
                                   ('torch_ms', 'torch ms', '.1f'),
                                   ('ratio', 'JAX / torch', '.2f')]), '',
      '### Per op (ms per call; ratio: median of per-round JAX / torch)', '',
      common.format_table(rows, [('op', 'op', ''), ('count', 'in model', 'd'),
                                 ('part', 'part', ''), ('jax_ms', 'JAX ms', '.2f'),
                                 ('torch_ms', 'torch ms', '.2f'),
                                 ('ratio', 'JAX / torch', '.2f')])])


class TorchWorker(common.LineWorker):
  """The persistent ``--torch-worker`` subprocess, fed the op list."""

  def __init__(self, python: str, threads: int, ops: Sequence[dict[str, Any]]):
    super().__init__([python, os.path.abspath(__file__), '--torch-worker', '--threads',
                      str(threads)])
    self.ready = self.call(json.dumps(list(ops)))


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--config', default='imagenet_r50', help='image recipe in configs/')
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--repeats', type=int, default=7, help='rounds (torch, then JAX)')
  p.add_argument('--inner', type=int, default=3, help='calls of each op per round (mean)')
  p.add_argument('--torch-python', default=os.path.join(common.REPO, '.venv-bench-peer', 'bin', 'python'))
  p.add_argument('--torch-threads', type=int, default=os.cpu_count() or 1)
  p.add_argument('--json', default='ops.json')
  a = p.parse_args(argv)

  machine = common.machine_info()
  ops = model_ops(a.config, a.batch)
  n_calls = sum(op['count'] for op in ops)
  print(f"{a.config} at batch {a.batch}: {n_calls} op calls, {len(ops)} distinct; "
        f"{sum(op['count'] * op.get('macs', 0) for op in ops) / 1e9:.1f} GMACs in convolutions",
        flush=True)
  thunks = {}
  for op in ops:
    for part, fn in jax_thunks(op).items():
      thunks[f"{op['key']}/{part}"] = fn
  t0 = time.perf_counter()
  for fn in thunks.values():  # compile and warm up
    fn()
  print(f'[jax] {len(thunks)} functions compiled in {time.perf_counter() - t0:.0f} s', flush=True)

  peer_note = models_bench.torch_available(a.torch_python)
  worker = None
  if not peer_note:
    worker = TorchWorker(a.torch_python, a.torch_threads, ops)
    print(f"[torch] {worker.ready['ready']} functions ready", flush=True)
  else:
    print(f'[torch] peer skipped: {peer_note}', flush=True)

  times: dict[str, dict[str, list[float]]] = {'jax': {n: [] for n in thunks},
                                              'torch': {n: [] for n in thunks}}
  t_start = time.perf_counter()
  for r in range(a.repeats):
    if worker is not None:
      for name, seconds in worker.call(f'round {a.inner}').items():
        times['torch'][name].append(seconds)
    for name, fn in thunks.items():
      t0 = time.perf_counter()
      for _ in range(a.inner):
        fn()
      times['jax'][name].append((time.perf_counter() - t0) / a.inner)
    done = r + 1
    eta = (time.perf_counter() - t_start) / done * (a.repeats - done)
    print(f'  round {done}/{a.repeats}, ETA {eta:.0f} s', flush=True)
  info = worker.call('info') if worker is not None else None
  if worker is not None:
    worker.close()

  counts = {op['key']: op['count'] for op in ops}
  rows = []
  for name in thunks:
    key, part = name.rsplit('/', 1)
    tj, tt = times['jax'][name], times['torch'][name]
    rows.append({'op': key, 'part': part, 'count': counts[key],
                 'jax_ms': common.median(tj) * 1e3,
                 'torch_ms': common.median(tt) * 1e3 if tt else None,
                 'ratio': common.paired_ratio(tj, tt) if tt else None})
  totals = category_totals(ops, rows)
  machine['load_average_end'] = common.load_average()
  path = common.write_json(a.json, {
      'machine': machine, 'args': vars(a), 'torch': info, 'torch_peer': peer_note or 'ran',
      'ops': ops, 'rows': rows, 'categories': totals})
  common.print_written(path, '', machine)
  print()
  print(tables(rows, totals))
  return 0


if __name__ == '__main__':
  sys.exit(main())
