"""Diagnostics: tools that look inside a run or measure the update, kept apart from the
product. Training, evaluation and export never import this package (a test checks it);
its modules reach the agent through its public methods only.

- `benchmark`: the update's time, FLOPs, roofline, input wait and policy latency
  (`dreamer-tf benchmark`), on synthetic batches.
- `value_trace`: an episode step by step with what the reward head and critic predict,
  and the return the world model imagines from each state (`dreamer-tf diagnose trace`).
- `action_probe`: constant actions held in the model and in the simulator, compared
  (`dreamer-tf diagnose probe`, dm_control).
- `planning`: CEM over a run's world model and critic in place of its actor
  (`dreamer-tf diagnose plan`).
- `toy_probe`: what a `toy_reach` agent learned, read off its checkpoint
  (`scripts/learning_check.py`).
- `modes`: env steps and updates per second of the sync and async training loops.
- `env_throughput`: collection speed of worker envs in lockstep.
- `peers/`: the update side by side with the authors' JAX code and sheeprl's PyTorch
  port, each in its own virtual environment (`peers/compare.py`; run from a checkout,
  not part of the installed package).
- `fingerprint`: every preset's metrics after two updates on fixed data, the check that a
  refactoring changed no computation (`tests/test_fingerprint.py`).
"""
