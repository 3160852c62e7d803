"""The reproduction report: our runs next to the published numbers (markdown + PNG).

`build` groups runs by algorithm and task, scores each run at the benchmark's
checkpoints, compares the mean over seeds with the paper's number, computes every
protocol deviation from the runs' config.yaml, and writes report.md and curves.png.
It works on partial runs: a checkpoint a run has not reached is reported with the
latest evaluation and marked as such. Definitions: docs/reproduce.md.
"""

import datetime
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dreamer_tf.config import ConfigError
from dreamer_tf.fileio import write_atomic
from dreamer_tf.reference import FINAL
from dreamer_tf.reproduce import plots, protocol, scores

POLICY_WORDS = {
    'mode': 'posterior and actor modes',
    'sample': 'latent and action sampled',
    'sample_latent': "latent sampled, actor's mode",
}


@dataclass
class Value:
    """One run's score standing for one checkpoint."""

    run: object
    value: float | None
    step: int | None  # the env step the value was measured at
    status: str  # exact | earlier | not reached | missing
    note: str = ''


@dataclass
class Row:
    algo: str
    task: str  # reference task key, or our task name when it is outside the suite
    checkpoint: object
    values: list
    paper: object = None  # reference Score
    ours: float | None = None
    ours_std: float | None = None
    sigma: float | None = None
    sigma_note: str = ''
    ours_normalized: float | None = None
    paper_normalized: float | None = None
    notes: list = field(default_factory=list)


def value_at(benchmark, run, checkpoint):
    """The score of `run` that stands for `checkpoint`, with how it was measured."""
    if benchmark.metric == 'crafter_score':
        return _crafter_value(benchmark, run, checkpoint)
    if not run.evals:
        return Value(run, None, None, 'missing', 'no evaluation in metrics.jsonl')
    if checkpoint == FINAL:
        last = run.eval_at(FINAL)
        return Value(run, last.mean, last.step, 'exact',
                     f'last evaluation, at {last.step:,} steps (paper budget not stated)')
    found = run.eval_at(checkpoint)
    if found is None:
        return Value(run, None, None, 'missing', f'no evaluation at or before {checkpoint:,}')
    if found.checkpoint == checkpoint:
        note = ''
        if found.step != checkpoint:
            note = (f'evaluated at {found.step:,}, the end of the loop iteration that reached '
                    f'{checkpoint:,}')
        return Value(run, found.mean, found.step, 'exact', note)
    if found.step == checkpoint:
        return Value(run, found.mean, found.step, 'exact')
    if run.last_step >= checkpoint:
        return Value(run, found.mean, found.step, 'earlier',
                     f'evaluated at {found.step:,}, not at {checkpoint:,}')
    return Value(run, found.mean, found.step, 'not reached',
                 f'run at {run.last_step:,} of {checkpoint:,} steps; '
                 f'latest evaluation at {found.step:,}')


def _crafter_value(benchmark, run, checkpoint):
    if not run.crafter_episodes:
        return Value(run, None, None, 'missing',
                     'no stats.jsonl: the Crafter score needs the per-episode achievement records')
    budget = None if checkpoint == FINAL else checkpoint
    try:
        rates, episodes, steps = scores.crafter_success_rates(
            run.crafter_episodes, benchmark.achievements, budget)
    except ValueError as error:
        return Value(run, None, None, 'missing', f'stats.jsonl: {error}')
    total = sum(episode['length'] for episode in run.crafter_episodes)
    value = scores.crafter_score(rates)
    if budget is not None and total < budget:
        return Value(run, value, steps, 'not reached',
                     f'{episodes} episodes, {steps:,} of {budget:,} steps')
    return Value(run, value, steps, 'exact', f'{episodes} episodes')


def rows_for(benchmark, runs):
    """Comparison rows, one per (algorithm, task, checkpoint), sorted."""
    groups = defaultdict(list)
    for run in runs:
        groups[run.algo, benchmark.task_key(run.task) or run.task].append(run)
    rows = []
    for (algo, task), group in sorted(groups.items()):
        entry = benchmark.entry(algo)
        published = entry.scores.get(task, {}) if entry else {}
        for checkpoint in benchmark.checkpoints:
            row = Row(algo, task, checkpoint, [value_at(benchmark, r, checkpoint) for r in group])
            row.paper = published.get(checkpoint)
            _compare(benchmark, row)
            rows.append(row)
    return rows


