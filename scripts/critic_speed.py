"""How many updates a DreamerV3 critic needs to move towards a fixed return.

The critic (`heads.Head`, 255 symlog-twohot bins, zero-initialised output) is
trained with the repo's Adam on random features towards one constant return,
with or without the slow-critic regulariser (EMA 0.02 per update), and its mean
value is printed at the given updates. It isolates the per-update speed limit
that `docs/learning.md` finds in the cartpole runs from the moving targets of
training.

  python scripts/critic_speed.py
  python scripts/critic_speed.py --variants xs s --target 200 --updates 250 500 1000 2000
"""

import argparse
import os
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import tensorflow as tf  # noqa: E402

from dreamer_tf import heads, optim  # noqa: E402

# name: (layers, units, lr, slow_reg); XS/S/M are the configs.yaml size blocks.
VARIANTS = {
    'xs': (1, 256, 3e-5, 1.0),
    's': (2, 512, 3e-5, 1.0),
    'm': (3, 640, 3e-5, 1.0),
    'xs_wide': (1, 1024, 3e-5, 1.0),
    'xs_no_slowreg': (1, 256, 3e-5, 0.0),
    'xs_lr1e-4': (1, 256, 1e-4, 1.0),
}


def measure(layers, units, lr, slow_reg, target, updates, din=768, batch=1024, seed=0):
    """The critic's mean value after each count in `updates` (ascending)."""
    tf.random.set_seed(seed)

    def make(name):
        return heads.Head(
            din, layers=layers, units=units, act='silu', norm='layer',
            dist='symlog_twohot', bins=255, outscale=0.0, name=name,
        )

    critic, slow = make('critic'), make('slow_critic')
    for s, v in zip(slow.variables, critic.variables):
        s.assign(v)
    opt = optim.Adam(critic.trainable_variables, lr=lr, eps=1e-5, clip=100.0, eps_form='optax')
    feat = tf.random.normal([batch, din])
    returns = tf.fill([batch], float(target))

    @tf.function
    def update():
        with tf.GradientTape() as tape:
            dist = critic(feat)
            loss = -dist.log_prob(returns)
            if slow_reg:
                loss -= slow_reg * dist.log_prob(tf.stop_gradient(slow(feat).mean()))
            loss = tf.reduce_mean(loss)
        opt.apply(opt.gradients(tape, loss))
        for s, v in zip(slow.variables, critic.variables):
            s.assign(0.02 * v + 0.98 * s)
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
        values = measure(*VARIANTS[name], args.target, updates)
        shown = ', '.join(f'{v:.1f}' for v in values)
        print(f'{name:14s} {shown}  ({time.time() - start:.0f} s)', flush=True)


if __name__ == '__main__':
    main()
