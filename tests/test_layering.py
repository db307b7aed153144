"""The package's imports form one downward graph (docs/architecture.md).

Every ``import`` / ``from ... import`` in ``bat_jax/`` -- at module level and inside functions --
is read with ``ast``, and so is every string that is a whole dotted ``bat_jax.*`` name (a module
loaded by name, ``importlib.import_module(DATA_SOURCES[name])``); an edge ``a -> b`` joins two
subpackages when a module of ``a`` imports one of ``b``. The test fails on any cycle between
subpackages and on any import that goes up the layer order.
"""

from __future__ import annotations

import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'bat_jax'

# Lowest first: a subpackage may import only those before it (and itself).
LAYERS = ('ops', 'nn', 'blocks', 'models', 'data', 'evaluation', 'training', 'tools')
_MODULE_NAME = re.compile(r'bat_jax(\.[A-Za-z_]\w*)+')


def _subpackage(module: str) -> str | None:
  parts = module.split('.')
  if parts[0] != 'bat_jax':
    return None
  return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else '<root>'


def _imports(path: pathlib.Path) -> set[str]:
  """Absolute names of the bat_jax modules ``path`` imports, wherever in the file."""
  tree = ast.parse(path.read_text(), str(path))
  package = '.'.join(path.relative_to(PACKAGE.parent).with_suffix('').parts[:-1])
  names: set[str] = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split('.')[:len(package.split('.')) - node.level + 1]
        module = '.'.join(base + ([node.module] if node.module else []))
      else:
        module = node.module or ''
      names.add(module)
      names.update(f'{module}.{a.name}' for a in node.names)
    elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
          and _MODULE_NAME.fullmatch(node.value)):
      names.add(node.value)  # a module imported by name
  return {n for n in names if n.startswith('bat_jax')}


def package_graph() -> dict[str, set[str]]:
  """Subpackage -> the other subpackages it imports."""
  graph: dict[str, set[str]] = {}
  for path in PACKAGE.rglob('*.py'):
    rel = path.relative_to(PACKAGE)
    if len(rel.parts) < 2:
      continue  # bat_jax/__init__.py: the package's public surface, above every layer
    src = rel.parts[0]
    for name in _imports(path):
      dst = _subpackage(name)
      if dst and dst != src and dst != '<root>':
        graph.setdefault(src, set()).add(dst)
      elif dst == '<root>':
        graph.setdefault(src, set()).add('<root>')
  return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  cycles, state = [], {}

  def visit(node: str, stack: list[str]) -> None:
    state[node] = 'open'
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        cycles.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = 'done'

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  return cycles


def test_reader_sees_function_level_imports(tmp_path):
  """The parser is not fooled by an import hidden inside a function or a relative import."""
  pkg = tmp_path / 'bat_jax' / 'ops'
  pkg.mkdir(parents=True)
  f = pkg / 'x.py'
  f.write_text('def f():\n  from bat_jax.training import loop\n  from ..models import resnet\n'
               "  return importlib.import_module('bat_jax.tools.summary')\n")
  global PACKAGE  # pylint: disable=global-statement
  saved, PACKAGE = PACKAGE, tmp_path / 'bat_jax'
  try:
    assert _imports(f) >= {'bat_jax.training', 'bat_jax.models', 'bat_jax.models.resnet',
                           'bat_jax.tools.summary'}
  finally:
    PACKAGE = saved


def test_cycle_finder():
  assert _cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == [['a', 'b', 'c', 'a']]
  assert _cycles({'a': {'b'}, 'b': {'c'}}) == []


def test_no_cycle_between_subpackages():
  graph = package_graph()
  assert len(graph) >= 5, f'read too few subpackages under {PACKAGE}: {sorted(graph)}'
  assert not _cycles(graph), f'import cycles between subpackages: {_cycles(graph)}'


def test_imports_go_down_the_layers():
  graph = package_graph()
  assert set(graph) <= set(LAYERS), f'subpackages missing from LAYERS: {set(graph) - set(LAYERS)}'
  upward = sorted((src, dst) for src, dsts in graph.items() for dst in dsts
                  if dst == '<root>' or LAYERS.index(dst) > LAYERS.index(src))
  assert not upward, f'imports that go up the layer order (or to bat_jax/__init__): {upward}'


def test_math_never_imports_flax():
  for path in (PACKAGE / 'ops').rglob('*.py'):
    tree = ast.parse(path.read_text())
    mods = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module or '' for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not any(m.split('.')[0] == 'flax' for m in mods), f'{path} imports flax'
