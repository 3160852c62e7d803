"""Measured results as data: one YAML record per run under `results/`, and the table
that README.md shows, rendered from them (`dreamer-tf results`).

A record says what was run and what it scored, so that a table can be checked and
rebuilt from it:

    name: dreamerv3-xs-cartpole            # the file is results/<name>.yaml
    algo: dreamerv3
    task: gym_CartPole-v1
    command: dreamer-tf train --configs dreamerv3 gym cpu ...
    commit: 96f521e                       # the dreamer_tf code that trained
    seed: 0
    machine: 2-core CPU
    curve: {episodes: 5, points: [[1000, 11.8], [3000, 14.0], ...]}  # [env steps, return]
    score: {env_steps: 9500, mean: 498.8, std: 3.6, episodes: 10, policy: mode}
    paper: {value: 840, source: ...}      # optional: the published number to compare with
    note: ...                             # optional, one line

`dreamer-tf results add` writes one from a run directory and `dreamer-tf eval --json`;
`dreamer-tf results --plot curves.png` draws their learning curves.
"""

import io
import json
import subprocess
from pathlib import Path

from ruamel.yaml import YAML

from dreamer_tf.fileio import read_jsonl, write_atomic

FIELDS = {'name': str, 'algo': str, 'task': str, 'command': str, 'commit': str, 'seed': int,
          'machine': str, 'score': dict}
# curve: absent only for a run whose evaluation steps were not kept.
OPTIONAL = {'curve': dict, 'paper': dict, 'note': str}
SCORE = ('env_steps', 'mean', 'std', 'episodes', 'policy')
# `eval --json` names the policy by what it did; records by `--policy` / `run.eval_policy`.
POLICIES = {'deterministic': 'mode', 'sampled': 'sample', 'latent-sampled': 'sample_latent',
            'planned': 'plan', 'uniform-random': 'random'}


class RecordError(ValueError):
    """A results record that is missing a field or holds a value of the wrong kind."""


def check(record, source):
    """Raises RecordError naming the file and field unless `record` is a valid record."""
    if not isinstance(record, dict):
        raise RecordError(f'{source}: expected a mapping of fields')
    missing = [key for key in FIELDS if key not in record]
    unknown = [key for key in record if key not in FIELDS and key not in OPTIONAL]
    if missing or unknown:
        raise RecordError(f'{source}: missing fields {missing}, unknown fields {unknown}')
    for key, kind in {**FIELDS, **OPTIONAL}.items():
        if key in record and not isinstance(record[key], kind):
            raise RecordError(f'{source}: {key} must be a {kind.__name__}')
    if sorted(record['score']) != sorted(SCORE):
        raise RecordError(f'{source}: score needs exactly {", ".join(SCORE)}')
    points = record['curve'].get('points') if 'curve' in record else None
    if 'curve' in record and (not points or any(len(point) != 2 for point in points)):
        raise RecordError(f'{source}: curve.points must be [[env steps, return], ...]')
    if 'paper' in record and set(record['paper']) != {'value', 'source'}:
        raise RecordError(f'{source}: paper needs value and source')
    return record


def load(folder):
    """The records in `folder`, sorted by file name."""
    records = []
    for path in sorted(Path(folder).glob('*.yaml')):
        with open(path) as file:
            record = check(YAML(typ='safe').load(file), path)
        if record['name'] != path.stem:
            raise RecordError(f'{path}: name {record["name"]!r} must equal the file name')
        records.append(record)
    return records


def table(records):
    """README's results table: one row per record."""
    lines = ['| algorithm | task | env steps | return (mean ± std, episodes) | paper | record |',
             '|---|---|---|---|---|---|']
    for r in records:
        score = r['score']
        paper = r['paper']['value'] if 'paper' in r else '–'
        lines.append(
            f'| {r["algo"]} | `{r["task"]}` | {score["env_steps"]:,} | '
            f'{score["mean"]:.1f} ± {score["std"]:.1f} ({score["episodes"]}) | {paper} | '
            f'[{r["name"]}](results/{r["name"]}.yaml) |')
    return '\n'.join(lines) + '\n'


def plot(records, path):
    """The records' learning curves, one panel per task, with the paper's score marked."""
    from dreamer_tf.reproduce import plots

    panels = {}
    for r in records:
        panel = panels.setdefault(r['task'], plots.Panel(r['task']))
        if 'curve' in r:
            steps, values = zip(*r['curve']['points'])
        else:  # no curve kept: the score alone
            steps, values = [r['score']['env_steps']], [r['score']['mean']]
        panel.series.append(plots.Series(r['name'], [(steps, values)]))
        if 'paper' in r:
            panel.points.append(plots.Points(
                r['algo'], [r['score']['env_steps']], [r['paper']['value']], [None]))
    plots.plot(path, list(panels.values()))
    return path


def from_run(logdir, name, command, evaluation, machine, commit=None):
    """A record of the run in `logdir`, scored by the JSON that `eval --json` wrote;
    `commit` is the code that trained it (default: this checkout's)."""
    logdir = Path(logdir)
    with open(logdir / 'config.yaml') as file:
        config = YAML(typ='safe').load(file)
    # A resumed run may log a step twice: the last evaluation of a step wins.
    evals = {int(row['step']): row for row in read_jsonl(logdir / 'metrics.jsonl')
             if 'eval_return' in row}
    scored = json.loads(Path(evaluation).read_text())
    returns = [episode['return'] for episode in scored['episodes']]
    mean = sum(returns) / len(returns)
    std = (sum((x - mean) ** 2 for x in returns) / len(returns)) ** 0.5
    record = {
        'name': name, 'algo': config['algo'], 'task': config['task'], 'command': command,
        'commit': commit or _commit(), 'seed': config['seed'], 'machine': machine,
        'score': {'env_steps': _env_steps(scored['checkpoint']), 'mean': round(mean, 2),
                  'std': round(std, 2), 'episodes': len(returns),
                  'policy': POLICIES.get(scored['mode'], scored['mode'])},
    }
    if evals:
        record['curve'] = {
            'episodes': int(next(iter(evals.values()))['eval_episodes']),
            'points': [[step, round(row['eval_return'], 2)] for step, row in evals.items()]}
    return record


def _env_steps(checkpoint):
    import tensorflow as tf

    return int(tf.train.load_variable(checkpoint, 'counters/env_steps/.ATTRIBUTES/VARIABLE_VALUE'))


def write(record, folder):
    """Writes `results/<name>.yaml` atomically, after checking the record."""
    path = Path(folder) / f'{record["name"]}.yaml'
    check(record, path)
    yaml, text = YAML(), io.StringIO()
    yaml.default_flow_style = None
    yaml.dump(record, text)
    write_atomic(path, text.getvalue())
    return path


def _commit():
    """The commit of the dreamer_tf checkout that runs this, or 'unknown' (a wheel)."""
    try:
        return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=Path(__file__).parent,
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
