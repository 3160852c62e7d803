"""Configuration: named YAML blocks composed in order, then dotted overrides.

The YAML file maps block names to nested mappings. Block `defaults` defines
every valid key and its type; the blocks named by the caller are applied on
top of it in order, followed by overrides such as `--rssm.deter 8` on the
command line. Every value is checked against the type of its default.
"""

import difflib
import fnmatch
import io
import math
import sys
from collections.abc import Mapping
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from dreamer_tf.fileio import write_atomic

__all__ = ['Config', 'ConfigError', 'load_config', 'parse_args']

# Package data, so that an installed wheel has its presets; the repository's top-level
# configs.yaml is a link to it.
DEFAULT_PATH = Path(__file__).resolve().parent / 'configs.yaml'
# run.eval_policy: `mode` acts on the posterior's and the actor's modes (a
# deterministic evaluation); `sample` draws both without exploration noise, as
# DreamerV3's code does (agent.py, policy(mode='eval')); `sample_latent` draws the
# posterior and takes the actor's mode (PlaNet's plan mean), as the V1, V2 and PlaNet
# code evaluate (danijar/dreamer policy(training=False), danijar/dreamerv2
# eval_state_mean False, planet control/planning.py).
EVAL_POLICIES = ('mode', 'sample', 'sample_latent')

_SCALARS = (bool, int, float, str, type(None))
# Value ranges of numeric keys (dotted-key patterns), checked after composition
# and on update; every float must be finite wherever its key is. A key of this
# table that a schema lacks is not checked.
_RANGES = (
    (('*_opt.lr', '*_opt.eps', 'rssm.deter', 'rssm.hidden', 'rssm.stoch', '*.units',
      '*.mlp_units', '*.cnn_depth', '*.bins', 'run.batch_size', 'run.batch_length',
      'run.replay_capacity', 'env.envs', 'env.action_repeat', 'env.size', 'imag.horizon',
      'planner.*', 'contrastive.temperature', 'actor.max_std', 'run.policy_refresh'), '> 0',
     lambda x: x > 0),
    (('seed', 'run.*', 'env.time_limit', 'env.worker_timeout', 'env.noops', '*_opt.clip',
      '*_opt.wd', '*.layers', '*.mlp_layers', 'loss_scales.*', 'kl.*', 'actor.entropy',
      '*.min_std', '*.outscale', 'critic.slow_*', 'rssm.classes', 'contrastive.overshoot',
      'contrastive.crop_pad', 'retnorm.limit'), '>= 0', lambda x: x >= 0),
    (('*.unimix', 'imag.discount', 'imag.lambda', 'retnorm.decay', 'critic.slow_fraction'),
     'in [0, 1]', lambda x: 0 <= x <= 1),
    (('retnorm.low', 'retnorm.high'), 'in [0, 100]', lambda x: 0 <= x <= 100),
    (('image_bits',), 'in [1, 8]', lambda x: 1 <= x <= 8),
)
# String keys whose other values the code would take silently for one of these.
_CHOICES = (
    (('*.norm',), ('layer', 'none')),
    (('imag.cont',), ('mode', 'mean')),
    (('run.replay_sampling',), ('steps', 'episodes')),
    (('run.mode',), ('sync', 'async')),
)
_TRUE = ('true', 'yes', '1')
_FALSE = ('false', 'no', '0')


class ConfigError(ValueError):
    """Raised for unknown keys or blocks, wrongly typed values and bad arguments."""


