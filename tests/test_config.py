import os
import pickle
from pathlib import Path

import pytest

from dreamer_tf.config import DEFAULT_PATH, Config, ConfigError, load_config, parse_args

CONFIGS = """\
defaults:
  logdir: /tmp/logdir
  seed: 0
  steps: 1000
  lr: 0.001
  jit: true
  task: dmc_walker_walk
  size: [64, 64]
  log_keys: [image]
  extra: null
  env_kwargs: {}
  rssm: {deter: 200, stoch: 32, act: elu}
  actor: {dist: auto, opt: {lr: 8.0e-5, eps: 1.0e-5}}
atari:
  task: atari_pong
  rssm.deter: 600
  actor.opt.lr: 4.0e-5
small:
  rssm: {deter: 64}
  steps: 1e6
empty:
"""


@pytest.fixture
def path(tmp_path):
    file = tmp_path / 'configs.yaml'
    file.write_text(CONFIGS)
    return file


def write_blocks(tmp_path, extra):
    file = tmp_path / 'configs.yaml'
    file.write_text(CONFIGS + extra)
    return file


# Composition.

def test_defaults_only(path):
    cfg = load_config([], path=path)
    assert cfg.rssm.deter == 200
    assert cfg.task == 'dmc_walker_walk'
    assert cfg.size == (64, 64)
    assert cfg.extra is None


def test_later_block_wins(path):
    assert load_config(['atari', 'small'], path=path).rssm.deter == 64
    assert load_config(['small', 'atari'], path=path).rssm.deter == 600


def test_block_merges_mappings_recursively(path):
    cfg = load_config(['small'], path=path)
    assert cfg.rssm == {'deter': 64, 'stoch': 32, 'act': 'elu'}


def test_dotted_keys_inside_block(path):
    cfg = load_config(['atari'], path=path)
    assert cfg.rssm.deter == 600
    assert cfg.rssm.stoch == 32
    assert cfg.actor.opt.lr == 4e-5
    assert cfg.actor.opt.eps == 1e-5


def test_empty_block_changes_nothing(path):
    assert load_config(['empty'], path=path) == load_config([], path=path)


def test_naming_defaults_again_keeps_earlier_blocks(path):
    cfg = load_config(['atari', 'defaults'], path=path)
    assert cfg.rssm.deter == 600


def test_single_block_name_as_string(path):
    assert load_config('atari', path=path).task == 'atari_pong'


def test_overrides_beat_blocks(path):
    cfg = load_config(['atari'], {'rssm.deter': 8, 'actor': {'opt': {'eps': 0.1}}}, path=path)
    assert cfg.rssm.deter == 8
    assert cfg.actor.opt.eps == 0.1
    assert cfg.actor.opt.lr == 4e-5


def test_overrides_as_pairs(path):
    assert load_config([], [('seed', 3)], path=path).seed == 3


def test_default_path_is_package_data_and_the_repository_configs_yaml():
    repository = Path(__file__).resolve().parent.parent
    assert DEFAULT_PATH == repository / 'dreamer_tf' / 'configs.yaml'
    assert (repository / 'configs.yaml').resolve() == DEFAULT_PATH


@pytest.mark.parametrize('algo', ['planet', 'dreamerv1', 'dreamerv2', 'dreamingv1', 'dreamingv2'])
def test_cpu_vision_block_is_the_schedule_of_the_documented_runs(algo):
    # docs/learning_checks.md ran these flags by hand before the block existed; its table
    # stays comparable only while the block composes to exactly the same config.
    flags = {'env.action_repeat': 8, 'run.prefill': 2000, 'run.train_every': 125,
             'run.train_steps': 40, 'run.batch_size': 16, 'run.batch_length': 32,
             'run.eval_every': 2500, 'run.eval_episodes': 2, 'run.log_every': 1000}
    if algo == 'planet':
        flags.update({'planner.candidates': 300, 'planner.top': 30})
    by_hand = load_config([algo, 'dmc_vision'], flags)
    assert load_config([algo, 'dmc_vision', 'cpu_vision']) == by_hand
    assert by_hand != load_config([algo, 'dmc_vision'])


@pytest.mark.parametrize(
    'algo', ['dreamerv1', 'dreamerv2', 'dreamerv3', 'dreamingv1', 'dreamingv2', 'planet'])
