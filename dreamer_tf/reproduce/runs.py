"""Run directories as the training loop writes them, read without TensorFlow.

A run directory holds config.yaml (the resolved config), metrics.jsonl (one JSON
record per line: 'step' in env steps, and 'eval_return' / 'eval_return_std' on
evaluation lines), checkpoints/, and, where written, checkpoint_evals.jsonl (the
evaluations at the benchmark checkpoints made by dreamer_tf.reproduce.evaluate)
and stats.jsonl (Crafter's per-episode achievement records).
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from dreamer_tf.config import Config
from dreamer_tf.fileio import read_jsonl, write_atomic
from dreamer_tf.reference import FINAL

CHECKPOINT_EVALS = 'checkpoint_evals.jsonl'
CRAFTER_STATS = 'stats.jsonl'


class RunError(ValueError):
    """A directory is not a readable run directory."""


@dataclass(frozen=True)
class Eval:
    step: int
    mean: float
    std: float | None
    checkpoint: int | None = None  # the benchmark checkpoint the checkpoint evaluator made it for
    policy: str = 'mode'  # run.eval_policy: mode | sample
    episodes: int | None = None  # None: not recorded


@dataclass
class Run:
    path: Path
    config: dict  # dotted key -> value, as in config.yaml
    evals: list  # Eval, by step; metrics.jsonl's and the checkpoint evaluator's
    last_step: int  # the latest env step any record mentions (logged every run.log_every)
    crafter_episodes: list = field(default_factory=list)

    @property
    def task(self):
        return self.config.get('task', '?')

    @property
    def algo(self):
        return self.config.get('algo', '?')

    @property
    def seed(self):
        return self.config.get('seed', '?')

    @property
    def name(self):
        return self.path.name

    def eval_at(self, checkpoint):
        """The evaluation that stands for `checkpoint`: the one made for it, else the
        latest before it; for FINAL (no stated budget) the last one. None if the run
        has no such evaluation."""
        if checkpoint == FINAL:
            return self.evals[-1] if self.evals else None
        for item in self.evals:
            if item.checkpoint == checkpoint:
                return item
        before = [item for item in self.evals if item.step <= checkpoint]
        return before[-1] if before else None


def read_run(path):
    path = Path(path)
    config_path = path / 'config.yaml'
    if not config_path.is_file():
        raise RunError(f'{path} is no run directory: it has no config.yaml')
    try:
        data = YAML(typ='safe').load(config_path.read_text())
    except YAMLError as error:
        raise RunError(f'cannot parse {config_path}: {error}') from None
    if not isinstance(data, dict):
        raise RunError(f'{config_path}: expected a mapping')
    metrics = read_jsonl(path / 'metrics.jsonl')
    made = read_jsonl(path / CHECKPOINT_EVALS)
    config = Config(data).flat()
    evals = [
        Eval(int(r['step']), float(r['eval_return']), r.get('eval_return_std'),
             policy=_loop_policy(r, config), episodes=_loop_episodes(r, config))
        for r in metrics
        if 'eval_return' in r
    ]
    evals += [
        Eval(int(r['step']), float(r['eval_return']), r.get('eval_return_std'),
             int(r.get('checkpoint', r['step'])), r.get('policy', 'mode'), r.get('episodes'))
        for r in made
    ]
    # At equal steps the checkpoint evaluation sorts last, so that it is "the latest".
    evals.sort(key=lambda item: (item.step, item.checkpoint is not None))
    steps = [int(r['step']) for r in metrics + made if 'step' in r]
    return Run(
        path=path,
        config=config,
        evals=evals,
        last_step=max(steps, default=0),
        crafter_episodes=read_jsonl(path / CRAFTER_STATS),
    )


def _loop_policy(record, config):
    """The policy of a training-loop evaluation: logged with it since run.eval_policy
    exists; for older lines the run's config, and modes before the key existed."""
    if 'eval_sampled' in record:
        return 'sample' if record['eval_sampled'] else 'mode'
    return config.get('run.eval_policy', 'mode')


def _loop_episodes(record, config):
    if 'eval_episodes' in record:
        return int(record['eval_episodes'])
    return config.get('run.eval_episodes')


def find_runs(paths):
    """Run directories among `paths`: each path is a run or a folder of runs."""
    runs = []
    for path in map(Path, paths):
        if (path / 'config.yaml').is_file():
            runs.append(read_run(path))
        elif path.is_dir():
            runs += [read_run(child) for child in sorted(path.iterdir())
                     if (child / 'config.yaml').is_file()]
        else:
            raise RunError(f'{path} is neither a run directory nor a folder of runs')
    return runs


def record_checkpoint_eval(run_dir, step, returns, checkpoint=None, policy='mode'):
    """Store an evaluation made at env step `step` with run.eval_policy `policy`
    for the benchmark checkpoint `checkpoint` (default: `step`), replacing one
    made for the same checkpoint.

    The two differ when the loop's last iteration steps past the checkpoint
    (several envs, action repeat)."""
    checkpoint = step if checkpoint is None else checkpoint
    path = Path(run_dir) / CHECKPOINT_EVALS
    records = [r for r in read_jsonl(path) if r.get('checkpoint', r.get('step')) != checkpoint]
    # The statistics of the training loop's own evaluation lines (mean, np.std).
    records.append({
        'step': int(step),
        'checkpoint': int(checkpoint),
        'time': time.time(),
        'eval_return': float(np.mean(returns)),
        'eval_return_std': float(np.std(returns)),
        'episodes': len(returns),
        'policy': policy,
    })
    records.sort(key=lambda r: r['step'])
    write_atomic(path, ''.join(json.dumps(r) + '\n' for r in records))
