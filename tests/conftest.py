"""Suite-wide set-up: one JAX compilation cache shared by every ``train.py`` / ``evaluate.py``
subprocess the tests start (``tests/helpers_train.py``'s ``env_for``), across pytest-xdist workers.

Most subprocesses compile the same tiny programs (the ``helpers_train`` configs); the cache turns
each repeat compile into a file read: a 12-step run takes ~5 s of CPU instead of ~26 s. The
controller creates the directory before the workers start (they inherit the environment) and
removes it at the end. In-process tests do not use it.
"""

import os
import shutil
import tempfile

import pytest

from tests import helpers_train as h


def pytest_configure(config):
  if h.SUITE_CACHE not in os.environ:  # the controller, or a run without xdist
    os.environ[h.SUITE_CACHE] = tempfile.mkdtemp(prefix='bat_jax_jax_cache_')
    config._bat_jax_owns_cache = True  # pylint: disable=protected-access


def pytest_unconfigure(config):
  if getattr(config, '_bat_jax_owns_cache', False):
    shutil.rmtree(os.environ.pop(h.SUITE_CACHE), ignore_errors=True)


@pytest.fixture(scope='session')
def cache_dir() -> str:
  """The suite's shared compilation cache directory."""
  return os.environ[h.SUITE_CACHE]