def test_quick_block_shrinks_networks_and_keeps_each_algorithm(algo):
    # scripts/learning_check.py compares presets at one schedule: one update of 16 x 16
    # per 4 policy steps (ratio 64), whether the preset counts train_every or train_ratio.
    paper = load_config([algo, 'toy'])
    quick = load_config([algo, 'toy', 'quick'])
    assert (quick.rssm.deter, quick.rssm.stoch, quick.actor.units) == (64, 8, 256)
    for key in ('algo', 'representation', 'behavior', 'kl', 'model_opt', 'imag'):
        assert quick[key] == paper[key], key
    assert (quick.rssm.classes, quick.rssm.act, quick.critic.dist) == (
        paper.rssm.classes, paper.rssm.act, paper.critic.dist)
    run = quick.run
    ratio = run.train_ratio or run.train_steps * run.batch_size * run.batch_length / run.train_every
    assert (run.batch_size, run.batch_length, ratio, run.steps) == (16, 16, 64, 4400)
    if algo == 'planet':
        assert (quick.planner.candidates, quick.planner.top) == (100, 10)


# Types.

def test_int_accepts_integral_float(path):
    cfg = load_config(['small'], path=path)
    assert cfg.steps == 1_000_000
    assert type(cfg.steps) is int


def test_int_rejects_fractional_float_and_bool(path):
    with pytest.raises(ConfigError, match=r'steps: expected int, got 1\.5 \(float\)'):
        load_config([], {'steps': 1.5}, path=path)
    with pytest.raises(ConfigError, match=r'seed: expected int, got True \(bool\)'):
        load_config([], {'seed': True}, path=path)


def test_float_accepts_int(path):
    cfg = load_config([], {'lr': 1}, path=path)
    assert cfg.lr == 1.0
    assert type(cfg.lr) is float


def test_float_rejects_bool_and_str(path):
    with pytest.raises(ConfigError, match='lr: expected float'):
        load_config([], {'lr': False}, path=path)
    with pytest.raises(ConfigError, match='lr: expected float'):
        load_config([], {'lr': '0.1'}, path=path)


def test_bool_is_strict(path):
    with pytest.raises(ConfigError, match=r'jit: expected bool, got 1 \(int\)'):
        load_config([], {'jit': 1}, path=path)
    assert load_config([], {'jit': False}, path=path).jit is False


def test_str_rejects_number(path):
    with pytest.raises(ConfigError, match=r"task: expected str, got 3 \(int\)"):
        load_config([], {'task': 3}, path=path)


def test_list_stored_as_tuple(path):
    cfg = load_config([], {'log_keys': ['image', 'reward']}, path=path)
    assert cfg.log_keys == ('image', 'reward')
    with pytest.raises(ConfigError, match='log_keys: expected list'):
        load_config([], {'log_keys': 'image'}, path=path)


def test_list_of_mappings_rejected(path):
    with pytest.raises(ConfigError, match='log_keys'):
        load_config([], {'log_keys': [{'a': 1}]}, path=path)


def test_null_default_accepts_anything(path):
    for value in (3, 'text', [1, 2], {'a': 1}):
        cfg = load_config([], {'extra': value}, path=path)
        assert cfg.extra == (tuple(value) if isinstance(value, list) else value)


def test_mapping_default_requires_mapping(path):
    with pytest.raises(ConfigError, match=r'rssm: expected mapping, got 5 \(int\)'):
        load_config([], {'rssm': 5}, path=path)


def test_wrong_type_in_block_names_block(tmp_path):
    path = write_blocks(tmp_path, 'bad:\n  rssm.deter: abc\n')
    with pytest.raises(ConfigError) as info:
        load_config(['bad'], path=path)
    assert str(info.value) == "rssm.deter: expected int, got 'abc' (str) from block 'bad'"


# Unknown keys and blocks.

def test_unknown_key_suggests_close_match(path):
    with pytest.raises(ConfigError) as info:
        load_config([], {'rssm.dter': 1}, path=path)
    message = str(info.value)
    assert "'rssm.dter'" in message
    assert 'from overrides' in message
    assert 'rssm.deter' in message


def test_unknown_key_in_block_names_block(tmp_path):
    path = write_blocks(tmp_path, 'bad:\n  rssm: {stoh: 1}\n')
    with pytest.raises(ConfigError) as info:
        load_config(['bad'], path=path)
    message = str(info.value)
    assert "'rssm.stoh'" in message
    assert "block 'bad'" in message
    assert 'rssm.stoch' in message


def test_unknown_key_without_match_lists_level(path):
    with pytest.raises(ConfigError) as info:
        load_config([], {'rssm.qqqqqqqqqqqqqqqq': 1}, path=path)
    assert 'rssm.deter, rssm.stoch, rssm.act' in str(info.value)


