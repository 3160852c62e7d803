"""The docs that are data: the configuration reference, the results table, the rule
that no doc points outside the repository, and links that lead somewhere."""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from ruamel.yaml import YAML

from dreamer_tf import config_reference, results
from dreamer_tf.config import default_items
from dreamer_tf.run.loop import Counters

ROOT = Path(__file__).resolve().parent.parent


def _section(path, start):
    text = path.read_text()
    begin = text.index(start)
    return text[text.index('\n', begin) + 1:text.index('<!-- end', begin)]


def test_every_config_key_has_one_meaning_in_the_order_of_defaults():
    keys = [key for key, _ in default_items()]
    meanings = config_reference.meanings()
    assert list(meanings) == keys
    assert all(0 < len(text) <= 150 for text in meanings.values())


def test_the_configuration_guide_holds_the_generated_key_tables():
    guide = ROOT / 'docs' / 'config.md'
    assert _section(guide, '<!-- keys:') == config_reference.markdown()
    blocks = YAML(typ='safe').load((ROOT / 'dreamer_tf' / 'configs.yaml').read_text())
    text = guide.read_text()
    missing = [name for name in blocks if '+' not in name and name != 'defaults'
               and f'`{name}`' not in text]
    assert not missing, f'docs/config.md names no block {missing}'


def test_help_config_prints_a_group_and_names_an_unknown_one(capsys):
    from dreamer_tf.cli import train

    train.main(['--help-config', 'kl'])
    printed = capsys.readouterr().out
    assert printed.startswith('--kl.dyn 0.5\n') and 'Free nats' in printed
    with pytest.raises(SystemExit, match="no config key 'kll'; groups: actor"):
        train.main(['--help-config', 'kll'])


def test_readme_results_table_is_rendered_from_the_records():
    records = results.load(ROOT / 'results')
    assert sum(bool(r.get('headline')) for r in records) >= 5
    assert _section(ROOT / 'README.md', '<!-- results:') == results.table(records)


def test_results_readme_and_curves_are_rendered_from_the_records():
    folder = ROOT / 'results'
    records, speed = results.load(folder), results.load(folder, speed=True)
    assert speed, 'no speed records under results/speed/'
    fresh = results.markdown(records, speed)
    assert (folder / 'README.md').read_text() == fresh, (
        'results/README.md is stale: run `dreamer-tf results --render`')
    drawn = re.findall(r'\]\((curves/[^)]+\.png)\)', fresh)
    assert drawn and all((folder / path).stat().st_size > 1000 for path in drawn)
    assert sorted(p.relative_to(folder).as_posix() for p in (folder / 'curves').glob('*')) == (
        sorted(drawn)), 'results/curves/ holds a PNG that no record draws'


def test_a_speed_record_must_hold_a_full_table(tmp_path):
    record = {'name': 'x', 'command': 'c', 'commit': 'abc', 'machine': 'm', 'title': 't',
              'columns': ['a', 'b'], 'rows': [[1, 2], [3]]}
    with pytest.raises(results.RecordError, match='rows must be lists of 2 cells'):
        results.check_speed(record, 'x.yaml')
    with pytest.raises(results.RecordError, match=r"missing fields \['title'\]"):
        results.check_speed({k: v for k, v in record.items() if k != 'title'}, 'x.yaml')


def test_a_bad_record_is_named_with_its_field(tmp_path):
    record = results.load(ROOT / 'results')[0]
    bad = {k: v for k, v in record.items() if k != 'seed'}
    with pytest.raises(results.RecordError, match=r"x.yaml: missing fields \['seed'\]"):
        results.check(bad, tmp_path / 'x.yaml')
    with pytest.raises(results.RecordError, match='score needs exactly'):
        results.check({**record, 'score': {'mean': 1.0}}, 'x.yaml')
    unknown = {**record['score'], 'std': None}
    with pytest.raises(results.RecordError, match='null only in a transcribed record'):
        results.check({**record, 'score': unknown, 'transcribed': False}, 'x.yaml')
    results.check({**record, 'score': unknown, 'transcribed': True}, 'x.yaml')
    (tmp_path / 'other.yaml').write_text(json.dumps(record))
    with pytest.raises(results.RecordError, match='must equal the file name'):
        results.load(tmp_path)


