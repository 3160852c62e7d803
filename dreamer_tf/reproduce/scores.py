"""Scores as the papers define them, and the statistics of the comparison table.

Definitions (docs/reproduce.md states them with their sources):
- human-normalised score: (agent - random) / (human - random), per game;
- Crafter score: exp(mean_i ln(1 + s_i)) - 1 over the success rates s_i (percent)
  of all achievements, where s_i is the share of episodes that unlocked
  achievement i at least once (Hafner 2021; danijar/crafter analysis/common.py);
- spread over seeds: population standard deviation (ddof 0, as numpy's default and
  the Crafter analysis code's np.nanstd), reported only with two or more seeds;
- difference in standard deviations: (ours - paper) / paper's std where the paper
  reports a positive std, else / our std over seeds where that is defined and positive.
"""

import numpy as np


def human_normalized(score, random, human):
    """(score - random) / (human - random): 0 is the random policy, 1 the human tester."""
    if human == random:
        raise ValueError(f'human and random scores are equal ({human}): no normalisation')
    return (score - random) / (human - random)


def crafter_success_rates(episodes, achievements, budget=None):
    """Percent of episodes in which each achievement was unlocked at least once.

    `episodes` are Crafter's per-episode stats records (crafter.Recorder's
    stats.jsonl: 'length' and 'achievement_<name>' counts), in order. As in the
    Crafter paper's analysis code, only episodes that ended within `budget` env
    steps count. Returns (rates by achievement, number of episodes, env steps used).
    """
    used, steps = [], 0
    for episode in episodes:
        if budget is not None and steps + episode['length'] > budget:
            break
        steps += episode['length']
        used.append(episode)
    if not used:
        raise ValueError('no finished Crafter episodes within the budget')
    rates = {}
    for name in achievements:
        key = f'achievement_{name}'
        missing = sum(key not in episode for episode in used)
        if missing:
            raise ValueError(f'{missing} of {len(used)} episodes lack {key!r}')
        rates[name] = 100.0 * np.mean([episode[key] >= 1 for episode in used])
    return rates, len(used), steps


def crafter_score(rates):
    """Geometric mean of success rates (percent) with an offset of 1%, in percent."""
    values = np.asarray(list(rates.values()) if isinstance(rates, dict) else rates, float)
    if values.size == 0 or (values < 0).any() or (values > 100).any():
        raise ValueError(f'success rates must be percentages in [0, 100], got {values}')
    return float(np.exp(np.mean(np.log1p(values))) - 1)


def mean_std(values):
    """Mean and spread over seeds; the spread is None for fewer than two seeds."""
    values = np.asarray(values, float)
    if values.size == 0:
        raise ValueError('no values')
    std = float(np.std(values)) if values.size >= 2 else None
    return float(np.mean(values)), std


def sigma_difference(ours, paper_mean, paper_std, our_std):
    """(ours - paper) in standard deviations, and which deviation divides it.

    Returns (value, 'paper' | 'ours') or (None, reason). The paper's spread is the
    yardstick where it reports one; a reported std of 0 (e.g. a task no seed
    solved) cannot be divided by, so our spread over seeds is used instead.
    """
    if paper_std is not None and paper_std > 0:
        return (ours - paper_mean) / paper_std, 'paper'
    if our_std is not None and our_std > 0:
        return (ours - paper_mean) / our_std, 'ours'
    if paper_std is None and our_std is None:
        return None, 'no spread: the paper reports none and we have one seed'
    return None, 'no spread: zero or missing on both sides'