def _compare(benchmark, row):
    measured = [v.value for v in row.values if v.value is not None]
    if measured:
        row.ours, row.ours_std = scores.mean_std(measured)
    if row.task not in benchmark.tasks:
        row.notes.append('no published score for this task in the reference data')
    elif row.paper is None:
        row.notes.append(f'the reference has no {row.algo} score for this task and checkpoint')
    if row.ours is not None and row.paper is not None:
        row.sigma, basis = scores.sigma_difference(
            row.ours, row.paper.mean, row.paper.std, row.ours_std)
        row.sigma_note = {'paper': '', 'ours': 'in our std over seeds'}.get(basis, basis)
    baseline = benchmark.baselines.get(row.task)
    if benchmark.normalization == 'human' and baseline:
        random, human = baseline['random'], baseline['human']
        if measured:
            row.ours_normalized = float(
                np.mean([scores.human_normalized(x, random, human) for x in measured]))
        if row.paper is not None:
            row.paper_normalized = scores.human_normalized(row.paper.mean, random, human)
    row.notes += [v.note for v in row.values if v.note]


def aggregates_for(benchmark, rows):
    """Aggregate rows: (algo, Aggregate, checkpoint, ours, tasks used, paper Score, comparable)."""
    out = []
    algos = sorted({row.algo for row in rows})
    for algo in algos:
        entry = benchmark.entry(algo)
        if entry is None:
            continue
        for aggregate in entry.aggregates.values():
            for checkpoint in benchmark.checkpoints:
                if checkpoint not in aggregate.scores:
                    continue
                out.append(_aggregate(benchmark, rows, algo, aggregate, checkpoint))
    return out


def _aggregate(benchmark, rows, algo, aggregate, checkpoint):
    normalized = aggregate.name.startswith('human_normalized')
    mine = {
        row.task: row.ours_normalized if normalized else row.ours
        for row in rows
        if row.algo == algo and row.checkpoint == checkpoint and row.task in benchmark.tasks
    }
    mine = {task: value for task, value in mine.items() if value is not None}
    wanted = tuple(sorted(benchmark.baselines)) if aggregate.tasks == 'all' else aggregate.tasks
    reduce = np.median if aggregate.name.endswith('median') else np.mean
    ours = float(reduce(list(mine.values()))) if mine else None
    if wanted is None:
        comparable = "no: the paper's task set is not stated in the reference data"
    elif set(wanted) <= set(mine):
        comparable = 'yes'
    else:
        comparable = f'no: {len(set(wanted) - set(mine))} of the {len(wanted)} tasks missing'
    return algo, aggregate, checkpoint, ours, sorted(mine), aggregate.scores[checkpoint], comparable


def deviations(benchmark, algo, task, group, config_path=None):
    """(deviations, unverified) sentences for runs of one algorithm on one task."""
    entry = benchmark.entry(algo)
    found, unverified = [], []
    try:
        paper = protocol.paper_config(benchmark, algo, task, config_path)
    except ConfigError as error:
        paper = None
        unverified.append(f'config: cannot compose the paper preset '
                          f'{" ".join(protocol.paper_presets(benchmark, algo))} ({error})')
    if paper is not None:
        lines, unchecked = defaultdict(list), defaultdict(list)
        for run in group:
            differ, missing = protocol.differences(run.config, paper, config_path)
            for line in differ:
                lines[line].append(run.name)
            for line in missing:
                unchecked[line].append(run.name)
        found += _scoped(lines, len(group))
        unverified += _scoped(unchecked, len(group))
    if benchmark.task_key(group[0].task) is None:
        found.append(f'task {group[0].task} is not a {benchmark.suite} task of this benchmark')
    stated = entry.protocol if entry else None
    seeds = sorted({run.seed for run in group}, key=str)
    text = f'seeds: ours {len(seeds)} ({", ".join(map(str, seeds))})'
    if stated is None or stated.seeds is None:
        note = ('; with one seed there is no spread over seeds' if len(seeds) == 1 else '')
        unverified.append(f"{text}, paper's seed count not stated in the reference data{note}")
    elif stated.seeds != len(seeds):
        found.append(f'{text}, paper {stated.seeds}')
    if benchmark.metric == 'return':
        for name, paper, words in (
                ('episodes', stated and stated.eval_episodes, {}),
                ('policy', stated and stated.eval_policy, POLICY_WORDS)):
            lines, unchecked = defaultdict(list), defaultdict(list)
            for run in group:
                used = sorted({getattr(item, name) for item in _scored_evals(benchmark, run)}
                              - {None}, key=str)
                if not used:
                    continue
                text = f'evaluation {name}: ours {", ".join(map(str, used))}'
                if paper is None:
                    unchecked[f"{text}, paper's not stated in the reference data"].append(run.name)
                elif used != [paper]:
                    described = f' ({words[paper]})' if paper in words else ''
                    lines[f'{text}, paper {paper}{described}'].append(run.name)
            found += _scoped(lines, len(group))
            unverified += _scoped(unchecked, len(group))
    if stated is not None and stated.action_repeat_for(task) is None:
        repeats = sorted({run.config.get('env.action_repeat') for run in group}, key=str)
        unverified.append(f'action repeat: ours {", ".join(map(str, repeats))}, the reference '
                          'data does not state the paper\'s (compared with the preset above)')
    return found, unverified


