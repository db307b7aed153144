"""Helpers shared by the tests."""

import jax
import jax.numpy as jnp
import numpy as np


def random_variables(variables, seed, scale=0.5, var_range=(0.5, 1.5)):
  """Every parameter and BN statistic replaced by random float32 values (BN variances in
  ``var_range``), so that reference tests exercise all of them."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    if jax.tree_util.keystr(path).endswith("['var']"):
      return jnp.asarray(rng.uniform(*var_range, leaf.shape), jnp.float32)
    return jnp.asarray(rng.normal(0.0, scale, leaf.shape), jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, dict(variables))
