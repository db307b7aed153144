"""Helpers shared by the tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bat_jax.training import config_checks


def random_variables(variables, seed, scale=0.5, var_range=(0.5, 1.5)):
  """Every parameter and BN statistic replaced by random float32 values (BN variances in
  ``var_range``), so that reference tests exercise all of them."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if jax.tree_util.keystr(path).endswith("['var']"):
      return jnp.asarray(rng.uniform(*var_range, leaf.shape), jnp.float32)
    return jnp.asarray(rng.normal(0.0, scale, leaf.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, dict(variables))


def assert_tfds_or_folder_source_validated(cfg, folder_name: str, root: str) -> None:
  """``cfg`` (a tfds recipe with ``data.data_dir`` empty) fails validation naming
  ``data_dir``; with ``data.name = folder_name`` it fails naming ``data.root`` until ``root``
  is set, and then passes with ``data_dir`` still empty."""
  with pytest.raises(config_checks.ConfigError, match='config.data.data_dir is empty'):
    config_checks.validate_config(cfg)
  cfg.data.name = folder_name
  with pytest.raises(config_checks.ConfigError, match='config.data.root is empty'):
    config_checks.validate_config(cfg)
  cfg.data.root = root
  config_checks.validate_config(cfg)