def _scored_evals(benchmark, run):
    """The evaluations of `run` that stand for the benchmark's checkpoints."""
    found = (run.eval_at(checkpoint) for checkpoint in benchmark.checkpoints)
    return [item for item in found if item is not None]


def _scoped(lines, runs):
    """Each line once, naming its runs where not all `runs` runs share it."""
    return [line + ('' if len(names) == runs else f' [{", ".join(names)}]')
            for line, names in lines.items()]


def progress(benchmark, rows):
    """Sentences about checkpoints measured other than exactly (partial runs)."""
    lines = []
    for row in rows:
        for value in row.values:
            if value.status in ('earlier', 'not reached', 'missing'):
                checkpoint = _checkpoint(row.checkpoint)
                lines.append(f'{value.run.name} at {checkpoint}: {value.status}'
                             + (f' ({value.note})' if value.note else ''))
    return lines


def distinct_seeds(runs):
    """One run per (algorithm, task, seed), the one that got furthest: two runs of one
    seed are not two samples. Returns (runs kept, sentences on those left out)."""
    kept = {}
    for run in runs:
        key = run.algo, run.task, str(run.seed)
        if key not in kept or run.last_step > kept[key].last_step:
            kept[key] = run
    left_out = [f'{run.path}: same algorithm, task and seed as {kept[key].path}, which got '
                'further' for run in runs
                if kept[key := (run.algo, run.task, str(run.seed))] is not run]
    return [run for run in runs if run in kept.values()], left_out


def build(benchmark, runs, outdir, config_path=None, command=None):
    """Write report.md and curves.png into `outdir`; returns the report's path."""
    outdir = Path(outdir)
    if not runs:
        raise ValueError('no runs to report')
    runs, left_out = distinct_seeds(runs)
    rows = rows_for(benchmark, runs)
    aggregates = aggregates_for(benchmark, rows)
    groups = defaultdict(list)
    for run in runs:
        groups[run.algo, benchmark.task_key(run.task) or run.task].append(run)
    checks = {key: deviations(benchmark, *key, group, config_path) for key, group in groups.items()}
    partial = progress(benchmark, rows)
    plot_path = outdir / 'curves.png'
    plots.plot(plot_path, _panels(benchmark, groups), ylabel=_ylabel(benchmark),
               title=f'{benchmark.name}: {benchmark.description}')
    text = _markdown(benchmark, runs, rows, aggregates, checks, partial, left_out, plot_path.name,
                     command)
    path = outdir / 'report.md'
    write_atomic(path, text)
    return path