def test_unknown_block_lists_closest_first(path):
    with pytest.raises(ConfigError) as info:
        load_config(['atary'], path=path)
    message = str(info.value)
    assert "'atary'" in message
    blocks = message.split('available blocks: ')[1].split(', ')
    assert blocks[0] == 'atari'
    assert set(blocks) == {'defaults', 'atari', 'small', 'empty'}


def test_missing_defaults_block(tmp_path):
    file = tmp_path / 'configs.yaml'
    file.write_text('atari:\n  task: pong\n')
    with pytest.raises(ConfigError, match='defaults'):
        load_config([], path=file)


# Command line.

def test_cli_configs_and_overrides(path):
    argv = ['--configs', 'atari', 'small', '--seed', '5', '--task', 'dmc_cheetah_run']
    cfg = parse_args(argv, path)
    assert cfg.rssm.deter == 64
    assert cfg.actor.opt.lr == 4e-5
    assert cfg.seed == 5
    assert cfg.task == 'dmc_cheetah_run'


def test_cli_override_beats_blocks(path):
    cfg = parse_args(['--configs', 'atari', '--rssm.deter', '16'], path)
    assert cfg.rssm.deter == 16


def test_cli_equals_syntax(path):
    cfg = parse_args(['--rssm.deter=3', '--configs=atari,small', '--logdir=/a=b'], path)
    assert cfg.rssm.deter == 3
    assert cfg.steps == 1_000_000
    assert cfg.task == 'atari_pong'
    assert cfg.logdir == '/a=b'


def test_cli_int(path):
    assert parse_args(['--steps', '1e6'], path).steps == 1_000_000
    assert parse_args(['--steps', '-3'], path).steps == -3
    with pytest.raises(ConfigError) as info:
        parse_args(['--rssm.deter', 'abc'], path)
    assert str(info.value) == "rssm.deter: expected int, got 'abc' (str) from command line"
    with pytest.raises(ConfigError, match='steps: expected int'):
        parse_args(['--steps', '2.5'], path)


def test_cli_float(path):
    cfg = parse_args(['--lr', '3e-4', '--actor.opt.eps', '1'], path)
    assert cfg.lr == 3e-4
    assert type(cfg.actor.opt.eps) is float
    with pytest.raises(ConfigError, match='lr: expected float'):
        parse_args(['--lr', 'fast'], path)


@pytest.mark.parametrize('text, value', [
    ('true', True), ('True', True), ('YES', True), ('1', True),
    ('false', False), ('No', False), ('0', False)])
def test_cli_bool(path, text, value):
    assert parse_args(['--jit', text], path).jit is value


def test_cli_bool_rejects_other_words(path):
    with pytest.raises(ConfigError, match="jit: expected bool, got 'maybe'"):
        parse_args(['--jit', 'maybe'], path)


def test_cli_str_kept_verbatim(path):
    assert parse_args(['--task', '123'], path).task == '123'


def test_cli_list(path):
    assert parse_args(['--size', '[32, 48]'], path).size == (32, 48)
    assert parse_args(['--size', '32,48'], path).size == (32, 48)
    assert parse_args(['--log_keys', 'image,reward'], path).log_keys == ('image', 'reward')
    assert parse_args(['--log_keys', '[]'], path).log_keys == ()


def test_cli_null_default_parses_yaml(path):
    assert parse_args(['--extra', '3'], path).extra == 3
    assert parse_args(['--extra', '{a: 1}'], path).extra == {'a': 1}
    assert parse_args(['--extra', 'word'], path).extra == 'word'


def test_cli_mapping_value(path):
    cfg = parse_args(['--rssm', '{deter: 7}'], path)
    assert cfg.rssm.deter == 7
    assert cfg.rssm.stoch == 32


def test_cli_repeated_key_last_wins(path):
    cfg = parse_args(['--rssm.deter', '1', '--rssm', '{deter: 2}', '--rssm.deter', '3'], path)
    assert cfg.rssm.deter == 3


def test_cli_missing_value(path):
    with pytest.raises(ConfigError, match='--seed needs a value'):
        parse_args(['--seed'], path)
    with pytest.raises(ConfigError, match='--seed needs a value'):
        parse_args(['--seed', '--task', 'x'], path)


def test_cli_unknown_flag(path):
    with pytest.raises(ConfigError) as info:
        parse_args(['--rssm.dter', '3'], path)
    assert 'rssm.deter' in str(info.value)
    assert 'command line' in str(info.value)


def test_cli_subkey_of_leaf(path):
    with pytest.raises(ConfigError, match="'task' has no sub-keys"):
        parse_args(['--task.qqqqqqqqqqqq', 'x'], path)


