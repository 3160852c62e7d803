"""Published results as data: the papers' tables and the authors' score files, one YAML
file per setting.

Each file holds a suite (the configs.yaml block of its observation setting), the
benchmarks defined on it (budget in env steps and the checkpoints the papers report
at), and one entry per algorithm with its source, protocol and scores. An entry's
`source` names the primary source of its numbers (a paper's table with its arXiv id,
or the authors' score file as github.com/owner/repo@commit and path) and `verified`
says whether every number was checked against that source (false: copied without
such a check, which the entry's note says). A protocol detail the source does not
state is null, so that the report can say "not stated" instead of guessing. This
module only reads files: it imports neither TensorFlow nor the environments.
"""

import difflib
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from dreamer_tf.config import EVAL_POLICIES

__all__ = [
    'FINAL',
    'Aggregate',
    'Benchmark',
    'Entry',
    'Protocol',
    'ReferenceDataError',
    'Score',
    'load',
    'names',
    'unknown_name',
]

DIRECTORY = Path(__file__).resolve().parent
# Checkpoint of a source that does not state its training budget: the end of training.
FINAL = 'final'
METRICS = ('return', 'crafter_score')
NORMALIZATIONS = (None, 'human')


class ReferenceDataError(ValueError):
    """A reference file is malformed, or a benchmark, algorithm or task name is unknown."""


def unknown_name(kind, name, valid, context=''):
    """The error for an unknown `kind` name: suggests the closest and lists the valid ones."""
    valid = sorted(valid)
    close = difflib.get_close_matches(str(name), valid, n=3, cutoff=0.5)
    hint = f' Did you mean {", ".join(close)}?' if close else ''
    listed = ', '.join(valid) if valid else '(none)'
    return ReferenceDataError(
        f'unknown {kind} {name!r}{context}.{hint} Valid {kind}s{context}: {listed}.')


@dataclass(frozen=True)
class Score:
    mean: float
    std: float | None = None  # None: the source reports no spread


@dataclass(frozen=True)
class Protocol:
    step_unit: str
    action_repeat: int | Mapping | None  # one value, per-task values, or not stated
    eval_episodes: int | None
    seeds: int | None
    presets: tuple  # configs.yaml blocks that hold the paper's hyperparameters
    config: Mapping = field(default_factory=dict)  # dotted keys the source states beyond them
    eval_policy: str | None = None  # run.eval_policy of the authors' evaluation; None: not stated

    def action_repeat_for(self, task):
        if isinstance(self.action_repeat, Mapping):
            return self.action_repeat.get(task)
        return self.action_repeat


@dataclass(frozen=True)
class Aggregate:
    name: str
    label: str
    tasks: object  # 'all' (every task of the file's baselines), None (not stated) or a tuple
    scores: Mapping  # checkpoint -> Score


@dataclass(frozen=True)
class Entry:
    algo: str
    label: str
    source: str
    statistic: str
    note: str | None
    protocol: Protocol
    scores: Mapping  # task -> checkpoint -> Score
    aggregates: Mapping  # name -> Aggregate
    verified: bool = False  # every number checked against `source`


@dataclass(frozen=True)
class Benchmark:
    name: str
    description: str
    steps: int | None  # training budget in env steps; None where the source does not state it
    checkpoints: tuple  # env steps (ints) or FINAL
    suite: str
    task_prefix: str
    metric: str
    units: str
    normalization: str | None
    entries: Mapping  # algo -> Entry
    baselines: Mapping  # task -> {'random': float, 'human': float}
    baselines_source: str | None
    achievements: tuple
    file: Path

    @property
    def tasks(self):
        """Every task with a published score, and every task with baselines."""
        tasks = set(self.baselines)
        for entry in self.entries.values():
            tasks.update(entry.scores)
        return tuple(sorted(tasks))

    def entry(self, algo):
        return self.entries.get(algo)

    def task_name(self, task):
        """Our environment name of a reference task, e.g. 'dmc_' + 'walker_walk'."""
        return self.task_prefix + task

    def task_key(self, task_name):
        """The reference task of one of our environment names, or None if another suite."""
        if task_name.startswith(self.task_prefix):
            return task_name[len(self.task_prefix) :]
        return None

    def check_algo(self, algo):
        if algo not in self.entries:
            raise unknown_name('algorithm', algo, self.entries, f' in benchmark {self.name}')


def names():
    """All benchmark names."""
    return tuple(sorted(_benchmarks()))


def load(name):
    """The benchmark `name`; an unknown name raises ReferenceDataError listing the valid ones."""
    benchmarks = _benchmarks()
    if name not in benchmarks:
        raise unknown_name('benchmark', name, benchmarks)
    return benchmarks[name]


@functools.cache  # the files ship with the package and do not change while it runs
def _benchmarks():
    found = {}
    for path in sorted(DIRECTORY.glob('*.yaml')):
        for benchmark in _read_file(path):
            if benchmark.name in found:
                raise ReferenceDataError(
                    f'benchmark {benchmark.name!r} defined in both {found[benchmark.name].file} '
                    f'and {path}'
                )
            found[benchmark.name] = benchmark
    return found