def _panels(benchmark, groups):
    by_task = defaultdict(list)
    for (algo, task), group in sorted(groups.items()):
        by_task[task].append((algo, group))
    panels = []
    for task, algos in by_task.items():
        panel = plots.Panel(task)
        for algo, group in algos:
            entry = benchmark.entry(algo)
            label = entry.label if entry else algo
            panel.series.append(plots.Series(label, [_curve(benchmark, run) for run in group]))
            published = entry.scores.get(task, {}) if entry else {}
            steps = [c for c in benchmark.checkpoints if c != FINAL and c in published]
            if steps:
                panel.points.append(plots.Points(
                    label, steps, [published[c].mean for c in steps],
                    [published[c].std for c in steps]))
            if FINAL in benchmark.checkpoints and FINAL in published:
                panel.levels.append((f'paper: {label} (budget not stated)',
                                     published[FINAL].mean))
        panels.append(panel)
    return panels


def _curve(benchmark, run):
    if benchmark.metric == 'crafter_score':
        # The score over the episodes up to each step: at the budget it is the paper's score.
        total = sum(episode['length'] for episode in run.crafter_episodes)
        steps, values = [], []
        for step in np.linspace(0, total, 21)[1:]:
            try:
                rates, _, used = scores.crafter_success_rates(
                    run.crafter_episodes, benchmark.achievements, step)
            except ValueError:
                continue
            steps.append(used)
            values.append(scores.crafter_score(rates))
        return steps, values
    latest = {}
    for item in run.evals:
        latest[item.step] = item.mean  # at equal steps the checkpoint evaluation comes last
    steps = sorted(latest)
    return steps, [latest[s] for s in steps]


def _ylabel(benchmark):
    return 'Crafter score (%)' if benchmark.metric == 'crafter_score' else 'eval return'


def _checkpoint(checkpoint):
    return 'final' if checkpoint == FINAL else f'{checkpoint:,}'


def _number(value, digits=1):
    return '—' if value is None else f'{value:,.{digits}f}'


def _ours(row, digits):
    if row.ours is None:
        return '—'
    n = sum(v.value is not None for v in row.values)
    spread = f' ± {row.ours_std:,.{digits}f}' if row.ours_std is not None else ''
    return f'{row.ours:,.{digits}f}{spread} (n={n})'


def _paper(score, digits):
    if score is None:
        return '—'
    spread = f' ± {score.std:,.{digits}f}' if score.std is not None else ''
    return f'{score.mean:,.{digits}f}{spread}'


def _markdown(benchmark, runs, rows, aggregates, checks, partial, left_out, plot_name, command):
    digits = 1
    deviating = any(found for found, _ in checks.values()) or partial
    out = [
        f'# Reproduction report: {benchmark.name}',
        '',
        (f'{benchmark.description}. Units: {benchmark.units}. '
        f'Written {datetime.datetime.now().strftime("%Y-%m-%d %H:%M")} from {len(runs)} run '
        f'director{"y" if len(runs) == 1 else "ies"}.'),
        '',
    ]
    if command:
        out += ['Command:', '', '```', command, '```', '']
    if deviating:
        out += [
            ("> **Not the paper's protocol.** These runs differ from the published setting in the "
            'ways listed under "Protocol deviations" (computed from each run\'s config.yaml and '
            'metrics). Read the numbers as a reduced run, not as a reproduction.'),
            '',
        ]
    else:
        out += [
            ('> No deviation from the protocol was found in what the reference data states; '
            'items it does not state are listed under "Not checked".'),
            '',
        ]
    out += _table(benchmark, rows, digits)
    if aggregates:
        out += ['', '## Aggregates', '',
                '| algorithm | aggregate | checkpoint | ours | tasks used | paper | comparable |',
                '|---|---|---|---|---|---|---|']
        for algo, aggregate, checkpoint, ours, tasks, paper, comparable in aggregates:
            d = 2 if aggregate.name.startswith('human_normalized') else digits
            out.append(
                f'| {algo} | {aggregate.label} | {_checkpoint(checkpoint)} | {_number(ours, d)} '
                f'| {len(tasks)} | {_paper(paper, d)} | {comparable} |')
    if benchmark.metric == 'crafter_score':
        out += _achievement_table(benchmark, runs)
    out += ['', '## Learning curves', '',
            f'![learning curves]({plot_name})', '',
            ('Thin lines: single seeds; thick: the mean over seeds (shaded: ± std); stars: the '
            "paper's scores at its checkpoints (bars: the paper's std where it reports one)."), '',
            '## Protocol deviations', '']
    for (algo, task), (found, unverified) in sorted(checks.items()):
        presets = ' '.join(protocol.paper_presets(benchmark, algo))
        out.append(f'### {algo} on {task}')
        out.append('')
        out.append(f'Compared with the paper preset `--configs {presets}` plus the settings the '
                   'reference data states.')
        out.append('')
        out += [f'- {line}' for line in found] or ['- none found in the config']
        if unverified:
            out += ['', 'Not checked (the reference data does not state the paper\'s value):', '']
            out += [f'- {line}' for line in unverified]
        out.append('')
    if partial:
        out += ['### Checkpoints not measured exactly', '']
        out += [f'- {line}' for line in partial]
        out.append('')
    out += ['## Runs', '', '| run | algorithm | task | seed | steps reached | evaluations |',
            '|---|---|---|---|---|---|']
    for run in sorted(runs, key=lambda r: (r.algo, r.task, str(r.seed))):
        out.append(f'| {run.path} | {run.algo} | {run.task} | {run.seed} | {run.last_step:,} '
                   f'| {len(run.evals)} |')
    if left_out:
        out += ['', 'Left out:', ''] + [f'- {line}' for line in left_out]
    out += ['', '## Sources', '']
    for algo in sorted({row.algo for row in rows}):
        entry = benchmark.entry(algo)
        if entry is None:
            out.append(f'- {algo}: no published scores in {benchmark.file.name}')
            continue
        note = f' {entry.note}' if entry.note else ''
        out.append(f'- {entry.label} ({algo}): {entry.source}; {entry.statistic}; steps counted '
                   f'as {entry.protocol.step_unit}.{note}')
    if benchmark.baselines_source:
        out.append(f'- Random and human scores: {benchmark.baselines_source}.')
    out += ['', 'Definitions (Δσ, human-normalised score, Crafter score): docs/reproduce.md.', '']
    return '\n'.join(out)


