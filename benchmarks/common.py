"""What the benchmarks share: interleaved timing, XLA memory analysis, per-op profiles, the machine
description, JSON / table / plot output.

Timing. Every benchmark compiles its functions first, runs each ``warmup`` times, then runs them
round-robin (``A B C, B C A, C A B, ...``) ``repeats`` times, calling ``jax.block_until_ready``
after each call. Each entry reports the median. A ratio between two entries is the median of the
ratios within the same round, which cancels most of the slow drift of a shared machine (other
jobs starting or stopping). The machine's load average is recorded before and after.

Memory. ``compiled.memory_analysis()`` (XLA's buffer assignment; also on CPU): the peak of the
program is ``temp + argument + output - alias`` bytes (donated inputs alias outputs).

Profiles. ``op_profile`` traces a few calls with ``jax.profiler`` and sums each HLO instruction's
time over the trace (all threads), joined with the instruction's shape and JAX ``op_name`` from the
compiled HLO text: what docs/performance.md's per-op tables come from.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Mapping, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(REPO, 'benchmarks', 'results')
IMAGES_DIR = os.path.join(REPO, 'docs', 'images')
if REPO not in sys.path:
  sys.path.insert(0, REPO)

GIB = 1024**3


# ---------------------------------------------------------------------------------------------
# The machine.


def load_average() -> float:
  try:
    return os.getloadavg()[0]
  except OSError:
    return float('nan')


def machine_info() -> dict[str, Any]:
  """``nproc``, the CPU model, memory, jax / jaxlib versions, XLA_FLAGS and the load average."""
  model = ''
  try:
    out = subprocess.run(['lscpu'], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
      if line.startswith('Model name'):
        model = line.split(':', 1)[1].strip()
  except OSError:
    pass
  mem = ''
  try:
    with open('/proc/meminfo') as f:
      mem = f'{int(f.readline().split()[1]) / 1024**2:.1f} GiB'
  except OSError:
    pass
  info = {'nproc': os.cpu_count(), 'cpu': model or platform.processor(), 'memory': mem,
          'python': platform.python_version(), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
          'glibc_tunables': os.environ.get('GLIBC_TUNABLES', ''),
          'load_average_start': load_average(),
          'date': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
  try:
    import jax  # pylint: disable=g-import-not-at-top
    import jaxlib  # pylint: disable=g-import-not-at-top
    info.update(jax=jax.__version__, jaxlib=jaxlib.__version__,
                backend=jax.default_backend(), devices=len(jax.devices()))
  except ImportError:
    pass
  return info


def wait_for_quiet(max_load: float, timeout_s: float, poll_s: float = 15.0) -> float:
  """Waits (up to ``timeout_s``) until the 1-minute load average is below ``max_load``."""
  t0 = time.time()
  load = load_average()
  while load > max_load and time.time() - t0 < timeout_s:
    print(f'[wait] load average {load:.2f} > {max_load}; waiting', flush=True)
    time.sleep(poll_s)
    load = load_average()
  return load


# ---------------------------------------------------------------------------------------------
# Timing.


def block(x: Any) -> Any:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.block_until_ready(x)


def interleaved_times(fns: Mapping[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                      verbose: bool = False) -> dict[str, list[float]]:
  """Seconds per call of each thunk (which must block until its result is ready), measured
  round-robin with a rotating start: ``{name: [t_round0, t_round1, ...]}``."""
  names = list(fns)
  for name in names:
    for _ in range(warmup):
      fns[name]()
  times: dict[str, list[float]] = {n: [] for n in names}
  for r in range(repeats):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      t0 = time.perf_counter()
      fns[name]()
      times[name].append(time.perf_counter() - t0)
    if verbose:
      print(f'  round {r}: ' + ', '.join(f'{n} {times[n][-1]:.3f}s' for n in names), flush=True)
  return times


def median(xs: Sequence[float]) -> float:
  return float(statistics.median(xs)) if xs else float('nan')


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
  """Median over rounds of ``num[r] / den[r]``."""
  return median([a / b for a, b in zip(num, den)])


class LineWorker:
  """A persistent subprocess speaking JSON lines: ``call(line)`` writes one line to its stdin and
  returns its next stdout line, parsed. Used for the PyTorch peers, which run in their own
  interpreter (no jax there) and are timed in the same rounds as the JAX functions. The child
  gets this environment without ``XLA_*`` / ``JAX_*`` variables."""

  def __init__(self, cmd: Sequence[str]):
    env = {k: v for k, v in os.environ.items() if not k.startswith(('XLA_', 'JAX_'))}
    self.proc = subprocess.Popen(list(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True, env=env)

  def call(self, line: str) -> dict[str, Any]:
    assert self.proc.stdin and self.proc.stdout
    self.proc.stdin.write(line + '\n')
    self.proc.stdin.flush()
    out = self.proc.stdout.readline()
    if not out:
      raise RuntimeError(f'worker {self.proc.args[1:2]} exited ({self.proc.wait()})')
    return json.loads(out)

  def close(self) -> None:
    """Asks the worker to quit (``quit``) and waits for it."""
    try:
      self.call('quit')
    except (RuntimeError, BrokenPipeError, ValueError):
      pass
    self.proc.wait(timeout=30)


# ---------------------------------------------------------------------------------------------
# Memory.


def memory_stats(compiled: Any) -> dict[str, float]:
  """GiB from ``compiled.memory_analysis()``: temp, argument, output, alias and the peak
  ``temp + argument + output - alias``."""
  m = compiled.memory_analysis()
  if m is None:
    return {}
  temp, arg = m.temp_size_in_bytes, m.argument_size_in_bytes
  out, alias = m.output_size_in_bytes, m.alias_size_in_bytes
  return {'temp_gib': temp / GIB, 'argument_gib': arg / GIB, 'output_gib': out / GIB,
          'alias_gib': alias / GIB, 'peak_gib': (temp + arg + out - alias) / GIB}


# ---------------------------------------------------------------------------------------------
# Per-op profile.


def _hlo_index(text: str) -> dict[str, tuple[str, str]]:
  idx = {}
  for line in text.splitlines():
    m = re.match(r'\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ', line)
    if m:
      op_name = re.search(r'op_name="([^"]*)"', line)
      idx[m.group(1)] = (m.group(2), op_name.group(1) if op_name else '')
  return idx


def op_profile(jitted: Any, args: Sequence[Any], reps: int = 2) -> dict[str, Any]:
  """Per-HLO-instruction time (ms per call, summed over threads) of ``jitted(*args)``.

  Returns ``{'wall_ms', 'ops': [(name, ms, shape, op_name), ...] sorted by time}``; ``op_name``
  is JAX's name stack (``jit(step)/transpose(jvp(ResNet))/res3_bat1/conv1/...``; ``transpose(``
  marks the backward pass; weight-gradient convolutions carry no name).
  """
  import jax  # pylint: disable=g-import-not-at-top
  block(jitted(*args))
  idx = _hlo_index(jitted.lower(*args).compile().as_text())
  logdir = tempfile.mkdtemp(prefix='bat_jax_profile_')
  try:
    jax.profiler.start_trace(logdir)
    t0 = time.perf_counter()
    for _ in range(reps):
      block(jitted(*args))
    wall = (time.perf_counter() - t0) / reps
    jax.profiler.stop_trace()
    data = jax.profiler.ProfileData.from_file(
        glob.glob(f'{logdir}/**/*.xplane.pb', recursive=True)[0])
    total: dict[str, float] = collections.Counter()
    for plane in data.planes:
      for line in plane.lines:
        for event in line.events:
          if event.name in idx:
            total[event.name] += event.duration_ns / 1e6 / reps
  finally:
    shutil.rmtree(logdir, ignore_errors=True)
  ops = sorted(((n, t, *idx[n]) for n, t in total.items()), key=lambda o: -o[1])
  return {'wall_ms': wall * 1e3, 'ops': ops}


def op_category(op: str, shape: str, op_name: str) -> str:
  """A coarse bucket of an HLO instruction for the profile summaries."""
  backward = 'transpose(' in op_name
  if 'conv_general_dilated' in op_name or op.startswith('convolution'):
    return 'conv backward (input grad)' if backward else 'conv forward'
  if not op_name and op.startswith(('ynn_fusion', 'convolution')):
    return 'conv backward (weight grad)'
  if 'dot_general' in op_name or op.startswith('dot'):
    return 'matmul backward' if backward else 'matmul forward'
  if 'transpose' in op or 'copy' in op:
    return 'transposes / copies'
  return 'elementwise / reductions (bwd)' if backward else 'elementwise / reductions (fwd)'


def summarize_profile(profile: Mapping[str, Any], top: int = 15) -> dict[str, Any]:
  buckets: dict[str, float] = collections.Counter()
  for name, ms, shape, op_name in profile['ops']:
    buckets[op_category(name, shape, op_name)] += ms
  return {'wall_ms': profile['wall_ms'], 'sum_ms': sum(o[1] for o in profile['ops']),
          'buckets_ms': dict(sorted(buckets.items(), key=lambda kv: -kv[1])),
          'top': [{'op': n, 'ms': round(t, 2), 'shape': s, 'op_name': o[-120:]}
                  for n, t, s, o in profile['ops'][:top]]}


# ---------------------------------------------------------------------------------------------
# Output.


def write_json(name: str, obj: Any) -> str:
  os.makedirs(RESULTS_DIR, exist_ok=True)
  path = os.path.join(RESULTS_DIR, name)
  with open(path, 'w') as f:
    json.dump(obj, f, indent=1, sort_keys=False, default=float)
  return path


def print_written(path: str, plot_path: str, machine: Mapping[str, Any]) -> None:
  """The lines a benchmark prints before its tables: what it wrote and the machine's load."""
  print(f'wrote {path}' + (f' and {plot_path}' if plot_path else ''))
  print()
  print(f"machine: {machine['cpu']}, nproc {machine['nproc']}; load average "
        f"{machine['load_average_start']:.2f} -> {machine['load_average_end']:.2f}")


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> str:
  """A GitHub markdown table; ``columns`` are ``(key, header, format)`` (format '' = str)."""
  head = '| ' + ' | '.join(h for _, h, _ in columns) + ' |'
  sep = '|' + '|'.join('---' for _ in columns) + '|'
  lines = [head, sep]
  for row in rows:
    cells = []
    for key, _, fmt in columns:
      v = row.get(key, '')
      if v is None or v == '' or (isinstance(v, float) and v != v):
        cells.append('–')
      elif fmt and isinstance(v, (int, float)):
        cells.append(format(v, fmt))
      else:
        cells.append(str(v))
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def setup_matplotlib() -> Any:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt
