"""The fault-injection suite's figures (docs/reliability.md): runs ``pytest tests/reliability``
with ``BAT_JAX_RELIABILITY_REPORT`` set, then prints a Markdown table of every recorded fault
(injected, survived, data lost) and the pytest summary.

    python benchmarks/reliability.py          # the CI sizes
    python benchmarks/reliability.py --long   # the soak: 5 kills, 100 fuzzed configs

A test records its figures only after all its asserts pass, so "survived" counts faults whose
run ended where a run without the fault ends (bit-identical parameters and metrics.jsonl where
the test resumes) or stopped with the documented message; "data lost" is injected - survived.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def table(records: list[dict]) -> str:
  rows = collections.OrderedDict()
  for r in records:
    row = rows.setdefault(r['fault'], {'injected': 0, 'survived': 0, 'details': r['details']})
    row['injected'] += r['injected']
    row['survived'] += r['survived']
  lines = ['| fault | injected | survived | data lost | details |', '|---|---|---|---|---|']
  for fault, r in rows.items():
    lines.append(f"| {fault} | {r['injected']} | {r['survived']} | "
                 f"{r['injected'] - r['survived']} | {r['details']} |")
  total = [sum(r[k] for r in rows.values()) for k in ('injected', 'survived')]
  lines.append(f'| **all** | {total[0]} | {total[1]} | {total[0] - total[1]} | |')
  return '\n'.join(lines)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--long', action='store_true', help='the soak sizes')
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    report = os.path.join(tmp, 'report.jsonl')
    env = dict(os.environ, BAT_JAX_RELIABILITY_REPORT=report)
    if args.long:
      env['BAT_JAX_RELIABILITY_LONG'] = '1'
    t0 = time.time()
    proc = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-n', '0', 'tests/reliability'],
                          cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.time() - t0
    records = []
    if os.path.exists(report):
      with open(report) as f:
        records = [json.loads(line) for line in f]
  summary = [l for l in proc.stdout.splitlines() if l.strip()][-1:]
  print(table(records))
  command = 'python benchmarks/reliability.py' + (' --long' if args.long else '')
  print(f'\n`{command}`: pytest {summary[0] if summary else "?"} ({seconds:.0f} s wall)')
  if proc.returncode:
    print(proc.stdout[-5000:], file=sys.stderr)
  return proc.returncode


if __name__ == '__main__':
  sys.exit(main())
