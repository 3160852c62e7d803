"""Training and evaluation commands for a benchmark's protocol (run by `dreamer-tf reproduce`).

Each run lives in `<outdir>/<algo>_<task>_s<seed>`. It is trained in stages, one
per checkpoint (`--run.steps <checkpoint>`; the training loop resumes from the run
directory), and after each stage its checkpoint is evaluated where training stopped.
A stage whose evaluation is already recorded is skipped, so calling again resumes.
"""

import sys
from dataclasses import dataclass
from pathlib import Path

from dreamer_tf.reference import FINAL, unknown_name
from dreamer_tf.reproduce import protocol
from dreamer_tf.reproduce.runs import read_run

# The installed command, so that a wheel install (which has no scripts/) reproduces too.
TRAIN = ('-m', 'dreamer_tf', 'train')


@dataclass(frozen=True)
class Stage:
    logdir: Path
    task: str
    seed: int
    steps: int
    train: tuple  # train.py command line
    evaluate: tuple  # checkpoint evaluation command line


def run_dir(outdir, algo, task, seed):
    return Path(outdir) / f'{algo}_{task}_s{seed}'


def check_tasks(benchmark, algo, tasks):
    """Raise for a task without a published `algo` score, listing those with one."""
    benchmark.check_algo(algo)
    published = benchmark.entry(algo).scores
    for task in tasks:
        if task not in published:
            raise unknown_name('task', task, published,
                               f' with a published {algo} score in {benchmark.name}')


def budgets(benchmark, steps=None):
    """The step counts to train to: the checkpoints, or `steps` for a budget-less source."""
    if FINAL in benchmark.checkpoints:
        if steps is None:
            raise ValueError(f'{benchmark.name}: the source does not state its training budget; '
                             'give one with --steps')
        return [int(steps)]
    if steps is not None:
        raise ValueError(f'{benchmark.name} trains to {benchmark.steps:,} steps as the paper '
                         'did; --steps is only for benchmarks whose source states no budget')
    return sorted(benchmark.checkpoints)


def train_command(benchmark, algo, task, seed, logdir, steps, configs=(), overrides=(),
                  config_path=None):
    """train.py arguments: the paper presets, then the user's blocks, the protocol's stated
    settings unless the user's blocks or overrides set them, then the user's overrides.

    `overrides` is a flat list of dotted-flag arguments ('--run.train_ratio', '64').
    """
    user_keys = protocol.block_keys(configs, config_path)
    user_keys.update(arg[2:].split('=')[0] for arg in overrides if arg.startswith('--'))
    stated = protocol.protocol_overrides(benchmark, algo, task, config_path)
    command = [sys.executable, *TRAIN, '--configs',
               *protocol.paper_presets(benchmark, algo), *configs,
               '--task', benchmark.task_name(task), '--seed', str(seed),
               '--logdir', str(logdir), '--run.steps', str(steps)]
    for key, value in stated.items():
        if key not in user_keys:
            command += [f'--{key}', str(value)]
    return tuple(command) + tuple(overrides)


def eval_command(benchmark, algo, logdir, checkpoint):
    entry = benchmark.entry(algo)
    command = [sys.executable, '-m', 'dreamer_tf.reproduce.evaluate', str(logdir),
               '--checkpoint', str(checkpoint)]
    if entry is not None and entry.protocol.eval_episodes:
        command += ['--episodes', str(entry.protocol.eval_episodes)]
    return tuple(command)


def pending(benchmark, algo, tasks, seeds, outdir, steps=None, configs=(), overrides=(),
            config_path=None):
    """The stages still to run, checkpoint by checkpoint so that every run reaches the
    first checkpoint before any run goes on to the next."""
    stages = []
    for budget in budgets(benchmark, steps):
        for task in tasks:
            for seed in seeds:
                logdir = run_dir(outdir, algo, task, seed)
                if _done(logdir, budget):
                    continue
                stages.append(Stage(
                    logdir, task, seed, budget,
                    train_command(benchmark, algo, task, seed, logdir, budget, configs, overrides,
                                  config_path),
                    eval_command(benchmark, algo, logdir, budget)))
    return stages


def _done(logdir, budget):
    """Whether the stage to `budget` needs no work: evaluated there, or trained past it
    (a run cannot go back to evaluate an earlier step; the report marks it)."""
    if not (logdir / 'config.yaml').is_file():
        return False
    run = read_run(logdir)
    evaluated = any(item.checkpoint == budget for item in run.evals)
    return evaluated or run.last_step > budget
