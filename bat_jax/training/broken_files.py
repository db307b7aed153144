"""The report of the inputs the data pipeline could not read (``broken_files_process<i>.json``)."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
from absl import logging


def write_report(data: Any, workdir: str) -> None:
  """The pipeline's undecodable or missing inputs (replaced in training, masked in eval), one file
  per process: ``WORKDIR/broken_files_process<i>.json``, a list of ``{path, reason, count,
  split}``. A resumed run (or ``evaluate.py``) adds to the entries already there (counts summed);
  the registry is then emptied so that nothing is counted twice."""
  broken = data.broken_files() if hasattr(data, 'broken_files') else []
  if not broken:
    return
  path = os.path.join(workdir, f'broken_files_process{jax.process_index()}.json')
  merged: dict[tuple[str, str], dict[str, Any]] = {}
  if os.path.exists(path):
    try:
      with open(path) as f:
        for e in json.load(f):
          merged[(e['path'], e.get('split', ''))] = e
    except (OSError, ValueError, KeyError, TypeError):
      logging.warning('could not read %s: rewriting it', path)
  for e in broken:
    key = (e['path'], e.get('split', ''))
    if key in merged:
      merged[key] = {**merged[key], 'count': int(merged[key].get('count', 0)) + int(e['count'])}
    else:
      merged[key] = dict(e)
  entries = [merged[k] for k in sorted(merged)]
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(entries, f, indent=2)
  os.replace(tmp, path)
  if hasattr(data, 'reset_broken_files'):
    data.reset_broken_files()
  logging.warning('%d undecodable or missing inputs this run (%d in all), listed in %s',
                  len(broken), len(entries), path)