def _read_file(path):
    try:
        data = YAML(typ='safe').load(path.read_text())
    except YAMLError as error:
        raise ReferenceDataError(f'cannot parse {path}: {error}') from None
    where = path.name
    data = _mapping(data, where)
    checkpoints = set()
    benchmarks = _mapping(_get(data, 'benchmarks', where), f'{where}: benchmarks')
    for name, spec in benchmarks.items():
        spec = _mapping(spec, f'{where}: {name}')
        for checkpoint in _get(spec, 'checkpoints', name):
            checkpoints.add(_checkpoint(checkpoint, f'{where}: {name}'))
    metric = _get(data, 'metric', where)
    if metric not in METRICS:
        raise ReferenceDataError(f'{where}: metric must be one of {METRICS}, got {metric!r}')
    normalization = data.get('normalization')
    if normalization not in NORMALIZATIONS:
        raise ReferenceDataError(f'{where}: normalization must be one of {NORMALIZATIONS}')
    baselines = _mapping(data.get('baselines', {}), f'{where}: baselines')
    scores = {
        task: {'random': float(s['random']), 'human': float(s['human'])}
        for task, s in _mapping(baselines.get('scores', {}), f'{where}: baselines').items()
    }
    if normalization == 'human' and not scores:
        raise ReferenceDataError(f'{where}: human normalisation needs random and human baselines')
    entries = {}
    for item in _get(data, 'entries', where):
        entry = _entry(_mapping(item, f'{where}: entry'), checkpoints, where)
        if entry.algo in entries:
            raise ReferenceDataError(f'{where}: two entries for algorithm {entry.algo!r}')
        entries[entry.algo] = entry
    common = {
        'suite': _get(data, 'suite', where),
        'task_prefix': _get(data, 'task_prefix', where),
        'metric': metric,
        'units': _get(data, 'units', where),
        'normalization': normalization,
        'entries': entries,
        'baselines': scores,
        'baselines_source': baselines.get('source'),
        'achievements': tuple(data.get('achievements', ())),
        'file': path,
    }
    if metric == 'crafter_score' and not common['achievements']:
        raise ReferenceDataError(f'{where}: the Crafter score needs the list of achievements')
    out = []
    for name, spec in benchmarks.items():
        steps = spec.get('steps')
        out.append(
            Benchmark(
                name=name,
                description=_get(spec, 'description', name),
                steps=None if steps is None else int(steps),
                checkpoints=tuple(_checkpoint(c, name) for c in spec['checkpoints']),
                **common,
            )
        )
    return out


def _entry(item, checkpoints, where):
    algo = _get(item, 'algo', where)
    where = f'{where}: {algo}'
    proto = _mapping(_get(item, 'protocol', where), f'{where}: protocol')
    protocol = Protocol(
        step_unit=_get(proto, 'step_unit', where),
        action_repeat=_get(proto, 'action_repeat', where),
        eval_episodes=_get(proto, 'eval_episodes', where),
        seeds=_get(proto, 'seeds', where),
        presets=tuple(_get(proto, 'presets', where)),
        config=dict(proto.get('config') or {}),
        eval_policy=proto.get('eval_policy'),
    )
    if protocol.eval_policy not in EVAL_POLICIES + (None,):
        raise ReferenceDataError(f'{where}: protocol: eval_policy must be one of '
                                 f'{EVAL_POLICIES} or null, got {protocol.eval_policy!r}')
    aggregates = {}
    for name, spec in _mapping(item.get('aggregates', {}), f'{where}: aggregates').items():
        tasks = spec.get('tasks')
        aggregates[name] = Aggregate(
            name=name,
            label=_get(spec, 'label', f'{where}: {name}'),
            tasks=tuple(tasks) if isinstance(tasks, list) else tasks,
            scores=_scores(_get(spec, 'scores', name), checkpoints, f'{where}: {name}'),
        )
    verified = _get(item, 'verified', where)
    if not isinstance(verified, bool):
        raise ReferenceDataError(f'{where}: verified must be true or false, got {verified!r}')
    return Entry(
        algo=algo,
        label=_get(item, 'label', where),
        source=_get(item, 'source', where),
        statistic=_get(item, 'statistic', where),
        note=item.get('note'),
        protocol=protocol,
        scores={
            task: _scores(values, checkpoints, f'{where}: {task}')
            for task, values in _mapping(_get(item, 'scores', where), where).items()
        },
        aggregates=aggregates,
        verified=verified,
    )


def _scores(values, checkpoints, where):
    out = {}
    for step, value in _mapping(values, where).items():
        step = _checkpoint(step, where)
        if step not in checkpoints:
            raise ReferenceDataError(f'{where}: score at {step} is no checkpoint of any benchmark')
        value = _mapping(value, f'{where}: {step}')
        std = value.get('std')
        out[step] = Score(float(_get(value, 'mean', where)), None if std is None else float(std))
    return out


def _checkpoint(value, where):
    if value == FINAL:
        return FINAL
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return int(value)
    raise ReferenceDataError(f'{where}: checkpoint must be a positive step count or {FINAL!r}')


def _mapping(value, where):
    if not isinstance(value, Mapping):
        raise ReferenceDataError(f'{where}: expected a mapping, got {type(value).__name__}')
    return value


def _get(mapping, key, where):
    if key not in mapping:
        raise ReferenceDataError(f'{where}: missing {key!r}')
    return mapping[key]
