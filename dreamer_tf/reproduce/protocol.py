"""How a run's protocol differs from the paper's, computed from its config.yaml.

The paper's protocol is the config composed from the entry's presets (configs.yaml
blocks that carry the papers' hyperparameters with their sources), the settings the
reference file states beyond them (e.g. DreamerV3's train ratio) and the stated
action repeat. Every key where the run's resolved config differs is a deviation,
except the bookkeeping keys below, which the report covers in other ways.
"""

import functools

from ruamel.yaml import YAML

from dreamer_tf.config import DEFAULT_PATH, Config, load_config

# Keys that name, schedule or place a run without changing what it learns.
BOOKKEEPING = {
    'task': 'each row names its task',
    'seed': 'the seeds are listed with the runs',
    'logdir': 'where the run is stored',
    'run.steps': 'the steps reached are reported against the checkpoints',
    'run.eval_every': 'the step of each evaluation used is reported',
    'run.eval_episodes': "compared with the paper's evaluation episodes separately, per evaluation",
    'run.eval_policy': "compared with the paper's evaluation policy separately, per evaluation",
    'run.log_every': 'how often metrics are written',
    'run.save_every_secs': 'how often checkpoints are written',
    'jit': 'XLA compiles the same computation',
    'env.process': 'which process steps the environment',
}
# The DreamerV3 model sizes of configs.yaml, smallest first.
SIZES = ('xs', 's', 'm', 'l', 'xl')


def protocol_overrides(benchmark, algo, task, config_path=None):
    """Dotted settings the reference states for `task` beyond the algorithm's presets,
    its evaluation policy included.

    A stated action repeat also rescales a `train_every` schedule: PlaNet (one
    episode of 1000 env steps per 100 updates) and DreamerV1 (`train_every`
    1000 env steps) count env steps, which the presets state as policy steps at
    their own action repeat.
    """
    entry = benchmark.entry(algo)
    if entry is None:
        return {}
    overrides = dict(entry.protocol.config)
    if entry.protocol.eval_policy:
        overrides['run.eval_policy'] = entry.protocol.eval_policy
    repeat = entry.protocol.action_repeat_for(task)
    if repeat is None:
        return overrides
    preset = load_config(paper_presets(benchmark, algo), overrides, path=config_path)
    overrides['env.action_repeat'] = repeat
    if not preset.run.train_ratio and repeat != preset.env.action_repeat:
        env_steps = preset.run.train_every * preset.env.action_repeat
        overrides['run.train_every'] = max(1, round(env_steps / repeat))
    return overrides


def paper_presets(benchmark, algo):
    entry = benchmark.entry(algo)
    return list(entry.protocol.presets) if entry and entry.protocol.presets else [
        algo, benchmark.suite]


def paper_config(benchmark, algo, task, config_path=None):
    """The flat config of the paper's protocol for `algo` on reference task `task`.

    Raises dreamer_tf.config.ConfigError when a preset block does not exist (yet).
    """
    overrides = protocol_overrides(benchmark, algo, task, config_path)
    overrides['task'] = benchmark.task_name(task)
    return load_config(paper_presets(benchmark, algo), overrides, path=config_path).flat()


def block_keys(names, config_path=None):
    """The dotted keys that the configs.yaml blocks `names` set."""
    blocks = _blocks(config_path)
    keys = set()
    for name in names:
        if blocks.get(name):
            keys.update(Config(blocks[name]).flat())
    return keys


def size_of(flat, config_path=None):
    """The DreamerV3 size block whose every setting `flat` has, or None."""
    blocks = _blocks(config_path)
    for name in SIZES:
        if name in blocks and _matches(flat, Config(blocks[name]).flat()):
            return name
    return None


def differences(ours, paper, config_path=None):
    """How config `ours` differs from `paper` (flat dicts): (deviations, unchecked).

    When both configs are DreamerV3 sizes and the sizes differ, the size's keys
    make one line instead of one line each. Keys only one side has cannot be
    compared (a config.yaml written before the key was added to configs.yaml, or
    after it was removed); they are listed as unchecked.
    """
    lines = []
    skip = set(BOOKKEEPING)
    size_ours, size_paper = size_of(ours, config_path), size_of(paper, config_path)
    if size_ours and size_paper and size_ours != size_paper:
        keys = sorted(block_keys([size_ours, size_paper], config_path))
        changed = [f'{key} {_show(ours.get(key))} vs {_show(paper.get(key))}' for key in keys
                   if ours.get(key) != paper.get(key)]
        lines.append(
            f'model size {size_ours.upper()}, paper {size_paper.upper()} ({"; ".join(changed)})')
        skip.update(keys)
    for key in sorted((set(ours) & set(paper)) - skip):
        if ours[key] != paper[key]:
            lines.append(f'{key}: ours {_show(ours[key])}, paper {_show(paper[key])}')
    unchecked = []
    only_paper = sorted(set(paper) - set(ours) - skip)
    if only_paper:
        unchecked.append("keys of today's configs.yaml missing from the run's config.yaml "
                         f'(added after the run): {", ".join(only_paper)}')
    only_ours = sorted(set(ours) - set(paper) - skip)
    if only_ours:
        unchecked.append("keys of the run's config.yaml no longer in configs.yaml: "
                         f'{", ".join(only_ours)}')
    return lines, unchecked


def _show(value):
    if isinstance(value, tuple):
        return '[' + ', '.join(map(str, value)) + ']'
    return str(value) if not isinstance(value, str) else repr(value)


def _matches(flat, block):
    return all(key in flat and flat[key] == value for key, value in block.items())


@functools.cache  # parsed once per report; the reports are short-lived processes
def _blocks(config_path):
    with open(config_path or DEFAULT_PATH) as file:
        return YAML(typ='safe').load(file)
