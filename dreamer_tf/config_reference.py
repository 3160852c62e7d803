"""What every config key means, from `config_keys.yaml`: the text of `dreamer-tf train
--help-config [PREFIX]` and the key table of docs/config.md.

`config_keys.yaml` holds one line per key of configs.yaml's `defaults`; the tests
check that the two name the same keys and that docs/config.md holds `markdown()`, so
neither the help nor the guide can drift from the presets.
"""

import textwrap
from pathlib import Path

from ruamel.yaml import YAML

from dreamer_tf.config import DEFAULT_PATH, ConfigError, default_items

KEYS_PATH = Path(__file__).resolve().parent / 'config_keys.yaml'


def meanings(path=KEYS_PATH):
    """{dotted key: what it means}."""
    with open(path) as file:
        return dict(YAML(typ='safe').load(file))


def rows(prefix='', path=DEFAULT_PATH):
    """[(key, default, meaning)] for the keys equal to `prefix` or under it ('' for all)."""
    text = meanings()
    selected = [(key, value, text.get(key, '')) for key, value in default_items(path)
                if not prefix or key == prefix or key.startswith(prefix + '.')]
    if not selected:
        groups = sorted({key.split('.')[0] for key, _ in default_items(path)})
        raise ConfigError(f'no config key {prefix!r}; groups: {", ".join(groups)}')
    return selected


def _flow(value):
    """A default as one would write it on the command line or in YAML."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) and abs(value) >= 100_000:
        # 1000000 as 1e6: what one types on the command line (integral floats are taken).
        mantissa, exponent = f'{value:e}'.split('e')
        mantissa = mantissa.rstrip('0').rstrip('.')
        if float(mantissa) * 10 ** int(exponent) == value:
            return f'{mantissa}e{int(exponent)}'
    if isinstance(value, list):
        return '[' + ', '.join(_flow(item) for item in value) + ']'
    if isinstance(value, dict):
        return '{}'
    return 'null' if value is None else str(value)


def text(prefix=''):
    """The terminal form: `--key default` and its meaning, wrapped under it."""
    lines = []
    for key, value, meaning in rows(prefix):
        lines.append(f'--{key} {_flow(value)}')
        lines += textwrap.wrap(meaning, 88, initial_indent='    ', subsequent_indent='    ')
    return '\n'.join(lines)


def markdown():
    """The key table of docs/config.md: top-level keys first, then one section per group."""
    groups = {}
    for key, value, meaning in rows():
        head, dot, _ = key.partition('.')
        groups.setdefault(head if dot else '', []).append(
            f'| `{key}` | `{_flow(value)}` | {meaning.replace("|", "/")} |')
    out = []
    for head, lines in sorted(groups.items(), key=lambda item: item[0] != ''):
        title = f'### `{head}`' if head else '### Top level'
        out += [title, '', '| key | default | meaning |', '|---|---|---|', *lines, '']
    return '\n'.join(out)
