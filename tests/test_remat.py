"""``model.remat_stages`` (flax ``nn.remat`` per residual / inserted block of the named stages)
changes memory, not the function: same parameters, outputs, BN statistics and gradients.

Tolerance: the rematerialised program recomputes the same operations, but XLA may fuse them
differently, so float32 results agree to rounding: outputs and statistics within ``1e-5`` of the
largest entry of each array; gradients within ``1e-5`` of the largest entry of each array or of
the largest gradient entry of the model, whichever is larger (a conv bias right before a
train-mode BN has an exactly-zero true gradient: its float32 value is rounding noise, ~1e-6,
that differs between any two compilations).
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bat_jax import build_model

STAGES = ('res2', 'res3', 'res4', 'res5')
BLOCKS = {
    '3dbat': dict(type='bat', groups=2, size=4, matrix='block', temporal_groups=2,
                  temporal_size=2, normalization='softmax', reduction=2, dropout_rate=0.2),
    'nonlocal': dict(type='nonlocal', instantiation='embedded_gaussian', mode='spacetime',
                     subsample=True, reduction=2),
}


def small_config(block: str, remat_stages=(), frames: int = 4, size: int = 32):
  """A width-4 C2D-ResNet-50 with two blocks in res3 and res4 (res3 is 4x4, res4 2x2 at 32^2)."""
  return ml_collections.ConfigDict(dict(
      name='c2d_resnet50', num_classes=5, width=4, input_size=(frames, size, size),
      dropout_rate=0.5, block=BLOCKS[block], insertions={'res3': (1,), 'res4': (1,)},
      remat_stages=tuple(remat_stages)))


def _assert_trees_close(a, b, rtol=1e-5, global_scale=False):
  flat_a, _ = jax.tree.flatten_with_path(a)
  flat_b, _ = jax.tree.flatten_with_path(b)
  assert [p for p, _ in flat_a] == [p for p, _ in flat_b]
  largest = max(float(np.max(np.abs(np.asarray(y)))) for _, y in flat_b)
  for (path, x), (_, y) in zip(flat_a, flat_b):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert x.shape == y.shape, path
    scale = max(np.max(np.abs(y)), largest if global_scale else 0.0, 1e-30)
    np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * scale,
                               err_msg=jax.tree_util.keystr(path))


def _train_outputs(cfg, variables, x, labels):
  model = build_model(cfg)

  def loss_fn(params):
    logits, updates = model.apply({'params': params, 'batch_stats': variables['batch_stats']}, x,
                                  train=True, rngs={'dropout': jax.random.key(3)},
                                  mutable=['batch_stats'])
    one_hot = jax.nn.one_hot(labels, logits.shape[-1])
    loss = -jnp.mean(jnp.sum(one_hot * jax.nn.log_softmax(logits), -1))
    return loss, (logits, updates['batch_stats'])

  (loss, (logits, stats)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      variables['params'])
  return loss, logits, stats, grads


# Two of the four (block, stages) pairs: each block type, and remat of one stage and of all
# (BAT under remat of all stages is also checked by tests/test_xla_cpu.py's tied-remat test).
@pytest.mark.parametrize('block, remat', [('3dbat', ('res3',)), ('nonlocal', STAGES)])
def test_remat_same_params_outputs_stats_and_gradients(block, remat):
  x = jax.random.normal(jax.random.key(0), (2, 4, 32, 32, 3))
  labels = jnp.array([1, 3])
  plain_cfg, remat_cfg = small_config(block), small_config(block, remat)
  init = lambda cfg: jax.jit(lambda: build_model(cfg).init(  # noqa: E731
      {'params': jax.random.key(1)}, x[:1], train=False))()
  variables, remat_vars = init(plain_cfg), init(remat_cfg)
  # Same parameter names, shapes and initial values: checkpoints load either way.
  _assert_trees_close(remat_vars, variables, rtol=0)

  loss0, logits0, stats0, grads0 = _train_outputs(plain_cfg, variables, x, labels)
  loss1, logits1, stats1, grads1 = _train_outputs(remat_cfg, variables, x, labels)
  np.testing.assert_allclose(float(loss1), float(loss0), rtol=1e-5)
  _assert_trees_close(logits1, logits0)
  _assert_trees_close(stats1, stats0)
  _assert_trees_close(grads1, grads0, global_scale=True)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads1))

  # Inference too (remat only matters under differentiation, but the module path changes).
  infer = lambda cfg: jax.jit(  # noqa: E731
      lambda v: build_model(cfg).apply(v, x, train=False))(variables)
  y0, y1 = infer(plain_cfg), infer(remat_cfg)
  _assert_trees_close(y1, y0)


def test_remat_lowers_the_compiled_peak():
  """The rematerialised backward keeps only each block's input: XLA's compiled temp memory drops.

  (``jax.checkpoint`` / ``nn.remat`` alone does not achieve this on XLA:CPU, whose scheduler
  runs the recomputation right after the forward pass and so raises the peak; see
  ``bat_jax.nn.xla_cpu.remat_module``.)"""
  x = jax.ShapeDtypeStruct((1, 8, 64, 64, 3), jnp.float32)

  def temp_bytes(cfg):
    model = build_model(cfg)
    variables = jax.eval_shape(lambda: model.init({'params': jax.random.key(0)},
                                                  jnp.zeros(x.shape), train=False))

    def loss(params, stats, x):
      logits, _ = model.apply({'params': params, 'batch_stats': stats}, x, train=True,
                              rngs={'dropout': jax.random.key(0)}, mutable=['batch_stats'])
      return jnp.sum(logits)

    args = (variables['params'], variables['batch_stats'], x)
    compiled = jax.jit(jax.grad(loss)).lower(*args).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  plain = temp_bytes(small_config('3dbat', frames=8, size=64))
  remat = temp_bytes(small_config('3dbat', STAGES, frames=8, size=64))
  assert remat < 0.8 * plain, (remat, plain)
