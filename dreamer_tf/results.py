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
    wall_minutes: 45                      # optional: the run's wall time
    transcribed: true                     # optional: read back from an earlier doc, the
                                          # run directory being gone (score.std may be null)
    headline: true                        # optional: a row of README.md's table
    note: ...                             # optional, one line

A speed record (`results/speed/<name>.yaml`) holds one measured table:

    name: cpu-update-per-preset
    command: dreamer-tf benchmark ...
    commit: 96f521e
    machine: 2-core CPU, quiet
    title: Update time of every preset, XLA off and on
    columns: [preset, batch, XLA, s/update]
    rows: [[dreamerv3 xs, 16x64, 'off', 1.92], ...]
    note: ...                             # optional, and transcribed as above

`dreamer-tf results add` writes one from a run directory and `dreamer-tf eval --json`;
`dreamer-tf results --render` writes results/README.md (every table, and one PNG of
learning curves per task under results/curves/) from the records.
"""

import hashlib
import io
import json
import re
import subprocess
from pathlib import Path

from ruamel.yaml import YAML

from dreamer_tf.fileio import read_jsonl, write_atomic

FIELDS = {'name': str, 'algo': str, 'task': str, 'command': str, 'commit': str, 'seed': int,
          'machine': str, 'score': dict}
# curve: absent only for a run whose evaluation steps were not kept.
OPTIONAL = {'curve': dict, 'paper': dict, 'note': str, 'wall_minutes': (int, float),
            'transcribed': bool, 'headline': bool}
SPEED_FIELDS = {'name': str, 'command': str, 'commit': str, 'machine': str, 'title': str,
                'columns': list, 'rows': list}
SPEED_OPTIONAL = {'note': str, 'transcribed': bool}
SCORE = ('env_steps', 'mean', 'std', 'episodes', 'policy')
# `eval --json` names the policy by what it did; records by `--policy` / `run.eval_policy`.
POLICIES = {'deterministic': 'mode', 'sampled': 'sample', 'latent-sampled': 'sample_latent',
            'planned': 'plan', 'uniform-random': 'random'}


class RecordError(ValueError):
    """A results record that is missing a field or holds a value of the wrong kind."""


def _check_fields(record, source, fields, optional):
    if not isinstance(record, dict):
        raise RecordError(f'{source}: expected a mapping of fields')
    missing = [key for key in fields if key not in record]
    unknown = [key for key in record if key not in fields and key not in optional]
    if missing or unknown:
        raise RecordError(f'{source}: missing fields {missing}, unknown fields {unknown}')
    for key, kind in {**fields, **optional}.items():
        if key in record and not isinstance(record[key], kind):
            names = ' or '.join(k.__name__ for k in kind) if isinstance(kind, tuple) else (
                kind.__name__)
            raise RecordError(f'{source}: {key} must be a {names}')


def check(record, source):
    """Raises RecordError naming the file and field unless `record` is a valid record."""
    _check_fields(record, source, FIELDS, OPTIONAL)
    if sorted(record['score']) != sorted(SCORE):
        raise RecordError(f'{source}: score needs exactly {", ".join(SCORE)}')
    if record['score']['std'] is None and not record.get('transcribed'):
        raise RecordError(f'{source}: score.std may be null only in a transcribed record')
    points = record['curve'].get('points') if 'curve' in record else None
    if 'curve' in record and (not points or any(len(point) != 2 for point in points)):
        raise RecordError(f'{source}: curve.points must be [[env steps, return], ...]')
    if 'paper' in record and set(record['paper']) != {'value', 'source'}:
        raise RecordError(f'{source}: paper needs value and source')
    return record


def check_speed(record, source):
    """Raises RecordError unless `record` is a valid speed record (one table)."""
    _check_fields(record, source, SPEED_FIELDS, SPEED_OPTIONAL)
    width = len(record['columns'])
    if not record['rows'] or any(not isinstance(row, list) or len(row) != width
                                 for row in record['rows']):
        raise RecordError(f'{source}: rows must be lists of {width} cells, one per column')
    return record


def load(folder, speed=False):
    """The learning records in `folder` (with `speed`, those of `folder`/speed), sorted by
    file name."""
    folder, checker = (Path(folder) / 'speed', check_speed) if speed else (Path(folder), check)
    records = []
    for path in sorted(folder.glob('*.yaml')):
        with open(path) as file:
            record = checker(YAML(typ='safe').load(file), path)
        if record['name'] != path.stem:
            raise RecordError(f'{path}: name {record["name"]!r} must equal the file name')
        records.append(record)
    return records


def _score(score):
    spread = '–' if score['std'] is None else f'{score["std"]:.1f}'
    return f'{score["mean"]:.1f} ± {spread} ({score["episodes"]})'


def table(records, prefix='results/'):
    """README's results table: one row per headline record (links relative to `prefix`)."""
    lines = ['| algorithm | task | env steps | return (mean ± std, episodes) | paper | record |',
             '|---|---|---|---|---|---|']
    for r in records:
        if not r.get('headline'):
            continue
        paper = r['paper']['value'] if 'paper' in r else '–'
        lines.append(
            f'| {r["algo"]} | `{r["task"]}` | {r["score"]["env_steps"]:,} | {_score(r["score"])} '
            f'| {paper} | [{r["name"]}]({prefix}{r["name"]}.yaml) |')
    return '\n'.join(lines) + '\n'