class Config(Mapping):
    """Immutable nested mapping of config values with attribute access.

    Nested mappings come back as `Config`s and lists as tuples. Keys that
    clash with method names (`keys`, `update`, ...) need item access.
    """

    def __init__(self, mapping=(), **kwargs):
        data = _freeze(_expand(dict(mapping, **kwargs)))
        object.__setattr__(self, '_data', data)
        object.__setattr__(self, '_schema', data)

    @classmethod
    def _wrap(cls, data, schema):
        """Build a Config around already frozen `data`, validated by `schema`."""
        config = cls.__new__(cls)
        object.__setattr__(config, '_data', data)
        object.__setattr__(config, '_schema', data if schema is None else schema)
        return config

    @classmethod
    def load(cls, path):
        """Read a Config written by `save()`."""
        with open(path) as file:
            data = _yaml().load(file)
        if not isinstance(data, Mapping):
            raise ConfigError(f'{path}: expected a mapping at the top level')
        return cls(data)

    def __getitem__(self, key):
        value = self._data[key]
        if isinstance(value, dict):
            schema = self._schema.get(key)
            return Config._wrap(value, schema if isinstance(schema, dict) else None)
        return value

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)

    def __getattr__(self, name):
        # Private names must fail fast so that pickle and copy probe safely.
        if name.startswith('_'):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._data), n=3)
            hint = f'; did you mean {", ".join(close)}?' if close else ''
            raise AttributeError(f'config has no key {name!r}{hint}') from None

    def __setattr__(self, name, value):
        raise AttributeError('Config is immutable; use update() to get a changed copy')

    def __delattr__(self, name):
        raise AttributeError('Config is immutable; use update() to get a changed copy')

    def __eq__(self, other):
        if isinstance(other, Config):
            return self._data == other._data
        if isinstance(other, Mapping):
            try:
                return self._data == Config(other)._data
            except ConfigError:
                return False
        return NotImplemented

    __hash__ = None

    def __reduce__(self):
        return Config._wrap, (self._data, self._schema)

    def __repr__(self):
        lines = [f'  {key}: {value!r}' for key, value in self.flat().items()]
        return 'Config(\n' + '\n'.join(lines) + '\n)' if lines else 'Config()'

    def to_dict(self):
        """Return the values as plain nested dicts and lists."""
        return _thaw(self._data)

    def flat(self):
        """Return a dict mapping dotted keys to leaf values."""
        return dict(_flatten(self._data))

    def update(self, mapping=(), **kwargs):
        """Return a new Config with `mapping` merged in.

        `mapping` may be nested or use dotted keys. Values are checked against
        the types of `defaults` when this Config came from `load_config()`,
        else against the current values.
        """
        update = _expand(dict(mapping, **kwargs))
        data = _merge(self._data, update, self._schema, 'update()', self._schema)
        _check_values(data)
        return Config._wrap(data, self._schema)

    def save(self, path):
        """Write the config as YAML, atomically replacing any existing file."""
        text = io.StringIO()
        _yaml().dump(self.to_dict(), text)
        write_atomic(path, text.getvalue())


def load_config(names, overrides=(), path=None):
    """Compose `defaults`, then the blocks `names` in order, then `overrides`.

    `overrides` is a mapping (or pairs) of nested or dotted keys to typed
    values. `path` defaults to the package's `configs.yaml` (the repository's).
    """
    if isinstance(names, str):
        names = [names]
    return _compose(_read_blocks(path), names, dict(overrides), 'overrides')


def parse_args(argv=None, path=None, flags=()):
    """Build a Config from `--configs NAME ...` and `--dotted.key value` arguments.

    Values are parsed according to the type of their default. `-h`/`--help`
    prints a usage text, with `flags` (pairs of a program's own flag and its
    help line) after the usage line, and exits.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    blocks = _read_blocks(path)
    if '-h' in argv or '--help' in argv:
        print(_usage(blocks, flags))
        sys.exit(0)
    names, overrides = _parse_argv(argv, _defaults(blocks))
    return _compose(blocks, names, overrides, 'command line')


def default_items(path=None):
    """(dotted key, default) for every key that a config has, in configs.yaml's order."""
    return [(key, _thaw(value)) for key, value in _flatten(_defaults(_read_blocks(path)))]


def _yaml():
    yaml = YAML(typ='safe')
    yaml.sort_base_mapping_type_on_output = False
    yaml.default_flow_style = False
    return yaml


def _read_blocks(path):
    """Read the YAML file of named blocks."""
    path = DEFAULT_PATH if path is None else Path(path)
    try:
        with open(path) as file:
            blocks = _yaml().load(file)
    except YAMLError as error:
        raise ConfigError(f'cannot parse {path}: {error}') from None
    if not isinstance(blocks, Mapping) or 'defaults' not in blocks:
        raise ConfigError(f'{path}: expected a mapping of blocks that includes "defaults"')
    return blocks


def _block(blocks, name):
    """Return block `name` as an expanded mapping."""
    if name not in blocks:
        available = difflib.get_close_matches(name, list(blocks), n=len(blocks), cutoff=0)
        raise ConfigError(
            f'unknown config block {name!r}; available blocks: {", ".join(available)}')
    content = blocks[name]
    if content is None:
        return {}
    if not isinstance(content, Mapping):
        raise ConfigError(f'block {name!r} must be a mapping, got {type(content).__name__}')
    return _expand(content)


def _defaults(blocks):
    return _freeze(_block(blocks, 'defaults'))


def _compose(blocks, names, overrides, source):
    defaults = _defaults(blocks)
    data = defaults
    _check_one_algorithm(blocks, names)
    for name in _with_combined_blocks(blocks, names):
        data = _merge(data, _block(blocks, name), defaults, f'block {name!r}', defaults)
    data = _merge(data, _expand(overrides), defaults, source, defaults)
    _check_values(data)
    return Config._wrap(data, defaults)