def test_cli_positional_argument_rejected(path):
    with pytest.raises(ConfigError, match="unexpected argument 'atari'"):
        parse_args(['atari'], path)


def test_cli_configs_without_name(path):
    with pytest.raises(ConfigError, match='--configs needs at least one block name'):
        parse_args(['--configs', '--seed', '1'], path)
    with pytest.raises(ConfigError, match='--configs needs'):
        parse_args(['--configs'], path)


def test_cli_unknown_block(path):
    with pytest.raises(ConfigError, match='available blocks: atari'):
        parse_args(['--configs', 'atar'], path)


def test_cli_help(path, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(['--configs', 'atari', '-h'], path)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert 'usage:' in out
    assert 'defaults, atari, small, empty' in out
    assert '--rssm.deter 200' in out


# Config object.

def test_mapping_interface(path):
    cfg = load_config([], path=path)
    assert cfg['rssm']['deter'] == cfg.rssm.deter == 200
    assert cfg.get('missing') is None
    assert cfg.get('seed') == 0
    assert 'rssm' in cfg and 'deter' in cfg.rssm and 'missing' not in cfg
    assert len(cfg.rssm) == 3
    assert list(cfg.rssm) == ['deter', 'stoch', 'act']
    assert list(cfg.rssm.keys()) == ['deter', 'stoch', 'act']
    assert dict(cfg.rssm.items()) == {'deter': 200, 'stoch': 32, 'act': 'elu'}
    assert isinstance(cfg.actor.opt, Config)


def test_missing_attribute_suggests(path):
    cfg = load_config([], path=path)
    with pytest.raises(AttributeError, match='did you mean seed'):
        _ = cfg.sed


def test_equality(path):
    cfg = load_config([], path=path)
    assert cfg == load_config([], path=path)
    assert cfg == cfg.to_dict()
    assert cfg.rssm == {'deter': 200, 'stoch': 32, 'act': 'elu'}
    assert cfg.rssm != {'deter': 201, 'stoch': 32, 'act': 'elu'}
    assert cfg != 'text'


def test_to_dict_is_plain_copy(path):
    cfg = load_config([], path=path)
    plain = cfg.to_dict()
    assert type(plain['rssm']) is dict
    assert plain['size'] == [64, 64]
    plain['rssm']['deter'] = 1
    assert cfg.rssm.deter == 200


def test_flat(path):
    flat = load_config([], path=path).flat()
    assert flat['rssm.deter'] == 200
    assert flat['actor.opt.lr'] == 8e-5
    assert flat['env_kwargs'] == {}
    assert 'rssm' not in flat


def test_repr_lists_dotted_keys(path):
    text = repr(load_config([], path=path))
    assert text.startswith('Config(')
    assert 'rssm.deter: 200' in text
    assert repr(Config()) == 'Config()'


def test_immutable(path):
    cfg = load_config([], path=path)
    with pytest.raises(AttributeError, match='immutable'):
        cfg.seed = 1
    with pytest.raises(AttributeError, match='immutable'):
        cfg.rssm.deter = 1
    with pytest.raises(AttributeError):
        del cfg.seed
    with pytest.raises(TypeError):
        cfg['seed'] = 1
    assert cfg.seed == 0 and cfg.rssm.deter == 200


def test_constructor_freezes_input():
    source = {'a': {'b': [1, 2]}, 'c.d': 3}
    cfg = Config(source, e=4)
    source['a']['b'].append(3)
    assert cfg.a.b == (1, 2)
    assert cfg.c.d == 3
    assert cfg.e == 4


def test_update_returns_new_config(path):
    cfg = load_config([], path=path)
    new = cfg.update({'rssm.deter': 8, 'actor': {'opt': {'lr': 1}}}, seed=2)
    assert (new.rssm.deter, new.actor.opt.lr, new.seed) == (8, 1.0, 2)
    assert new.rssm.stoch == 32
    assert (cfg.rssm.deter, cfg.actor.opt.lr, cfg.seed) == (200, 8e-5, 0)


def test_update_validates(path):
    cfg = load_config([], path=path)
    message = r"rssm.deter: expected int, got 'x' \(str\) from update\(\)"
    with pytest.raises(ConfigError, match=message):
        cfg.update({'rssm.deter': 'x'})
    with pytest.raises(ConfigError, match='rssm.deter'):
        cfg.update({'rssm': {'detr': 1}})


def test_update_checks_types_of_defaults(path):
    cfg = load_config([], {'extra': 3}, path=path)
    assert cfg.update(extra='now a string').extra == 'now a string'


def test_update_on_nested_config(path):
    rssm = load_config([], path=path).rssm
    assert rssm.update(deter=4).deter == 4
    with pytest.raises(ConfigError, match='expected int'):
        rssm.update(deter='x')


def test_pickle_round_trip(path):
    cfg = load_config(['atari'], {'extra': 3}, path=path)
    copy = pickle.loads(pickle.dumps(cfg))
    assert copy == cfg
    assert copy.rssm.deter == 600
    assert copy.update(extra='text').extra == 'text'
    with pytest.raises(AttributeError):
        copy.seed = 1


# Saving and loading.

def test_save_load_round_trip(path, tmp_path):
    cfg = load_config(['atari', 'small'], {'extra': {'a': [1, 2]}}, path=path)
    target = tmp_path / 'out' / 'config.yaml'
    target.parent.mkdir()
    cfg.save(target)
    loaded = Config.load(target)
    assert loaded == cfg
    assert type(loaded.steps) is int and type(loaded.lr) is float
    assert loaded.size == (64, 64)
    assert os.listdir(target.parent) == ['config.yaml']


def test_save_replaces_existing_file_whole(tmp_path):
    target = tmp_path / 'config.yaml'
    target.write_text('old: 1\n' * 1000)
    Config(a=1).save(target)
    assert target.read_text() == 'a: 1\n'
    assert os.listdir(tmp_path) == ['config.yaml']


def test_save_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / 'config.yaml'
    target.write_text('old: 1\n')

    def fail(*args):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'replace', fail)
    with pytest.raises(OSError, match='disk full'):
        Config(a=1).save(target)
    assert target.read_text() == 'old: 1\n'
    assert os.listdir(tmp_path) == ['config.yaml']