def plot(records, path, panel_of=lambda r: r['task']):
    """The records' learning curves, one panel per `panel_of(record)` (the task), with the
    paper's score marked and uniform-random baselines (algo `random`) as levels."""
    from dreamer_tf.reproduce import plots

    panels = {}
    for r in records:
        if r['algo'] != 'random':
            panel = panels.setdefault(panel_of(r), plots.Panel(panel_of(r)))
            panel.series.append(plots.Series(r['name'], [_curve(r)]))
            if 'paper' in r:
                panel.points.append(plots.Points(
                    r['algo'], [r['score']['env_steps']], [r['paper']['value']], [None]))
    for r in records:
        if r['algo'] == 'random':
            for panel in panels.values():
                if r['task'] in panel.title:
                    panel.levels.append((r['name'], r['score']['mean']))
    plots.plot(path, list(panels.values()), legend_below=True)
    return path


def _curve(record):
    if 'curve' in record:
        steps, values = zip(*record['curve']['points'])
        return steps, values
    return [record['score']['env_steps']], [record['score']['mean']]  # no curve kept


def by_task(records):
    """{task: its records}, tasks in sorted order."""
    tasks = {}
    for r in sorted(records, key=lambda r: (r['task'], r['name'])):
        tasks.setdefault(r['task'], []).append(r)
    return tasks


def curve_file(task):
    """The PNG of a task's curves, relative to the results folder."""
    return f'curves/{re.sub(r"[^A-Za-z0-9_.-]+", "_", task)}.png'


def _drawn(records):
    """Whether a task's records make a plot: a learning run with a curve or a paper score."""
    return any(r['algo'] != 'random' and ('curve' in r or 'paper' in r) for r in records)


def _digest(records):
    """What a task's PNG was drawn from, so that a stale PNG is found without drawing."""
    drawn = [[r['name'], r['algo'], r.get('curve'), r['score'], r.get('paper')] for r in records]
    return hashlib.sha256(json.dumps(drawn, sort_keys=True).encode()).hexdigest()[:16]


def markdown(records, speed):
    """results/README.md: every learning record by task, and every speed table."""
    lines = [
        '# Results', '',
        '<!-- generated by `dreamer-tf results --render` from the records in this folder; '
        'edit the records, not this file -->', '',
        'Every measured result of dreamer_tf, one YAML record per run (`<name>.yaml`, '
        'speed tables under `speed/`), with the command, code commit, seed and machine '
        'that produced it. Records marked *transcribed* were read back from earlier '
        'documentation after their run directories were gone: their curves and scores '
        'are the numbers quoted then. Returns are of the policy named (`mode`: the '
        "actor's mode; `sample`: sampled actions; `sample_latent`: sampled posterior, "
        'actor mode; `plan`: the planner).', '', '## Learning', '']
    for task, rows in by_task(records).items():
        lines += [f'### `{task}`', '']
        if _drawn(rows):
            lines += [f'![{task}]({curve_file(task)}) <!-- drawn from data {_digest(rows)} -->',
                      '']
        lines += ['| record | algorithm | seed | env steps | return (mean ± std, episodes) '
                  '| policy | paper | wall | commit | note |',
                  '|---|---|---|---|---|---|---|---|---|---|']
        for r in rows:
            wall = f'{r["wall_minutes"]:g} min' if 'wall_minutes' in r else '–'
            paper = f'{r["paper"]["value"]:g}' if 'paper' in r else '–'
            note = ('*transcribed.* ' if r.get('transcribed') else '') + r.get('note', '')
            lines.append(
                f'| [{r["name"]}]({r["name"]}.yaml) | {r["algo"]} | {r["seed"]} | '
                f'{r["score"]["env_steps"]:,} | {_score(r["score"])} | {r["score"]["policy"]} '
                f'| {paper} | {wall} | `{r["commit"]}` | {_cell(note.strip())} |')
        lines.append('')
    lines += ['## Speed', '']
    for r in speed:
        lines += [f'### {r["title"]}', '', f'`{r["command"]}`  ',
                  f'{r["machine"]}; code `{r["commit"]}`'
                  + ('; *transcribed*' if r.get('transcribed') else '') +
                  f' ([{r["name"]}](speed/{r["name"]}.yaml))', '',
                  '| ' + ' | '.join(map(_cell, r['columns'])) + ' |',
                  '|' + '---|' * len(r['columns'])]
        lines += ['| ' + ' | '.join(_cell(c) for c in row) + ' |' for row in r['rows']]
        lines += [''] + ([_cell(r['note']), ''] if 'note' in r else [])
    return '\n'.join(lines).rstrip() + '\n'


def _cell(value):
    return str(value).replace('|', '\\|').replace('\n', ' ')


def render(folder):
    """Writes `folder`/README.md and one PNG of learning curves per task from the records;
    returns the paths written."""
    folder = Path(folder)
    records, speed = load(folder), load(folder, speed=True)
    written = [folder / 'README.md']
    write_atomic(written[0], markdown(records, speed))
    for task, rows in by_task(records).items():
        if _drawn(rows):
            path = folder / curve_file(task)
            path.parent.mkdir(exist_ok=True)
            written.append(plot(rows, path, lambda r, task=task: f'{r["algo"]}: {task}'))
    return written


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
