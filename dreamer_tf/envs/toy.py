"""Toy control tasks for learning checks that finish in minutes on a CPU.

`reach`: a point on the line [-1, 1] starts at 0 and must reach a goal drawn
uniformly from [-1, 1] at every reset. The observation is the ``vector``
(position, goal); the action, continuous in [-1, 1], moves the point by
0.2 * action (clipped to the line). The reward is 1 - |position - goal| after
the move, so every step until the goal is reached costs reward: a policy has
to infer the direction from the goal's sign and hold still once there.
Episodes last 20 steps and end by time limit, never by termination.
`reach_discrete` is the same with three actions: left, stay, right.

What fixed policies return over an episode (`reference_returns`, exact
expectations over the goal, computed in closed form below):
- the optimum (full speed towards the goal, then stay): 19.4;
- doing nothing (action 0): 10.0;
- uniform random actions: 8.7 (continuous), 7.8 (discrete), by Monte Carlo;
- a saturated action (always +1 or always -1): 1.4. An actor that
  saturates early, DreamerV1's failure mode on cartpole_balance
  (docs/learning_checks.md), scores far below random here.
A run that learns ends near the optimum; its distance from it is the check.
"""

import numpy as np

from dreamer_tf.envs.base import (
    ActSpace,
    Space,
    TaskError,
    box_action_spec,
    discrete_action_spec,
    discrete_index,
    ensure_running,
    transition,
)

TASKS = ('reach', 'reach_discrete')
LENGTH = 20
SPEED = 0.2
# Per-episode returns of fixed policies by task (docstring; checked by tests/test_toy.py).
FIXED_POLICY_RETURNS = {
    'toy_reach': {'optimal': 19.4, 'zero action': 10.0, 'random': 8.7, 'saturated': 1.4},
    'toy_reach_discrete': {'optimal': 19.4, 'stay': 10.0, 'random': 7.8, 'saturated': 1.4},
}


def optimal_return(goal):
    """Return of moving at full speed towards `goal` from 0, then staying."""
    return _policy_return(goal, lambda position: np.clip(goal - position, -SPEED, SPEED))


def saturated_return(goal, direction=1.0):
    return _policy_return(goal, lambda position: SPEED * direction)


def _policy_return(goal, move):
    position, total = 0.0, 0.0
    for _ in range(LENGTH):
        position = np.clip(position + move(position), -1.0, 1.0)
        total += 1.0 - abs(position - goal)
    return total


def reference_returns(points=2001):
    """Expected returns of the optimal and the saturated policy (goal ~ U[-1, 1]).

    Both are piecewise-smooth in the goal, so a fine midpoint grid gives them
    to well below 0.01.
    """
    goals = -1.0 + (np.arange(points) + 0.5) * 2.0 / points
    return {
        'optimal': float(np.mean([optimal_return(g) for g in goals])),
        'saturated': float(np.mean([saturated_return(g) for g in goals])),
    }


def check_task(task):
    """Raises TaskError, naming the valid tasks, unless `task` is one of `TASKS`."""
    if task not in TASKS:
        raise TaskError(f'Unknown toy task {task!r}: valid tasks (toy_<task>): {TASKS}.')


class Reach:
    """The `reach` task (module docstring); `discrete` selects left/stay/right actions."""

    def __init__(self, task='reach', *, seed=0):
        check_task(task)
        self._discrete = task == 'reach_discrete'
        self._rng = np.random.default_rng(seed)
        self.act_space = ActSpace(True, 3) if self._discrete else ActSpace(False, 1)
        self.action_spec = (discrete_action_spec(3) if self._discrete
                            else box_action_spec([-1.0], [1.0]))
        self.obs_space = {'vector': Space((2,), np.float32)}
        self._position = self._goal = 0.0
        self._steps = 0
        self._done = True

    def reset(self):
        self._position = 0.0
        self._goal = float(self._rng.uniform(-1.0, 1.0))
        self._steps = 0
        self._done = False
        return transition(self._observe(), is_first=True)

    def step(self, action):
        ensure_running(self._done)
        if self._discrete:
            move = discrete_index(action, 3) - 1.0
        else:
            action = np.asarray(action, np.float64).reshape(-1)
            if action.shape != (1,):
                raise ValueError(f'reach takes one action value, got shape {action.shape}.')
            move = float(np.clip(action[0], -1.0, 1.0))
        self._position = float(np.clip(self._position + SPEED * move, -1.0, 1.0))
        self._steps += 1
        self._done = self._steps >= LENGTH
        reward = 1.0 - abs(self._position - self._goal)
        return transition(self._observe(), reward, is_last=self._done)

    def close(self):
        pass

    def _observe(self):
        return {'vector': np.array([self._position, self._goal], np.float32)}
