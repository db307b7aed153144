"""benchmarks/accelerator.py: the peak table, XLA FLOPs, the verdict, and its --tiny CPU run."""

import json
import os
import sys

import jax
import jax.numpy as jnp
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                'benchmarks'))
import accelerator  # noqa: E402  pylint: disable=g-import-not-at-top


def test_peak_table_matches_device_kinds():
  assert accelerator.peak_tflops('NVIDIA H100 80GB HBM3', 'bfloat16') == 989.4
  assert accelerator.peak_tflops('NVIDIA H200', 'float32') == 494.7
  assert accelerator.peak_tflops('NVIDIA A100-SXM4-40GB', 'bfloat16') == 312.0
  assert accelerator.peak_tflops('TPU v5 lite', 'bfloat16') == 197.0
  assert accelerator.peak_tflops('TPU v4', 'float32') == 275.0
  assert accelerator.peak_tflops('cpu', 'float32') is None


def test_step_flops_counts_a_matmul():
  a, b = jnp.ones((64, 32)), jnp.ones((32, 16))
  compiled = jax.jit(jnp.matmul).lower(a, b).compile()
  assert accelerator.step_flops(compiled) == pytest.approx(2 * 64 * 32 * 16, rel=0.01)


def test_verdict_compares_pipeline_with_the_host_demand():
  row = {'input': 'video', 'clips_per_s': 100.0}
  assert accelerator.verdict(row, 300.0, 4) == 'input-bound'
  assert accelerator.verdict(row, 500.0, 4) == 'compute-bound'
  assert accelerator.verdict({'input': 'image', 'clips_per_s': 1.0}, 1.0, 1).startswith('n/a')


def test_tiny_run_writes_every_field(tmp_path, capsys):
  out = str(tmp_path / 'acc.json')
  assert accelerator.main(['--tiny', '--models', 'c2d', '--dtypes', 'float32', '--repeats', '1',
                           '--json', out]) == 0
  res = json.load(open(out))
  (row,) = res['rows']
  assert row['model'] == 'c2d' and row['batch'] == 2 and row['step_s'] > 0
  assert row['tflops_per_step'] > 0 and row['mfu'] is None  # no peak for a CPU
  assert row['peak_gib'] > 0 and row['verdict'] in ('input-bound', 'compute-bound')
  assert res['pipeline']['clips_per_s'] > 0
  assert 'input pipeline:' in capsys.readouterr().out


def test_unknown_model_is_named():
  with pytest.raises(ValueError, match='--models: unknown'):
    accelerator.main(['--tiny', '--models', 'nope'])