@pytest.mark.parametrize('overrides, message', [
    ({'encoder.norm': 'Layer'}, "encoder.norm must be one of layer, none, got 'Layer'"),
    ({'imag.cont': 'modes'}, "imag.cont must be one of mode, mean, got 'modes'"),
    ({'critic.slow_update_every': 0}, 'critic.slow_update_every 0 keeps no slow critic'),
])
def test_values_the_code_would_take_silently_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(['dreamerv3'], overrides)
    # Without a slow regulariser or slow returns, no slow critic is a valid setting.
    load_config(['dreamerv3'], {'critic.slow_update_every': 0, 'critic.slow_reg': 0.0})


@pytest.mark.parametrize('suite, transform', [
    ('gym', 'tanh'), ('atari', 'tanh'), ('crafter', 'tanh'),   # danijar/dreamerv2 defaults
    ('dmc_proprio', 'identity'), ('dmc_vision', 'identity'),   # its dmc blocks
    ('minatar', 'identity'),                                   # RajGhugare19/dreamerv2
])
def test_dreamerv2_reward_transform_per_suite(suite, transform):
    for algo in ('dreamerv2', 'dreamingv2'):
        assert load_config([algo, suite]).reward_transform == transform, (algo, suite)


def test_dreamerv2_crafter_block_is_the_authors():
    # danijar/dreamerv2 configs.yaml `crafter`: discount 0.999, lrs 1e-4, actor_ent 3e-3,
    # `.*\.norm: layer`, over the defaults' 1024-unit RSSM.
    config = load_config(['dreamerv2', 'crafter'])
    assert config.imag.discount == 0.999 and config.actor.entropy == 3e-3
    assert (config.model_opt.lr, config.actor_opt.lr, config.critic_opt.lr) == (1e-4,) * 3
    norms = {key: config[key].norm for key in
             ('encoder', 'decoder', 'rssm', 'reward_head', 'cont_head', 'actor', 'critic')}
    assert set(norms.values()) == {'layer'} and config.rssm.gru_norm
    assert (config.rssm.deter, config.rssm.hidden) == (1024, 1024)


def test_dreamerv2_replay_samples_episodes_with_ends_prioritised_but_on_dm_control():
    # danijar/dreamerv2: replay.prioritize_ends True in defaults, False in its dmc blocks.
    run = load_config(['dreamerv2', 'atari']).run
    assert (run.replay_sampling, run.prioritize_ends) == ('episodes', True)
    run = load_config(['dreamerv2', 'dmc_vision']).run
    assert (run.replay_sampling, run.prioritize_ends) == ('episodes', False)
    run = load_config(['dreamerv3', 'atari']).run
    assert (run.replay_sampling, run.prioritize_ends) == ('steps', False)
    with pytest.raises(ConfigError, match='run.replay_sampling must be one of steps, episodes'):
        load_config(['dreamerv3'], {'run.replay_sampling': 'uniform'})