def _table(benchmark, rows, digits):
    human = benchmark.normalization == 'human'
    head = ('| algorithm | task | checkpoint | ours (mean ± std, n seeds) | paper | ours − paper '
            '| Δσ |')
    rule = '|---|---|---|---|---|---|---|'
    if human:
        head += ' ours HNS | paper HNS |'
        rule += '---|---|'
    lines = [head + ' notes |', rule + '---|']
    for row in rows:
        delta = None if row.ours is None or row.paper is None else row.ours - row.paper.mean
        sigma = '—' if row.sigma is None else f'{row.sigma:+.2f}'
        if row.sigma_note and row.sigma is not None:
            sigma += f' ({row.sigma_note})'
        line = (f'| {row.algo} | {row.task} | {_checkpoint(row.checkpoint)} | '
                f'{_ours(row, digits)} | {_paper(row.paper, digits)} | '
                f'{"—" if delta is None else f"{delta:+,.{digits}f}"} | {sigma} |')
        if human:
            line += f' {_number(row.ours_normalized, 2)} | {_number(row.paper_normalized, 2)} |'
        notes = list(dict.fromkeys(row.notes))
        if row.sigma is None and row.sigma_note and row.paper is not None and row.ours is not None:
            notes.append(f'Δσ: {row.sigma_note}')
        lines.append(line + f' {"; ".join(notes)} |')
    return lines


def _achievement_table(benchmark, runs):
    out = ['', '## Crafter success rates (% of episodes, mean over seeds)', '']
    checkpoint = benchmark.checkpoints[-1]
    budget = None if checkpoint == FINAL else checkpoint
    by_algo = defaultdict(list)
    for run in runs:
        if run.crafter_episodes:
            try:
                rates, _, _ = scores.crafter_success_rates(
                    run.crafter_episodes, benchmark.achievements, budget)
            except ValueError:
                continue
            by_algo[run.algo].append(rates)
    if not by_algo:
        return out + ['No run has Crafter episode records (stats.jsonl).']
    algos = sorted(by_algo)
    out += ['| achievement | ' + ' | '.join(algos) + ' |', '|---|' + '---|' * len(algos)]
    for name in benchmark.achievements:
        cells = [f'{np.mean([rates[name] for rates in by_algo[a]]):.1f}' for a in algos]
        out.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return out
