"""Run an exported policy in the env it was trained in, with the runtime alone:

    python -m dreamer_tf_runtime.serve exported/policy.onnx --episodes 5

The env is rebuilt from the model's metadata (task, action repeat, time limit,
seed) with gymnasium or dm_control, whichever the task needs, installed beside the
runtime; the policy reads the env's own observations and returns the env's own
actions (`Policy.act`). Prints the returns as JSON. gymnasium (`gym_` tasks) and
dm_control (`dmc_` tasks) only: the other suites' envs have dreamer_tf's own action
sets and episode rules, so they are served by `dreamer-tf serve`.
"""

import argparse
import importlib
import inspect
import json
import math
import sys

from dreamer_tf_runtime.metadata import MetadataError
from dreamer_tf_runtime.policy import Policy


class GymEnv:
    """A gymnasium env as dreamer_tf trained on it: `reset() -> obs`, `step(action) ->
    (obs, reward, done)`, with its action repeat (rewards summed) and time limit."""

    def __init__(self, name, seed, repeat=1, limit=0, imports=(), pixels=False):
        import gymnasium

        for module in imports:
            importlib.import_module(module)
        kwargs = {'render_mode': 'rgb_array'} if pixels else {}
        module, sep, attr = name.rpartition(':')
        # As dreamer_tf's gym adapter: `module:EnvId` imports the module first, and
        # `module:callable` calls it (with seed= where it takes it).
        loaded = importlib.import_module(module) if sep else None
        if loaded is None or attr in gymnasium.registry:
            self.env = gymnasium.make(attr if sep else name, **kwargs)
        else:
            factory = getattr(loaded, attr)
            takes_seed = 'seed' in inspect.signature(factory).parameters
            self.env = factory(**kwargs, **({'seed': seed} if takes_seed else {}))
        self.seed, self.repeat, self.pixels = seed, repeat, pixels
        self.limit = math.ceil(limit / repeat) if limit else 0

    def reset(self):
        obs, _ = self.env.reset(seed=self.seed)
        self.seed, self.steps = None, 0  # later resets continue the first one's RNG
        return self.env.render() if self.pixels else obs

    def step(self, action):
        total, done = 0.0, False
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, _ = self.env.step(action)
            total += float(reward)
            done = terminated or truncated
            if done:
                break
        self.steps += 1
        done = done or bool(self.limit and self.steps >= self.limit)
        return (self.env.render() if self.pixels else obs), total, done


class DMCEnv:
    """A dm_control suite task as dreamer_tf trained on it (see GymEnv)."""

    def __init__(self, name, seed, repeat=1, limit=0, pixels=False, size=(64, 64), camera=None):
        from dm_control import suite

        domain, task = parse_dmc(name, suite.TASKS_BY_DOMAIN)
        self.env = suite.load(domain, task, task_kwargs={'random': seed})
        self.repeat, self.pixels, self.size = repeat, pixels, tuple(size)
        self.camera = camera if camera is not None else (2 if domain == 'quadruped' else 0)
        self.limit = math.ceil(limit / repeat) if limit else 0

    def reset(self):
        self.steps = 0
        return self._observe(self.env.reset())

    def step(self, action):
        total = 0.0
        for _ in range(self.repeat):
            timestep = self.env.step(action)
            total += timestep.reward or 0.0
            if timestep.last():
                break
        self.steps += 1
        done = timestep.last() or bool(self.limit and self.steps >= self.limit)
        return self._observe(timestep), total, done

    def _observe(self, timestep):
        if self.pixels:
            return self.env.physics.render(*self.size, camera_id=self.camera)
        return timestep.observation


def parse_dmc(name, tasks_by_domain):
    """'ball_in_cup_catch' -> ('ball_in_cup', 'catch'): the longest matching domain."""
    for domain in sorted(tasks_by_domain, key=len, reverse=True):
        if name.startswith(domain + '_') and name[len(domain) + 1:] in tasks_by_domain[domain]:
            return domain, name[len(domain) + 1:]
    raise MetadataError(f'unknown dm_control task {name!r}')


def make_env(meta, seed):
    """The env of `meta` (an export's metadata) for the runtime alone."""
    env = meta['env']
    suite, _, name = env['task'].partition('_')
    pixels = env.get('obs') == 'vision'
    repeat, limit = env.get('action_repeat', 1), env.get('time_limit', 0)
    if suite == 'gym':
        return GymEnv(name, seed, repeat, limit, env.get('imports', ()), pixels)
    if suite == 'dmc':
        return DMCEnv(name, seed, repeat, limit, pixels, env.get('size', (64, 64)),
                      env.get('camera'))
    raise MetadataError(
        f'task {env["task"]}: the runtime alone serves gymnasium and dm_control tasks; '
        'use dreamer-tf serve (dreamer_tf installed) for the others')


def run(policy, env, episodes):
    """Returns of `episodes` episodes of `policy` (a Policy on the env's own observations)."""
    returns = []
    for _ in range(episodes):
        obs, total, done = env.reset(), 0.0, False
        policy.reset()
        while not done:
            obs, reward, done = env.step(policy.act(obs))
            total += reward
        returns.append(total)
    return returns


def parse(argv, description):
    """The arguments of a serve command: this module's and `dreamer-tf serve`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('model', help='the exported .onnx or .tflite file (its .json beside it)')
    parser.add_argument('--episodes', type=int, default=1)
    parser.add_argument('--seed', type=int, help="env seed (default: the run's eval seed)")
    parser.add_argument('--policy-seed', type=int, default=0, help='noise of a stochastic export')
    parser.add_argument('--threads', type=int, help='threads of ONNX Runtime or LiteRT')
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error('--episodes must be at least 1')
    return args


def report(model, meta, seed, returns):
    """Prints the returns of a serve command as one JSON line."""
    print(json.dumps({'model': str(model), 'task': meta['task'], 'mode': meta['mode'],
                      'seed': seed, 'returns': returns,
                      'mean_return': sum(returns) / len(returns)}))


def main(argv=None):
    args = parse(argv, __doc__.split('\n')[0])
    try:
        policy = Policy(args.model, seed=args.policy_seed, threads=args.threads)
        seed = policy.meta['eval_seed'] if args.seed is None else args.seed
        env = make_env(policy.meta, seed)
    except (MetadataError, FileNotFoundError, ImportError) as error:
        sys.exit(f'cannot serve {args.model}: {error}')
    returns = run(policy, env, args.episodes)
    report(args.model, policy.meta, seed, returns)
    return returns


if __name__ == '__main__':
    main()
