"""The argument of a config file: ``--config=configs/<file>.py:key=value,key=value``.

``ml_collections.config_flags`` passes the text after the file's ``:`` to ``get_config`` as one
string (``get_config()`` when there is none); ``parse`` turns it into typed fields, as
big_vision's ``configs/common.py`` ``parse_arg`` does. docs/recipes.md lists every file's
arguments.
"""

from __future__ import annotations

import importlib
from typing import Any

import ml_collections

_TRUE, _FALSE = ('true', '1', 'yes'), ('false', '0', 'no')


def _convert(file_key: str, text: str, default: Any) -> Any:
  """``text`` as the type of ``default`` (bool, int, float or str)."""
  if isinstance(default, bool):
    if text.lower() not in _TRUE + _FALSE:
      raise ValueError(f'config argument {file_key}={text!r}: expected true or false')
    return text.lower() in _TRUE
  for kind in (int, float):
    if isinstance(default, kind):
      try:
        return kind(text)
      except ValueError:
        raise ValueError(f'config argument {file_key}={text!r}: expected {kind.__name__}, '
                         f'as the default {default!r}') from None
  return text


def parse(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """``'k=16,matrix=full'`` -> ``ConfigDict(k=16, matrix='full', ...)`` over ``defaults``.

  Each value takes the type of its default. A bare value without ``=`` (``:cs4``) sets the first
  argument. ``None`` or ``''`` gives the defaults. An argument not in ``defaults``, a repeated
  one, or a value of the wrong type raises ``ValueError`` naming it and the allowed ones.
  """
  if not defaults:
    raise ValueError('config args.parse needs the allowed arguments and their defaults')
  values = dict(defaults)
  text = (arg or '').strip()
  if text and '=' not in text and ',' not in text:
    text = f'{next(iter(defaults))}={text}'
  seen: set[str] = set()
  for item in filter(None, (s.strip() for s in text.split(','))):
    key, eq, value = item.partition('=')
    key = key.strip()
    if not eq:
      raise ValueError(f'config argument {item!r} has no value: write {item}=<value>; '
                       f'allowed arguments: {sorted(defaults)}')
    if key not in defaults:
      raise ValueError(f'unknown config argument {key!r}; allowed: {sorted(defaults)}')
    if key in seen:
      raise ValueError(f'config argument {key!r} is given twice in {arg!r}')
    seen.add(key)
    values[key] = _convert(key, value.strip(), defaults[key])
  return ml_collections.ConfigDict(values)


def load(spec: str) -> ml_collections.ConfigDict:
  """The config of ``'<file>[:arg]'`` (``'imagenet_r50_bat:k=16'``, ``'configs/x.py:k=16'``),
  as ``--config=configs/<file>.py[:arg]`` builds it."""
  path, colon, arg = spec.partition(':')
  name = path.removeprefix('configs/').removesuffix('.py')
  module = importlib.import_module(f'configs.{name}')
  return module.get_config(arg) if colon else module.get_config()
