"""Kills at any moment (issue 16, item 2): a training run is killed at moments drawn from a seeded
RNG -- after an update, while an asynchronous checkpoint write is in flight, in the middle of a
periodic evaluation; SIGKILL, and SIGTERM during an evaluation -- and the same command resumes each
time; the end state and ``metrics.jsonl`` are bit-identical to an uninterrupted run.

CI: one SIGKILL during a checkpoint write, one SIGTERM during an evaluation.
``BAT_JAX_RELIABILITY_LONG=1``: 5 SIGKILLs (one each during a write and an evaluation, three at
random phases) and the SIGTERM."""

import os
import signal

import numpy as np

from bat_jax.training import preemption
from tests import helpers_train as h
from tests.reliability.conftest import LONG, OPTS, STEPS, record

CHECKPOINT_STEPS, EVAL_STEPS = (4, 8, 12), (5, 10, 12)
VALID_STEPS = {'step': tuple(range(1, STEPS)), 'save': CHECKPOINT_STEPS[:-1],
               'eval': EVAL_STEPS[:-1]}


def kill_moments(num_kills: int, seed: int = 16) -> list[tuple[int, str, str]]:
  """``(step, phase, signal)`` in run order: a SIGKILL during a write and one during an eval
  (``num_kills`` >= 2), the rest at other random moments, and a SIGTERM during the other
  evaluation; one per step, sorted by step."""
  rng = np.random.default_rng(seed)
  kill_eval, term_eval = (int(s) for s in rng.permutation(VALID_STEPS['eval']))
  first = [(int(rng.choice(VALID_STEPS['save'])), 'save')]
  if num_kills >= 2:
    first.append((kill_eval, 'eval'))
  used = {s for s, _ in first} | {term_eval}
  for _ in range(num_kills - len(first)):
    # One moment per step: a resumed run restarts at or before the killed step, never after it.
    others = [(s, p) for p in ('step', 'save') for s in VALID_STEPS[p] if s not in used]
    step, phase = others[int(rng.integers(len(others)))]
    first.append((step, phase))
    used.add(step)
  return sorted([(s, p, 'KILL') for s, p in first] + [(term_eval, 'eval', 'TERM')])


def test_signals_at_random_moments_then_resume_is_bit_identical(tmp_path, reference, cache_dir):
  workdir = str(tmp_path / 'run')
  cmd = h.train_cmd(workdir, overrides=OPTS)
  moments = kill_moments(5 if LONG else 1)
  landed = []
  for step, phase, name in moments:
    proc = h.run(cmd, h.env_for(1, cache_dir, BAT_JAX_TEST_SIGNAL_AT=f'{step}:{phase}:{name}'))
    expected = -signal.SIGKILL if name == 'KILL' else preemption.PREEMPTED_EXIT_CODE
    assert proc.returncode == expected, (step, phase, name, proc.stderr[-4000:])
    assert os.path.exists(os.path.join(workdir, f'signalled_{step}_{phase}'))
    if name == 'TERM':  # the evaluation finished, then the step was saved
      assert step in h.checkpoint_steps(workdir)
      assert h.metrics_lines(workdir)[-1]['step'] == step
    landed.append((step, phase, name))
  h.run_ok(cmd, h.env_for(1, cache_dir))
  h.assert_same_state(reference, workdir, STEPS)
  with open(os.path.join(reference, 'metrics.jsonl'), 'rb') as a, open(
      os.path.join(workdir, 'metrics.jsonl'), 'rb') as b:
    assert a.read() == b.read()
  record('kill at any moment (SIGKILL / SIGTERM)', injected=len(landed), survived=len(landed),
         details=' '.join(f'{n}@{s}:{p}' for s, p, n in landed))
