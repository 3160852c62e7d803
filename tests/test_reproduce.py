"""Reference data, paper scores and the reproduction report on synthetic run directories.

Everything here reads and writes files only: no TensorFlow, no environments.
"""

import importlib.util
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dreamer_tf import reference
from dreamer_tf.config import load_config
from dreamer_tf.fileio import read_jsonl
from dreamer_tf.reproduce import launch, protocol, report, scores
from dreamer_tf.reproduce.runs import (
    CHECKPOINT_EVALS,
    find_runs,
    read_run,
    record_checkpoint_eval,
)

SCRIPTS = Path(__file__).resolve().parents[1] / 'scripts'


def script(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_run(path, blocks, task, seed=0, evals=(), exact=(), last_step=None, overrides=None,
             torn=False, exact_policy='mode'):
    """A run directory as the training loop leaves it: config.yaml and metrics.jsonl."""
    path.mkdir(parents=True)
    config = load_config(blocks, {'task': task, 'seed': seed, 'logdir': str(path),
                                  **(overrides or {})})
    config.save(path / 'config.yaml')
    lines = [{'step': step, 'time': 0.0, 'eval_return': value, 'eval_return_std': 1.0}
             for step, value in evals]
    if last_step is not None:
        lines.append({'step': last_step, 'time': 0.0, 'episode_return': 1.0})
    with open(path / 'metrics.jsonl', 'w') as file:
        file.writelines(json.dumps(line) + '\n' for line in lines)
        if torn:
            file.write('{"step": 99999, "eval_ret')  # a line cut short by kill -9
    for step, returns in exact:
        record_checkpoint_eval(path, step, returns, policy=exact_policy)
    return path


def table_row(text, *cells):
    """The markdown table line that starts with `cells`."""
    start = '| ' + ' | '.join(cells) + ' |'
    rows = [line for line in text.splitlines() if line.startswith(start)]
    assert len(rows) == 1, (start, text)
    return [cell.strip() for cell in rows[0].strip('|').split('|')]


# ---------------------------------------------------------------- reference data


# A primary source: a paper by its arXiv id, or an authors' file pinned to a commit.
ARXIV = re.compile(r'arXiv \d{4}\.\d{4,5}')
PINNED_FILE = re.compile(r'github\.com/[\w.-]+/[\w.-]+@[0-9a-f]{40} \S+')
# Never notes kept outside the repository, which users do not have.
OUTSIDE_NOTES = re.compile(r'REFERENCE\.md|shared[/]')


def test_every_benchmark_loads_with_primary_sources():
    names = reference.names()
    assert {'dmc_proprio100k', 'dmc_vision100k', 'dmc_vision500k', 'atari100k', 'crafter',
            'dmc_dreamingv2'} <= set(names)
    for name in names:
        benchmark = reference.load(name)
        assert benchmark.entries and benchmark.checkpoints
        for entry in benchmark.entries.values():
            assert ARXIV.search(entry.source) or PINNED_FILE.search(entry.source), entry.source
            assert not OUTSIDE_NOTES.search(entry.source)
            assert entry.scores
            assert isinstance(entry.verified, bool)
            if not entry.verified:  # the report's Sources section says so
                assert 'Not checked' in entry.note, entry
        if benchmark.baselines:
            assert PINNED_FILE.search(benchmark.baselines_source)
    unverified = {(name, algo) for name in names
                  for algo, entry in reference.load(name).entries.items() if not entry.verified}
    assert {name for name, _ in unverified} == {'dmc_dreamingv2'}
    # Comments and docstrings too cite papers and the authors' files only.
    for path in reference.DIRECTORY.glob('*'):
        if path.is_file():
            assert not OUTSIDE_NOTES.search(path.read_text()), path


def test_reference_data_requires_a_verified_flag(tmp_path):
    text = (reference.DIRECTORY / 'crafter.yaml').read_text()
    path = tmp_path / 'bad.yaml'
    path.write_text(text.replace('    verified: true\n', '', 1))
    missing = "bad.yaml: dreamerv3: missing 'verified'"
    with pytest.raises(reference.ReferenceDataError, match=missing):
        reference._read_file(path)
    path.write_text(text.replace('verified: true', 'verified: yes please', 1))
    with pytest.raises(reference.ReferenceDataError, match='verified must be true or false'):
        reference._read_file(path)


def test_reference_numbers_match_the_published_tables():
    # Pinned from the primary source each entry names: CURL (arXiv 2004.04136) Table 1,
    # the DreamerV2/V3 score files (a run's point at the checkpoint, else its latest point
    # before; mean over seeds), the Crafter README's scoreboard and dqn_zoo's atari_data.py.
    vision = reference.load('dmc_vision500k')
    assert vision.entry('dreamerv1').scores['walker_walk'][100000] == reference.Score(277, 12)
    assert vision.entry('planet').scores['reacher_easy'][500000] == reference.Score(210, 390)
    assert vision.entry('planet').protocol.action_repeat_for('cartpole_swingup') == 8
    assert vision.entry('dreamerv2').scores['cheetah_run'][100000].mean == 332  # 90k point
    assert vision.entry('dreamerv2').scores['cheetah_run'][500000].mean == 592  # 480k point
    assert vision.entry('dreamerv3').scores['ball_in_cup_catch'][100000].mean == 643
    assert vision.entry('dreamerv3').scores['ball_in_cup_catch'][500000].mean == 883
    assert vision.entry('dreamerv3').aggregates['task_mean'].scores[500000].mean == 595
    assert len(vision.entry('dreamerv3').aggregates['task_mean'].tasks) == 20
    assert vision.entry('dreamerv3').protocol.seeds == 5
    proprio = reference.load('dmc_proprio500k')
    assert proprio.entry('dreamerv3').scores['reacher_easy'][100000].mean == 693
    assert proprio.entry('dreamerv3').scores['walker_walk'][500000].mean == 881  # 490k point
    assert proprio.entry('dreamerv3').aggregates['task_mean'].scores[100000].mean == 456
    assert proprio.entry('dreamerv3').aggregates['task_mean'].scores[500000].mean == 758
    atari = reference.load('atari100k')
    assert atari.entry('dreamerv3').scores['ms_pacman'][400000].mean == 1388
    assert atari.entry('dreamerv3').aggregates['human_normalized_mean'].scores[400000].mean == 1.10
    assert len(atari.baselines) == 26
    assert atari.baselines['pong'] == {'random': -20.7, 'human': 14.6}
    crafter = reference.load('crafter')
    assert crafter.entry('dreamerv3').scores['reward'][1000000] == reference.Score(14.5, 1.6)
    assert crafter.entry('random').scores['reward'][1000000] == reference.Score(1.6, 0.0)
    assert len(crafter.achievements) == 22
    dreaming = reference.load('dmc_dreamingv2')
    assert dreaming.entry('dreamingv2').scores['reacher_hard'][reference.FINAL].mean == 598


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(reference.ReferenceDataError) as error:
        reference.load('dmc100k')
    assert 'Did you mean' in str(error.value) and 'dmc_proprio100k' in str(error.value)
    assert 'atari100k, crafter' in str(error.value)
    benchmark = reference.load('dmc_proprio100k')
    valid = 'Valid algorithms in benchmark dmc_proprio100k: dreamerv3'
    with pytest.raises(reference.ReferenceDataError, match=valid):
        benchmark.check_algo('dreamerv9')
    with pytest.raises(reference.ReferenceDataError, match='cartpole_swingup, cheetah_run'):
        launch.check_tasks(benchmark, 'dreamerv3', ['cartpole_balance'])


def test_a_malformed_protocol_names_file_and_field(tmp_path):
    text = (reference.DIRECTORY / 'dmc_proprio.yaml').read_text()
    assert 'eval_policy: sample' in text
    path = tmp_path / 'bad.yaml'
    path.write_text(text.replace('eval_policy: sample', 'eval_policy: greedy'))
    with pytest.raises(reference.ReferenceDataError,
                       match=r"bad.yaml: dreamerv3: protocol: eval_policy must be one of "
                             r"\('mode', 'sample', 'sample_latent'\) or null, got 'greedy'"):
        reference._read_file(path)


# ---------------------------------------------------------------- scores


def test_human_normalized_score_by_hand():
    # (agent - random) / (human - random) with dqn_zoo's Pong and Breakout scores.
    assert scores.human_normalized(18, -20.7, 14.6) == pytest.approx(38.7 / 35.3)
    assert scores.human_normalized(19, 1.7, 30.5) == pytest.approx(17.3 / 28.8)
    assert scores.human_normalized(-20.7, -20.7, 14.6) == 0
    with pytest.raises(ValueError):
        scores.human_normalized(1, 5, 5)


def test_crafter_score_by_hand():
    assert scores.crafter_score([10.0] * 22) == pytest.approx(10.0)
    assert scores.crafter_score([0.0] * 22) == 0
    rates = [100.0, 100.0, 50.0] + [0.0] * 19
    # exp((2 ln 101 + ln 51) / 22) - 1
    assert scores.crafter_score(rates) == pytest.approx(0.81904, abs=1e-4)
    with pytest.raises(ValueError):
        scores.crafter_score([0.5, 101.0])


def test_crafter_success_rates_count_unlocks_within_the_budget():
    names = ['collect_wood', 'wake_up']
    episodes = [
        {'length': 100, 'achievement_collect_wood': 3, 'achievement_wake_up': 0},
        {'length': 100, 'achievement_collect_wood': 0, 'achievement_wake_up': 1},
        {'length': 100, 'achievement_collect_wood': 1, 'achievement_wake_up': 0},
        {'length': 100, 'achievement_collect_wood': 1, 'achievement_wake_up': 1},
    ]
    rates, count, steps = scores.crafter_success_rates(episodes, names)
    assert rates == {'collect_wood': 75.0, 'wake_up': 50.0} and (count, steps) == (4, 400)
    # The fourth episode ends after 400 > 350 steps: left out, as in the Crafter analysis.
    rates, count, steps = scores.crafter_success_rates(episodes, names, budget=350)
    assert rates['collect_wood'] == pytest.approx(200 / 3) and (count, steps) == (3, 300)
    with pytest.raises(ValueError, match='lack'):
        scores.crafter_success_rates([{'length': 1}], names)


def test_sigma_difference_uses_the_paper_std_else_ours():
    assert scores.sigma_difference(300, 314, 155, None) == (pytest.approx(-14 / 155), 'paper')
    # PlaNet's ball_in_cup 100k is 0 ± 0: divide by our spread over seeds.
    assert scores.sigma_difference(20, 0, 0, 10) == (2.0, 'ours')
    value, why = scores.sigma_difference(500, 528, None, None)
    assert value is None and 'one seed' in why
    assert scores.mean_std([1.0]) == (1.0, None)
    assert scores.mean_std([1.0, 3.0]) == (2.0, 1.0)


# ---------------------------------------------------------------- run directories


def test_runs_skip_torn_lines_and_prefer_exact_checkpoint_evals(tmp_path):
    run = make_run(tmp_path / 'run', ['dreamerv3', 'dmc_proprio'], 'dmc_reacher_easy',
                   evals=[(1000, 5.0), (91000, 600.0)], last_step=100000, torn=True,
                   exact=[(100000, [700.0, 720.0])])
    run = read_run(run)
    assert [e.step for e in run.evals] == [1000, 91000, 100000]
    assert run.eval_at(100000).mean == 710.0 and run.eval_at(100000).checkpoint == 100000
    assert run.eval_at(95000).mean == 600.0 and run.eval_at(500) is None
    # With several envs the loop's last iteration can step past the checkpoint.
    record_checkpoint_eval(run.path, 100006, [1.0, 3.0], checkpoint=100000)
    records = read_jsonl(run.path / CHECKPOINT_EVALS)
    assert len(records) == 1 and records[0]['eval_return'] == 2.0
    assert records[0]['eval_return_std'] == 1.0 and records[0]['episodes'] == 2
    assert (records[0]['step'], records[0]['checkpoint']) == (100006, 100000)
    assert not list(run.path.glob('.*.tmp'))
    value = report.value_at(reference.load('dmc_proprio100k'), read_run(run.path), 100000)
    assert (value.value, value.step, value.status) == (2.0, 100006, 'exact')
    assert 'end of the loop iteration that reached 100,000' in value.note


def test_evaluation_policy_is_compared_per_scored_evaluation(tmp_path):
    """The policy recorded with each checkpoint evaluation (the run's config for the
    loop's own), not the run's current setting, is compared with the paper's."""
    benchmark = reference.load('dmc_proprio100k')
    blocks = ['dreamerv3', 'dmc_proprio']
    # Trained with modes, its 100k checkpoint re-scored with sampled actions.
    make_run(tmp_path / 'a', blocks, 'dmc_reacher_easy', evals=[(96000, 5.0)],
             last_step=100000, exact=[(100000, [600.0])], exact_policy='sample',
             overrides={'run.eval_policy': 'mode'})
    run = read_run(tmp_path / 'a')
    assert [e.policy for e in run.evals] == ['mode', 'sample']
    assert read_jsonl(run.path / CHECKPOINT_EVALS)[0]['policy'] == 'sample'
    assert [e.episodes for e in run.evals] == [10, 1]  # the config's run.eval_episodes, recorded
    found, _ = report.deviations(benchmark, 'dreamerv3', 'reacher_easy', [run])
    assert not any(line.startswith('evaluation policy') for line in found)
    # A record written before the policy was recorded was scored with modes.
    make_run(tmp_path / 'b', blocks, 'dmc_reacher_easy', last_step=100000,
             exact=[(100000, [600.0])])
    lines = read_jsonl(tmp_path / 'b' / CHECKPOINT_EVALS)
    del lines[0]['policy']
    (tmp_path / 'b' / CHECKPOINT_EVALS).write_text(json.dumps(lines[0]) + '\n')
    found, _ = report.deviations(benchmark, 'dreamerv3', 'reacher_easy',
                                 [read_run(tmp_path / 'b')])
    assert 'evaluation policy: ours mode, paper sample (latent and action sampled)' in found
    # The loop logs its policy and episodes with each evaluation; a resume may change both.
    make_run(tmp_path / 'l', blocks, 'dmc_reacher_easy', last_step=100000)
    with open(tmp_path / 'l' / 'metrics.jsonl', 'a') as file:
        file.write(json.dumps({'step': 100000, 'eval_return': 3.0, 'eval_episodes': 4.0,
                               'eval_sampled': 1.0}) + '\n')
    item = read_run(tmp_path / 'l').evals[-1]
    assert (item.policy, item.episodes) == ('sample', 4)
    # Where the reference states no policy, it is listed as not checked.
    dreaming = reference.load('dmc_dreamingv2')
    make_run(tmp_path / 'c', ['dreamerv2', 'dmc_vision'], 'dmc_reacher_easy',
             evals=[(5000, 1.0)])
    _, unverified = report.deviations(dreaming, 'dreamerv2', 'reacher_easy',
                                      [read_run(tmp_path / 'c')])
    assert ("evaluation policy: ours sample_latent, paper's not stated in the reference data"
            in unverified)


def test_config_differences_are_computed_from_the_config():
    paper = load_config(['dreamerv3', 'dmc_proprio']).flat()
    ours = load_config(['dreamerv3', 'dmc_proprio', 'cpu'], {'seed': 3}).flat()
    found, unchecked = protocol.differences(ours, paper)
    assert found[0].startswith('model size XS, paper S (')
    assert 'rssm.deter 256 vs 512' in found[0]
    assert 'run.train_ratio: ours 64.0, paper 512.0' in found
    assert 'run.batch_length: ours 32, paper 64' in found
    assert not any(line.startswith(('seed', 'run.eval_episodes')) for line in found)
    assert unchecked == []
    del ours['rssm.unimix']
    assert 'rssm.unimix' in protocol.differences(ours, paper)[1][0]
    assert protocol.differences(paper, paper) == ([], [])


# ---------------------------------------------------------------- the report


def test_report_table_deviations_and_plot(tmp_path):
    benchmark = reference.load('dmc_proprio100k')
    cpu = ['dreamerv3', 'dmc_proprio', 'cpu']
    make_run(tmp_path / 'a', cpu, 'dmc_reacher_easy', seed=0,
             evals=[(1000, 3.0), (96000, 600.0)], last_step=100000,
             exact=[(100000, [650.0, 670.0])])
    make_run(tmp_path / 'b', cpu, 'dmc_reacher_easy', seed=1,
             evals=[(1000, 4.0), (96000, 500.0)], last_step=100000)
    make_run(tmp_path / 'c', cpu, 'dmc_cartpole_swingup', seed=0,
             evals=[(1000, 20.0), (41000, 150.0)], last_step=45000)
    # A second run of seed 1 that got less far is not a third sample.
    make_run(tmp_path / 'd', cpu, 'dmc_reacher_easy', seed=1,
             evals=[(1000, 900.0)], last_step=2000)
    path = report.build(benchmark, find_runs([tmp_path]), tmp_path / 'out', command='cmd')
    text = path.read_text()

    # Seed 0 uses its exact evaluation at 100k (660), seed 1 its latest before (500).
    row = table_row(text, 'dreamerv3', 'reacher_easy', '100,000')
    assert row[3] == '580.0 ± 80.0 (n=2)'
    assert row[4] == '693.0' and row[5] == '-113.0'
    # The paper gives no std here: Δσ divides by our std over seeds, (580 - 693) / 80.
    assert row[6] == f'{-113 / 80:+.2f} (in our std over seeds)'
    assert 'evaluated at 96,000, not at 100,000' in row[7]
    row = table_row(text, 'dreamerv3', 'cartpole_swingup', '100,000')
    assert row[3] == '150.0 (n=1)' and row[5] == '-378.0' and row[6] == '—'
    assert 'run at 45,000 of 100,000 steps; latest evaluation at 41,000' in row[7]
    assert 'one seed' in row[7]

    assert "Not the paper's protocol" in text
    assert 'model size XS, paper S' in text
    assert '- run.train_ratio: ours 64.0, paper 512.0' in text
    assert '- run.batch_length: ours 32, paper 64' in text
    # The score file holds 5 seeds per task.
    assert '- seeds: ours 2 (0, 1), paper 5' in text
    # Seed 0's 100k checkpoint evaluation played 2 episodes; seed 1's loop evaluation 5.
    assert "evaluation episodes: ours 2, paper's not stated in the reference data [a]" in text
    assert "evaluation episodes: ours 5, paper's not stated in the reference data [b]" in text
    assert '- evaluation policy: ours mode, paper sample (latent and action sampled)' in text
    assert f'{tmp_path / "d"}: same algorithm, task and seed' in text
    row = table_row(text, 'dreamerv3', "mean over the paper's DMC proprio tasks")
    assert row[3] == f'{(580 + 150) / 2:.1f}' and row[6].startswith('no:')
    png = (tmp_path / 'out' / 'curves.png').read_bytes()
    assert png.startswith(b'\x89PNG') and len(png) > 5000


def test_report_on_the_papers_preset_has_no_config_deviation(tmp_path):
    benchmark = reference.load('dmc_proprio100k')
    make_run(tmp_path / 'r', ['dreamerv3', 'dmc_proprio'], 'dmc_walker_walk',
             evals=[(100000, 475.0)],
             overrides={'run.eval_every': 10000, 'run.eval_policy': 'sample'})
    text = report.build(benchmark, find_runs([tmp_path / 'r']), tmp_path / 'out').read_text()
    section = text.split('### dreamerv3 on walker_walk')[1].split('Not checked')[0]
    # The config matches the paper's; only the seed count (1 of the paper's 5) differs.
    assert [line for line in section.splitlines() if line.startswith('- ')] == [
        '- seeds: ours 1 (0), paper 5']
    row = table_row(text, 'dreamerv3', 'walker_walk', '100,000')
    assert row[5] == '+0.0'


def test_report_atari_human_normalized(tmp_path):
    benchmark = reference.load('atari100k')
    for seed, value in ((0, 10.0), (1, 20.0)):
        make_run(tmp_path / f'pong{seed}', ['dreamerv3'], 'atari_pong', seed=seed,
                 evals=[(400000, value)])
    text = report.build(benchmark, find_runs([tmp_path]), tmp_path / 'out').read_text()
    row = table_row(text, 'dreamerv3', 'pong', '400,000')
    # Mean of the seeds' normalised scores: ((10 + 20.7) + (20 + 20.7)) / 2 / 35.3.
    assert row[7] == f'{(30.7 + 40.7) / 2 / 35.3:.2f}'
    assert row[8] == f'{38.7 / 35.3:.2f}'
    row = table_row(text, 'dreamerv3', 'mean human-normalised score over the 26 games')
    assert row[3] == f'{(30.7 + 40.7) / 2 / 35.3:.2f}' and row[5] == '1.10'
    assert row[6] == 'no: 25 of the 26 tasks missing'


def test_report_crafter_score_from_episode_stats(tmp_path):
    benchmark = reference.load('crafter')
    run = make_run(tmp_path / 'crafter', ['dreamerv3'], 'crafter_reward', evals=[(5000, 2.0)])
    unlocked = {'collect_wood': 2, 'wake_up': 1}  # in every episode; the other 20 never
    episodes = [{'length': 250, 'reward': 1.0,
                 **{f'achievement_{name}': unlocked.get(name, 0)
                    for name in benchmark.achievements}} for _ in range(4)]
    (run / 'stats.jsonl').write_text(''.join(json.dumps(e) + '\n' for e in episodes))
    text = report.build(benchmark, find_runs([run]), tmp_path / 'out').read_text()
    row = table_row(text, 'dreamerv3', 'reward', '1,000,000')
    expected = math.exp(2 * math.log(101) / 22) - 1
    assert row[3] == f'{expected:.1f} (n=1)' and row[4] == '14.5 ± 1.6'
    assert '4 episodes, 1,000 of 1,000,000 steps' in row[7]
    assert '| collect_wood | 100.0 |' in text and '| collect_diamond | 0.0 |' in text


def test_final_checkpoint_uses_the_last_evaluation(tmp_path):
    benchmark = reference.load('dmc_dreamingv2')
    make_run(tmp_path / 'r', ['dreamerv1', 'dmc_vision'], 'dmc_reacher_easy',
             evals=[(5000, 100.0), (20000, 300.0)])
    text = report.build(benchmark, find_runs([tmp_path]), tmp_path / 'out').read_text()
    row = table_row(text, 'dreamerv1', 'reacher_easy', 'final')
    assert row[3] == '300.0 (n=1)' and row[4] == '658.0'
    assert 'paper budget not stated' in row[7]


# ---------------------------------------------------------------- launching and scripts


def test_train_commands_follow_the_protocol_and_resume(tmp_path):
    benchmark = reference.load('dmc_proprio500k')
    stages = launch.pending(benchmark, 'dreamerv3', ['reacher_easy', 'cartpole_swingup'], [0],
                            tmp_path)
    assert [(s.task, s.steps) for s in stages] == [
        ('reacher_easy', 100000), ('cartpole_swingup', 100000),
        ('reacher_easy', 500000), ('cartpole_swingup', 500000)]
    command = stages[0].train
    assert command[1:4] == ('-m', 'dreamer_tf', 'train')
    assert command[4:8] == ('--configs', 'dreamerv3', 'dmc_proprio', '--task')
    assert command[-4:] == ('--run.train_ratio', '512.0', '--run.eval_policy', 'sample')
    assert stages[0].logdir == tmp_path / 'dreamerv3_reacher_easy_s0'
    assert stages[0].evaluate[-3:] == (str(stages[0].logdir), '--checkpoint', '100000')
    # The user's blocks and overrides win over the protocol's stated settings.
    cpu = launch.train_command(benchmark, 'dreamerv3', 'reacher_easy', 0, tmp_path, 100000,
                               ['cpu'], ['--run.eval_every', '10000'])
    assert '--run.train_ratio' not in cpu and cpu[-2:] == ('--run.eval_every', '10000')
    assert cpu[-4:-2] == ('--run.eval_policy', 'sample')
    assert cpu[4:8] == ('--configs', 'dreamerv3', 'dmc_proprio', 'cpu')
    # A stage whose checkpoint evaluation exists is done; calling again resumes after it.
    make_run(stages[0].logdir, ['dreamerv3', 'dmc_proprio'], 'dmc_reacher_easy',
             last_step=100000, exact=[(100000, [1.0])])
    assert [(s.task, s.steps) for s in launch.pending(
        benchmark, 'dreamerv3', ['reacher_easy', 'cartpole_swingup'], [0], tmp_path)] == [
        ('cartpole_swingup', 100000), ('reacher_easy', 500000), ('cartpole_swingup', 500000)]
    planet = reference.load('dmc_vision100k')
    command = launch.train_command(planet, 'planet', 'cartpole_swingup', 0, tmp_path, 100000)
    # PlaNet's 100 updates per 1000 env steps: every 125 policy steps at action repeat 8.
    assert command[-4:] == ('--env.action_repeat', '8', '--run.train_every', '125')
    reacher = launch.train_command(planet, 'planet', 'reacher_easy', 0, tmp_path, 100000)
    assert reacher[-4:] == ('--env.action_repeat', '4', '--run.train_every', '250')
    dreamer = launch.train_command(planet, 'dreamerv1', 'cartpole_swingup', 0, tmp_path, 100000)
    assert dreamer[-2:] == ('--env.action_repeat', '2')
    with pytest.raises(ValueError, match='--steps'):
        launch.budgets(reference.load('dmc_dreamingv2'))
    assert launch.budgets(reference.load('dmc_dreamingv2'), 20000) == [20000]
    with pytest.raises(ValueError, match='only for benchmarks'):
        launch.budgets(benchmark, 1000)


def test_reproduce_script(tmp_path, capsys):
    reproduce = script('reproduce')
    with pytest.raises(SystemExit, match='Valid benchmarks: atari100k'):
        reproduce.main(['dmc100k', '--outdir', str(tmp_path), '--algo', 'dreamerv3'])
    valid = 'Valid tasks with a published dreamerv3 score in dmc_proprio100k: cartpole_swingup'
    with pytest.raises(SystemExit, match=valid):
        reproduce.main(['dmc_proprio100k', '--outdir', str(tmp_path), '--algo', 'dreamerv3',
                        '--tasks', 'cartpole_swing'])
    with pytest.raises(SystemExit, match='unknown config key'):
        reproduce.main(['dmc_proprio100k', '--outdir', str(tmp_path), '--algo', 'dreamerv3',
                        '--run.stepz', '5', '--dry-run'])
    assert reproduce.main(['dmc_proprio100k', '--outdir', str(tmp_path), '--algo', 'dreamerv3',
                           '--tasks', 'walker_walk', '--configs', 'cpu', '--dry-run']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and '--configs dreamerv3 dmc_proprio cpu' in lines[0]
    assert 'dreamer_tf.reproduce.evaluate' in lines[1]
    make_run(tmp_path / 'old', ['dreamerv3', 'dmc_proprio'], 'dmc_walker_walk',
             evals=[(50000, 300.0)])
    assert reproduce.main(['dmc_proprio100k', '--report-only', '--outdir', str(tmp_path),
                           '--report-dir', str(tmp_path / 'rep')]) == 0
    assert (tmp_path / 'rep' / 'report.md').is_file()
    assert (tmp_path / 'rep' / 'curves.png').is_file()


def test_plot_script(tmp_path, capsys):
    for seed in (0, 1):
        make_run(tmp_path / f'r{seed}', ['dreamerv3', 'dmc_proprio'], 'dmc_walker_walk',
                 seed=seed, evals=[(1000, 10.0 + seed), (6000, 50.0), (11000, 80.0 - seed)])
    plot = script('plot')
    out = tmp_path / 'curves.png'
    assert plot.main([str(tmp_path), '--out', str(out)]) == 0
    assert out.read_bytes().startswith(b'\x89PNG')
    assert '2 runs, 1 tasks' in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no run has 'nonsense'"):
        plot.main([str(tmp_path), '--metric', 'nonsense', '--out', str(out)])
    with pytest.raises(SystemExit, match='neither a run directory'):
        plot.main([str(tmp_path / 'missing')])


def test_mean_and_spread_over_seeds_on_common_steps():
    from dreamer_tf.reproduce.plots import mean_and_spread

    grid, mean, std = mean_and_spread([([0, 10, 20], [0, 10, 20]), ([5, 15, 25], [10, 10, 10])])
    assert list(grid) == [5, 10, 15, 20]
    assert list(mean) == [7.5, 10.0, 12.5, 15.0]
    assert list(std) == [2.5, 0.0, 2.5, 5.0]


def test_report_and_plot_do_not_import_tensorflow():
    # In a fresh interpreter: the test session may have imported TensorFlow elsewhere.
    code = ('import sys, runpy; import dreamer_tf.reproduce.report, dreamer_tf.reproduce.launch; '
            f'runpy.run_path({str(SCRIPTS / "plot.py")!r}); '
            f'runpy.run_path({str(SCRIPTS / "reproduce.py")!r}); '
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    subprocess.run([sys.executable, '-c', code], check=True)


@pytest.mark.slow
def test_end_to_end_training_stages_and_checkpoint_evaluation(tmp_path):
    """Two stages of a tiny run through train.py and the checkpoint evaluator."""
    entry = reference.Entry(
        algo='dreamerv3', label='DreamerV3', source='test', statistic='mean', note=None,
        protocol=reference.Protocol('env steps', None, 2, None, ('dreamerv3', 'gym', 'debug')),
        scores={'CartPole-v1': {300: reference.Score(100.0, 10.0)}}, aggregates={})
    benchmark = reference.Benchmark(
        name='tiny', description='CartPole, two checkpoints', steps=300, checkpoints=(150, 300),
        suite='gym', task_prefix='gym_', metric='return', units='return', normalization=None,
        entries={'dreamerv3': entry}, baselines={}, baselines_source=None, achievements=(),
        file=Path('tiny.yaml'))
    stages = launch.pending(benchmark, 'dreamerv3', ['CartPole-v1'], [0], tmp_path)
    assert [s.steps for s in stages] == [150, 300]
    assert not script('reproduce').train(stages)
    run = read_run(tmp_path / 'dreamerv3_CartPole-v1_s0')
    made = [(e.step, e.checkpoint) for e in run.evals if e.checkpoint is not None]
    assert made == [(150, 150), (300, 300)]
    assert read_jsonl(run.path / CHECKPOINT_EVALS)[0]['episodes'] == 2
    loop = [r for r in read_jsonl(run.path / 'metrics.jsonl') if 'eval_return' in r]
    assert loop and all(r['eval_sampled'] == 0.0 and r['eval_episodes'] >= 1 for r in loop)
    assert launch.pending(benchmark, 'dreamerv3', ['CartPole-v1'], [0], tmp_path) == []
    text = report.build(benchmark, [run], tmp_path / 'out').read_text()
    row = table_row(text, 'dreamerv3', 'CartPole-v1', '300')
    assert row[4] == '100.0 ± 10.0' and 'evaluated at' not in row[7]
