"""Reading data sets' official annotation files: where they are, their non-empty lines, their
JSON lists, and label ranges; every error names the file (and line) at fault.

Used by the data-set modules (:mod:`bat_jax.data.something_something`,
:mod:`bat_jax.data.diving48`, :mod:`bat_jax.data.finegym`, :mod:`bat_jax.data.charades`,
:mod:`bat_jax.data.ucf101`, :mod:`bat_jax.data.cub200`), each of which writes only its own
format's line or entry check.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Sequence

__all__ = ['find_file', 'read_json', 'json_entries', 'text_lines', 'check_labels']


def find_file(root: str, name: str, subdir: str = 'annotations') -> str:
  """``root/<name>`` or ``root/<subdir>/<name>``; ``FileNotFoundError`` naming both."""
  for d in (root, os.path.join(root, subdir)):
    p = os.path.join(d, name)
    if os.path.isfile(p):
      return p
  raise FileNotFoundError(f'{name} not found under {root!r} (or its {subdir}/)')


def read_json(path: str) -> Any:
  """The JSON value in ``path``; ``ValueError`` naming the file when it is not JSON."""
  with open(path, encoding='utf-8') as f:
    try:
      return json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not valid JSON ({e})') from None


def json_entries(path: str, keys: Sequence[str]) -> list[dict[str, Any]]:
  """The entries of a JSON file holding a non-empty list of objects, each with ``keys``;
  ``ValueError`` naming the file and the first entry that is not."""
  entries = read_json(path)
  if not isinstance(entries, list) or not entries:
    raise ValueError(f'{path}: expected a non-empty list of videos')
  for n, e in enumerate(entries):
    if not isinstance(e, dict) or any(k not in e for k in keys):
      names = ' / '.join(f'"{k}"' for k in keys)
      raise ValueError(f'{path}: entry {n} has no {names} ({e!r:.80})')
  return entries


def text_lines(path: str, what: str | None = None) -> Iterator[tuple[int, str]]:
  """``(line number, line without surrounding white space)`` of each non-empty line of a text
  file. With ``what`` (e.g. 'UCF-101 split list'), a missing file raises ``FileNotFoundError``
  naming it as that."""
  if what is not None and not os.path.isfile(path):
    raise FileNotFoundError(f'{what} {path!r} does not exist')
  with open(path, encoding='utf-8') as f:
    for n, line in enumerate(f, 1):
      line = line.strip()
      if line:
        yield n, line


def check_labels(labels: Sequence[int], num_classes: int, where: str) -> None:
  """``ValueError`` naming ``where`` when a label is outside ``[0, num_classes)``."""
  bad = [l for l in labels if not 0 <= int(l) < num_classes]
  if bad:
    raise ValueError(f'{where}: label {bad[0]} outside [0, {num_classes})')
