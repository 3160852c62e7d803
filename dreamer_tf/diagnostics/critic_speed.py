"""How many updates a DreamerV3 critic needs to move towards a fixed return.

The critic of `ActorCritic` (255 symlog-twohot bins, zero-initialised output),
built from `configs.yaml` (`dreamerv3` and a size block, plus overrides), is
trained with its own loss, slow-critic update and optimiser settings on random
features towards one constant return, and its mean value is printed at the
given updates. It isolates the per-update speed limit that the DreamerV3
cartpole runs show (docs/algorithms/dreamerv3.md, Findings) from the moving
targets of training.

  python scripts/critic_speed.py
  python scripts/critic_speed.py --variants xs s --target 200 --updates 250 500 1000 2000
"""

import argparse
import time

import tensorflow as tf

from dreamer_tf.behavior import ActorCritic
from dreamer_tf.config import load_config
from dreamer_tf.envs.base import ActSpace

# name: configs.yaml blocks after `dreamerv3`, then dotted overrides.
VARIANTS = {
    'xs': (['xs'], {}),
    's': (['s'], {}),
    'm': (['m'], {}),
    'xs_wide': (['xs'], {'critic.units': 1024}),
    'xs_no_slowreg': (['xs'], {'critic.slow_reg': 0.0}),
    'xs_lr1e-4': (['xs'], {'critic_opt.lr': 1e-4}),
}


def measure(config, target, updates, din=768, batch=1024, seed=0):
    """The critic's mean value after each count in `updates` (ascending), trained
    with the training loop's critic loss, slow-critic update and optimiser."""
    tf.random.set_seed(seed)
    behavior = ActorCritic(din, ActSpace(False, 1), config)
    critic, opt = behavior.critic, behavior.critic_opt
    feat = tf.random.normal([batch, din])
    returns = tf.fill([batch], float(target))
    weight = tf.ones([batch])

    @tf.function
    def update():
        with tf.GradientTape() as tape:
            loss = behavior.critic_loss(critic.raw(feat), feat, returns, weight)
        opt.apply(opt.gradients(tape, loss))
        behavior.apply_state({}, True)
        return tf.reduce_mean(critic(feat).mean())

    values, done = [], 0
    for count in updates:
        for _ in range(count - done):
            value = update()
        done = count
        values.append(float(value))
    return values


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--variants', nargs='+', default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument('--target', type=float, default=200.0)
    parser.add_argument('--updates', type=int, nargs='+', default=[250, 500, 1000, 2000])
    args = parser.parse_args()
    if min(args.updates) < 1:
        parser.error(f'--updates must be positive counts, got {args.updates}')
    updates = sorted(args.updates)
    print(f'mean value towards a constant return of {args.target:g}, at updates {updates}')
    for name in args.variants:
        start = time.time()
        blocks, overrides = VARIANTS[name]
        config = load_config(['dreamerv3', *blocks], overrides)
        values = measure(config, args.target, updates)
        shown = ', '.join(f'{v:.1f}' for v in values)
        print(f'{name:14s} {shown}  ({time.time() - start:.0f} s)', flush=True)


if __name__ == '__main__':
    main()