def _check_one_algorithm(blocks, names):
    """Two blocks that each set `algo` would mix two presets under the later one's name."""
    algos = list(dict.fromkeys(
        name for name in names if name != 'defaults' and 'algo' in _block(blocks, name)))
    if len(algos) > 1:
        raise ConfigError(
            f'--configs names {len(algos)} algorithm presets ({", ".join(algos)}): they would '
            'mix into a preset of neither paper. Name one, and change its values with dotted '
            'overrides such as --kl.free 1.0')


def _check_values(data):
    """Finite floats everywhere, the numeric keys of `_RANGES` within their range, the
    keys of `_CHOICES` one of theirs, and settings that need each other."""
    for key, value in _flatten(data):
        for patterns, choices in _CHOICES:
            if any(fnmatch.fnmatchcase(key, p) for p in patterns) and value not in choices:
                raise ConfigError(
                    f'{key} must be one of {", ".join(choices)}, got {value!r} (set --{key})')
        values = value if isinstance(value, tuple) else (value,)
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise ConfigError(f'{key} must be a finite number, got {value!r} (set --{key})')
        for patterns, text, valid in _RANGES:
            if any(fnmatch.fnmatchcase(key, p) for p in patterns):
                if not all(valid(v) for v in numbers):
                    raise ConfigError(f'{key} must be {text}, got {value!r} (set --{key})')
                break
    _check_slow_critic(data.get('critic', {}))


def _check_slow_critic(critic):
    """The slow critic's regulariser and returns need a slow critic to exist."""
    if critic.get('slow_update_every') == 0 and (critic.get('slow_reg') or
                                                 critic.get('slow_returns')):
        raise ConfigError(
            'critic.slow_update_every 0 keeps no slow critic, but critic.slow_reg or '
            'critic.slow_returns uses one: set --critic.slow_reg 0 --critic.slow_returns false, '
            'or a positive --critic.slow_update_every')


def _with_combined_blocks(blocks, names):
    """Insert each block named `a+b` right after the later of `a` and `b`
    when all its parts are requested, e.g. `dreamerv2+dmc_proprio`."""
    # `defaults` always comes first; applying it again would undo earlier blocks.
    names = [name for name in names if name != 'defaults']
    combined = [name.split('+') for name in blocks if '+' in name]
    out = []
    for i, name in enumerate(names):
        out.append(name)
        for parts in combined:
            combo = '+'.join(parts)
            if name in parts and set(parts) <= set(names[:i + 1]) and combo not in out:
                out.append(combo)
    return out


def _expand(mapping, prefix=''):
    """Copy `mapping` into plain nested dicts, splitting dotted keys into levels."""
    result = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or '' in key.split('.'):
            raise ConfigError(f'invalid config key {prefix + str(key)!r}')
        if isinstance(value, Mapping):
            value = _expand(value, f'{prefix}{key}.')
        *parents, leaf = key.split('.')
        target = result
        for part in parents:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        _put(target, leaf, value)
    return result


def _put(target, key, value):
    """Set `target[key]`, merging into an existing dict rather than replacing it."""
    if isinstance(value, dict) and isinstance(target.get(key), dict):
        for subkey, subvalue in value.items():
            _put(target[key], subkey, subvalue)
    else:
        target[key] = value


