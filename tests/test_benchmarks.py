"""The benchmarks' own arithmetic: residual bytes from the jaxpr, paired ratios, target marks."""

import os
import sys

import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'benchmarks'))
import common  # noqa: E402  pylint: disable=g-import-not-at-top
import precision  # noqa: E402  pylint: disable=g-import-not-at-top
import report  # noqa: E402  pylint: disable=g-import-not-at-top


@pytest.mark.parametrize('dtype,itemsize', [(jnp.float32, 4), (jnp.bfloat16, 2)])
def test_residual_bytes_counts_what_the_backward_pass_keeps(dtype, itemsize):
  """sum(sin(x) * w) keeps sin(x) (for dw) and cos(x) (for dx); w itself is an argument."""
  x = jnp.ones((64, 32), dtype)
  w = jnp.ones((64, 32), dtype)
  got = precision.residual_bytes(lambda x, w: jnp.sum(jnp.sin(x) * w).astype(jnp.float32), x, w)
  assert got['total'] * common.GIB == pytest.approx(2 * 64 * 32 * itemsize, rel=0.01)
  assert set(got) == {'f32' if dtype == jnp.float32 else 'bf16', 'total'}


def test_residual_bytes_names_an_unknown_dtype(monkeypatch):
  monkeypatch.setattr(precision, '_ITEMSIZE', {'bf16': 2})
  with pytest.raises(ValueError, match="unknown residual dtype 'f32'"):
    precision.residual_bytes(lambda x: jnp.sum(jnp.sin(x)), jnp.ones((4,), jnp.float32))


def test_paired_ratio_is_the_median_of_per_round_ratios():
  """A load burst that slows a whole round (rounds 2-3 here) cancels in the per-round ratio."""
  load = [1.0, 1.0, 3.0, 3.0, 1.0]
  assert common.paired_ratio([1.2 * l for l in load], load) == pytest.approx(1.2)
  assert common.paired_ratio([2.0, 1.0, 3.0], [1.0, 2.0, 1.0]) == pytest.approx(2.0)


def test_report_marks_targets_against_their_limits():
  models = {'targets': {'target1_train_ratio': 1.30, 'target1_infer_ratio': 1.20,
                        'target1_mac_ratio': 1.267, 'target2_jax_over_torch_train_time': 0.99,
                        'target2_jax_over_torch_infer_time': 1.10},
            'rows': []}
  text = '\n'.join(report.targets_section(models))
  lines = {line.split('|')[1].strip(): line for line in text.splitlines()[2:]
           if line.startswith('|')}
  assert 'not met' in lines['1. C2D + 3D-BAT / C2D, train step time']
  assert '**met**' in lines['1. C2D + 3D-BAT / C2D, inference time']
  assert '**met**' in lines['2. JAX ResNet-50 / torch ResNet-50, train step time']
  assert 'met' not in lines['JAX ResNet-50 / torch ResNet-50, inference time']
  assert '**Left:** target 1 not met' in text


def test_blocks_benchmark_skips_what_would_not_fit():
  """A block whose compiled forward+backward peak exceeds --max-gib is skipped (with its peak),
  not run: the first full grid run was OOM-killed by a block its pre-compile estimate let in."""
  import blocks  # pylint: disable=g-import-not-at-top
  with pytest.raises(blocks.OverBudget, match=r'compiled peak .* GiB > --max-gib 1e-06'):
    blocks.Bench('bat3d', 16, 4, 14, max_gib=1e-6)
  bench = blocks.Bench('bat3d', 16, 4, 14, max_gib=1.0)
  assert 0 < bench.mem_fwd_bwd['peak_gib'] < 1.0
  assert bench.gmacs > 0


def test_ops_benchmark_finds_every_op_of_resnet50():
  """ops.py's op list comes from tracing the model: torchvision's ResNet-50 has 53 convolutions
  (one stem, 16 3x3, 36 1x1 of which 3 strided projection shortcuts), 53 BatchNorms and one max
  pool,
  and the convolutions' multiply-adds plus the classifier's are the model's total."""
  import ops  # pylint: disable=g-import-not-at-top
  from bat_jax.tools import summary  # pylint: disable=g-import-not-at-top
  found = ops.model_ops('imagenet_r50', batch=1)
  count = lambda pred: sum(op['count'] for op in found if pred(op))  # noqa: E731
  assert count(lambda op: op['kind'] == 'conv') == 53
  assert count(lambda op: op['kind'] == 'conv' and op['kernel'] == 3) == 16
  assert count(lambda op: op['kind'] == 'conv' and op['kernel'] == 1 and op['stride'] == 2) == 3
  assert count(lambda op: op['kind'] == 'bn') == 53
  assert count(lambda op: op['kind'] == 'bn' and op['relu']) == 33  # 1 stem + 2 per block
  assert [op['key'] for op in found if op['kind'] == 'pool'] == ['maxpool3x3/2 112x112x64']
  assert [op['kernel'] for op in found if op['kind'] == 'conv' and not op['needs_dx']] == [7]
  conv_macs = sum(op['count'] * op['macs'] for op in found if op['kind'] == 'conv')
  total = summary.summarize(ops.models_bench.load_config('imagenet_r50').model)['gmacs'] * 1e9
  assert conv_macs + 2048 * 1000 == pytest.approx(total, rel=1e-9)


def test_ops_category_totals_weight_by_count_and_skip_what_the_step_does_not_run():
  import ops  # pylint: disable=g-import-not-at-top
  found = [{'key': 'stem', 'kind': 'conv', 'kernel': 7, 'needs_dx': False, 'count': 1},
           {'key': 'c1', 'kind': 'conv', 'kernel': 1, 'needs_dx': True, 'count': 3},
           {'key': 'bn', 'kind': 'bn', 'count': 2}]
  rows = [{'op': 'stem', 'part': 'fwd', 'jax_ms': 5.0, 'torch_ms': 4.0},
          {'op': 'stem', 'part': 'dx', 'jax_ms': 100.0, 'torch_ms': 100.0},
          {'op': 'c1', 'part': 'dW', 'jax_ms': 2.0, 'torch_ms': 1.0},
          {'op': 'bn', 'part': 'fwd', 'jax_ms': 1.0, 'torch_ms': 3.0},
          {'op': 'bn', 'part': 'fwd+bwd', 'jax_ms': 2.0, 'torch_ms': 4.0}]
  totals = {t['category']: t for t in ops.category_totals(found, rows)}
  assert totals['1x1 conv dW']['jax_ms'] == 6.0 and totals['1x1 conv dW']['ratio'] == 2.0
  assert totals['3x3 / 7x7 conv forward']['jax_ms'] == 5.0
  assert totals['3x3 / 7x7 conv dx']['jax_ms'] == 0.0  # the image's gradient is never needed
  total = totals['sum (all but the forward-only BatchNorm row)']
  assert (total['jax_ms'], total['torch_ms']) == (5.0 + 6.0 + 4.0, 4.0 + 3.0 + 8.0)


def test_checkouts_ratio_is_per_pair_then_the_median():
  """Pairs run back to back: a load change between pairs (pair 1 is 3x slower) cancels."""
  import checkouts  # pylint: disable=g-import-not-at-top
  got = checkouts.summary('r50', [1.0, 3.0, 1.0], [0.9, 3.3, 1.0])
  assert [q['ratio'] for q in got['pairs']] == pytest.approx([0.9, 1.1, 1.0])
  assert got['median_ratio'] == pytest.approx(1.0)
  assert '| r50 | 1.000 | 1.000 | 0.900, 1.100, 1.000 | 1.000 |' in checkouts.table([got])