def test_results_add_records_a_run_and_its_evaluation(tmp_path, capsys):
    from dreamer_tf.cli import results as results_cli

    run = tmp_path / 'run'
    (run / 'checkpoints').mkdir(parents=True)
    (run / 'config.yaml').write_text('task: gym_CartPole-v1\nalgo: dreamerv3\nseed: 3\n')
    rows = [{'step': 1000, 'eval_return': 10.0, 'eval_episodes': 5.0},
            {'step': 1000, 'episode_return': 9.0},
            {'step': 2000, 'eval_return': 30.0, 'eval_episodes': 5.0},
            {'step': 2000, 'eval_return': 40.0, 'eval_episodes': 5.0}]  # resumed: last wins
    (run / 'metrics.jsonl').write_text(''.join(json.dumps(row) + '\n' for row in rows))
    counters = Counters()
    counters.env_steps.assign(2345)
    checkpoint = tf.train.Checkpoint(counters=counters).save(str(run / 'checkpoints' / 'ckpt'))
    returns = [20.0, 30.0, 40.0]
    (tmp_path / 'eval.json').write_text(json.dumps(
        {'task': 'gym_CartPole-v1', 'checkpoint': checkpoint, 'mode': 'sampled',
         'episodes': [{'return': r, 'length': 5} for r in returns]}))
    results_cli.main(['--folder', str(tmp_path / 'results'), 'add', '--logdir', str(run),
                      '--eval', str(tmp_path / 'eval.json'), '--name', 'cartpole-s3',
                      '--command', 'dreamer-tf train ...', '--commit', 'abc1234', '--headline'])
    [record] = results.load(tmp_path / 'results')
    assert record['curve'] == {'episodes': 5, 'points': [[1000, 10.0], [2000, 40.0]]}
    assert record['score'] == {'env_steps': 2345, 'mean': 30.0, 'std': round(np.std(returns), 2),
                               'episodes': 3, 'policy': 'sample'}
    assert (record['seed'], record['commit']) == (3, 'abc1234')
    results_cli.main(['--folder', str(tmp_path / 'results'), '--plot', str(tmp_path / 'c.png')])
    assert '| dreamerv3 | `gym_CartPole-v1` | 2,345 | 30.0 ± 8.2 (3) |' in capsys.readouterr().out
    results_cli.main(['--folder', str(tmp_path / 'results'), '--render'])
    rendered = (tmp_path / 'results' / 'README.md').read_text()
    assert ('| [cartpole-s3](cartpole-s3.yaml) | dreamerv3 | 3 | 2,345 '
            '| 30.0 ± 8.2 (3) |') in rendered
    assert (tmp_path / 'results' / 'curves' / 'gym_CartPole-v1.png').stat().st_size > 1000
    assert (tmp_path / 'c.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_no_file_points_outside_the_repository():
    listed = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    pattern = re.compile(r'\.\./shared|REFERENCE\.md|DESIGN\.md')
    this = Path(__file__).name
    found = [name for name in listed
             if name.endswith(('.py', '.md', '.yaml', '.toml')) and not name.endswith(this)
             and (ROOT / name).is_file() and pattern.search((ROOT / name).read_text())]
    assert not found, f'files that refer to notes outside the repository: {found}'


def test_readme_is_a_product_readme():
    text = (ROOT / 'README.md').read_text()
    assert len(text.splitlines()) <= 160
    assert not re.search(r'\bsession\b|\bcommit `?[0-9a-f]{7}\b', text, re.IGNORECASE)
    for link in re.findall(r'\]\(((?:docs|results)/[^)#]*)', text):
        assert (ROOT / link).exists(), link


def heading_anchors(markdown):
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped,
    spaces as hyphens."""
    return {re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')
            for heading in re.findall(r'^#+\s+(.*)$', markdown, re.MULTILINE)}


def test_every_link_between_the_docs_leads_to_a_file_and_heading():
    pages = [ROOT / 'README.md', ROOT / 'results' / 'README.md', *ROOT.glob('docs/**/*.md')]
    broken = []
    for page in pages:
        for link in re.findall(r'\]\(([^)\s]+)\)', page.read_text()):
            if re.match(r'[a-z]+:', link):
                continue
            path, _, anchor = link.partition('#')
            target = (page.parent / path).resolve() if path else page
            if not target.exists():
                broken.append(f'{page.relative_to(ROOT)}: {link} (no such file)')
            elif anchor and target.suffix == '.md' and (
                    anchor not in heading_anchors(target.read_text())):
                broken.append(f'{page.relative_to(ROOT)}: {link} (no such heading)')
    assert len(pages) > 10 and not broken, broken
