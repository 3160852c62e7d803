"""Every preset value taken from the authors equals the published one, or names why not
(dreamer_tf/reference/published/, its README gives the schema)."""

import math
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from dreamer_tf.config import Config, load_config

FOLDER = Path(__file__).resolve().parent.parent / 'dreamer_tf' / 'reference' / 'published'
FILES = sorted(FOLDER.glob('*.yaml'))
ALGOS = ('planet', 'dreamerv1', 'dreamerv2', 'dreamerv3', 'dreamingv1', 'dreamingv2')
ENTRY = {'key', 'value', 'source', 'text'}


def _load(path):
    return YAML(typ='safe').load(path.read_text())


def _get(config, key):
    for part in key.split('.'):
        config = config[part]
    return config


def _same(ours, published):
    if isinstance(published, bool) or isinstance(ours, bool):
        return ours is published
    if isinstance(published, (int, float)) and isinstance(ours, (int, float)):
        return math.isclose(ours, published, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(published, list):
        return tuple(published) == tuple(ours)
    return ours == published


def test_every_algorithm_has_a_table():
    assert sorted(path.stem for path in FILES) == sorted(ALGOS)


@pytest.mark.parametrize('path', FILES, ids=[path.stem for path in FILES])
def test_presets_equal_the_published_values_or_name_their_deviation(path):
    table = _load(path)
    assert table['algo'] == path.stem
    sources = table['sources']
    problems = []
    for preset in table['presets']:
        config = load_config(preset['configs'])
        assert config.algo == table['algo'], preset['configs']
        keys = [entry['key'] for entry in preset['values']]
        assert len(keys) == len(set(keys)), f'{preset["configs"]}: a key listed twice'
        for entry in preset['values']:
            where = f'{"+".join(preset["configs"])} {entry["key"]}'
            assert ENTRY <= set(entry) <= ENTRY | {'deviation', 'ours'}, where
            name = entry['source'].split()[0]
            assert name in sources, f'{where}: unknown source {name!r}'
            if 'commit' in sources[name]:
                assert re.fullmatch(r'\S+ \S+:\d+(-\d+)?', entry['source']), where
            ours = _get(config, entry['key'])
            ours = ours.to_dict() if isinstance(ours, Config) else ours
            if 'deviation' in entry:
                assert entry['deviation'].strip(), f'{where}: empty deviation'
                if not _same(ours, entry['ours']):
                    problems.append(f'{where}: ours is {ours!r}, the table says {entry["ours"]!r}')
            elif not _same(ours, entry['value']):
                problems.append(f'{where}: ours is {ours!r}, published {entry["value"]!r} '
                                f'({entry["source"]}); match it or name the deviation')
    assert not problems, '\n'.join(problems)


def test_every_suite_block_of_an_algorithm_is_in_its_table():
    blocks = _load(FOLDER.parent.parent / 'configs.yaml')
    listed = {(preset['configs'][0], suite) for path in FILES
              for preset in _load(path)['presets'] for suite in preset['configs'][1:]}
    pairs = {tuple(name.split('+')) for name in blocks if '+' in name}
    missing = sorted(f'{algo}+{suite}' for algo, suite in pairs
                     if algo in ALGOS and suite not in ('debug', 'quick', 'cpu', 'cpu_vision')
                     and (algo, suite) not in listed)
    assert not missing, f'blocks with no published-values entry: {missing}'
