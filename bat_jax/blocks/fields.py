"""The field check every block shares: a config's ``model.block`` (or ``model.rsa``) against the
module's dataclass fields, with an error that names ``<prefix>.<field>``."""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

# Module fields the model sets, not the block config: flax's own, the backbone's dtype and BN group.
_NOT_CONFIG = ('parent', 'name', 'dtype', 'bn_group_size')


def config_fields(cls: type, exclude: Iterable[str] = ()) -> set[str]:
  """The fields of module ``cls`` a config may set."""
  return {f.name for f in dataclasses.fields(cls) if f.name not in (*_NOT_CONFIG, *exclude)}


def validate_fields(cls: type, fields: Mapping[str, Any], *, prefix: str = 'model.block',
                    choices: Mapping[str, Sequence[Any]] | None = None,
                    exclude: Iterable[str] = ()) -> dict[str, Any]:
  """``fields`` over the module's defaults, after checking names and enumerated values.

  Raises ``ValueError`` for a field ``cls`` does not have (or one in ``exclude``: set by the
  backbone), and for a value outside ``choices[field]``, naming ``<prefix>.<field>`` (the bare
  field when ``prefix`` is empty) and the allowed ones.
  """
  allowed = config_fields(cls, exclude)
  unknown = set(fields) - allowed
  if unknown:
    raise ValueError(f'{prefix or cls.__name__} has unknown field(s) {sorted(unknown)}; '
                     f'allowed: {sorted(allowed)}')
  values = {f.name: f.default for f in dataclasses.fields(cls)
            if f.default is not dataclasses.MISSING and f.name not in _NOT_CONFIG}
  values.update(fields)
  for field, options in (choices or {}).items():
    if values.get(field) not in options:
      name = f'{prefix}.{field}' if prefix else field
      raise ValueError(f'{name}={values.get(field)!r}; allowed: {list(options)}')
  return values