def _freeze(value, key='value'):
    """Copy `value` with lists turned into tuples, rejecting unsupported types."""
    if isinstance(value, Mapping):
        return {name: _freeze(item, f'{key}.{name}') for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        if any(isinstance(item, Mapping) for item in value):
            raise ConfigError(f'{key}: lists of mappings are not supported, got {value!r}')
        return tuple(_freeze(item, key) for item in value)
    if isinstance(value, _SCALARS):
        return value
    raise ConfigError(f'{key}: unsupported value {value!r} ({type(value).__name__})')


def _thaw(value):
    """Copy frozen `value` into plain dicts and lists."""
    if isinstance(value, dict):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    return value


def _flatten(data, prefix=''):
    """Yield (dotted key, leaf value) pairs; empty mappings count as leaves."""
    for key, value in data.items():
        if isinstance(value, dict) and value:
            yield from _flatten(value, f'{prefix}{key}.')
        elif isinstance(value, dict):
            yield prefix + key, {}
        else:
            yield prefix + key, value


def _dotted_keys(schema, prefix=''):
    """List every valid dotted key, including keys of nested mappings."""
    keys = []
    for key, value in schema.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys += _dotted_keys(value, f'{prefix}{key}.')
    return keys


def _merge(base, update, schema, source, root, prefix=''):
    """Return `base` with the expanded mapping `update` merged in.

    Keys and types are checked against `schema`, the part of `root` (the full
    schema, used for suggestions) at dotted position `prefix`.
    """
    result = dict(base)
    for key, value in update.items():
        if key not in schema:
            raise _unknown_key(prefix + key, schema, root, source, prefix)
        default = schema[key]
        if isinstance(default, dict) and isinstance(value, dict):
            result[key] = _merge(result[key], value, default, source, root, f'{prefix}{key}.')
        else:
            result[key] = _coerce(value, default, prefix + key, source)
    return result


def _coerce(value, default, key, source):
    """Return `value` converted to the type of `default`, or raise ConfigError."""
    if default is None:
        return _freeze(value, key)
    if isinstance(default, bool):
        valid = isinstance(value, bool)
    elif isinstance(default, int):
        valid = isinstance(value, int) and not isinstance(value, bool)
        # YAML reads `1e6` as a float; integral floats are meant as ints.
        if isinstance(value, float) and value.is_integer():
            value, valid = int(value), True
    elif isinstance(default, float):
        valid = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if valid else value
    elif isinstance(default, str):
        valid = isinstance(value, str)
    elif isinstance(default, tuple):
        valid = isinstance(value, (list, tuple))
    else:
        valid = False
    if not valid:
        raise _type_error(key, value, default, source)
    return _freeze(value, key)


def _type_name(default):
    if isinstance(default, dict):
        return 'mapping'
    if isinstance(default, tuple):
        return 'list'
    return type(default).__name__


def _type_error(key, value, default, source):
    return ConfigError(
        f'{key}: expected {_type_name(default)}, got {value!r} '
        f'({type(value).__name__}) from {source}')


def _unknown_key(key, level, root, source, prefix):
    close = difflib.get_close_matches(key, _dotted_keys(root), n=3, cutoff=0.5)
    if close:
        hint = f'did you mean {", ".join(close)}?'
    elif level:
        hint = f'valid keys here: {", ".join(prefix + name for name in level)}'
    else:
        hint = f'{prefix[:-1]!r} has no sub-keys'
    return ConfigError(f'unknown config key {key!r} from {source}; {hint}')


def _lookup(schema, key, source):
    """Return the default for dotted `key`, or raise an unknown key error."""
    level, prefix = schema, ''
    for part in key.split('.'):
        if not isinstance(level, dict) or part not in level:
            known = level if isinstance(level, dict) else {}
            raise _unknown_key(key, known, schema, source, prefix)
        level, prefix = level[part], f'{prefix}{part}.'
    return level


def _parse_argv(argv, schema):
    """Split arguments into block names and a dict of typed dotted overrides."""
    names, overrides = [], {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if not arg.startswith('--') or arg == '--':
            raise ConfigError(
                f'unexpected argument {arg!r}; expected --configs NAME ... or --KEY VALUE')
        key, has_value, text = arg[2:].partition('=')
        if key == 'configs':
            given = [name for name in text.split(',') if name] if has_value else []
            while not has_value and index < len(argv) and not argv[index].startswith('--'):
                given.append(argv[index])
                index += 1
            if not given:
                raise ConfigError('--configs needs at least one block name')
            names += given
            continue
        default = _lookup(schema, key, 'command line')
        if not has_value:
            if index == len(argv) or argv[index].startswith('--'):
                raise ConfigError(
                    f'--{key} needs a value (use --{key}=VALUE for values starting with --)')
            text = argv[index]
            index += 1
        # Re-inserting moves a repeated key to the end so that the last one wins.
        overrides.pop(key, None)
        overrides[key] = _parse_value(text, default, key)
    return names, overrides


def _parse_value(text, default, key):
    """Parse command line `text` according to the type of `default`."""
    source = 'command line'
    if isinstance(default, bool):
        if text.lower() not in _TRUE + _FALSE:
            raise _type_error(key, text, default, source)
        return text.lower() in _TRUE
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise _type_error(key, text, default, source) from None
        if not number.is_integer():
            raise _type_error(key, text, default, source)
        return int(number)
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise _type_error(key, text, default, source) from None
    if isinstance(default, str):
        return text
    if isinstance(default, tuple) and not text.lstrip().startswith('['):
        text = f'[{text}]'
    try:
        return _yaml().load(text)
    except YAMLError:
        raise ConfigError(f'{key}: cannot parse {text!r} as YAML from {source}') from None


def _usage(blocks, flags=()):
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else 'program'
    own = ''.join(f' [{flag}]' for flag, _ in flags)
    lines = [
        f'usage: {program} [--configs NAME [NAME ...]] [--KEY VALUE | --KEY=VALUE ...]{own}',
        *[f'  {flag}: {text}' for flag, text in flags],
        '',
        'Blocks are applied in order on top of "defaults"; later ones win.',
        f'blocks: {", ".join(blocks)}',
        '',
        'keys and defaults:',
    ]
    lines += [f'  --{key} {_thaw(value)!r}' for key, value in _flatten(_defaults(blocks))]
    lines += ['', 'what each key means: --help-config [PREFIX], e.g. --help-config rssm']
    return '\n'.join(lines)
