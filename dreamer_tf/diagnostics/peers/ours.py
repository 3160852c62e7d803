"""This project's DreamerV3 update as a side-by-side worker (`protocol.py`), in TensorFlow.

The paper's model sizes are our presets' (`configs.yaml` blocks `xs`, `s`, `m`); vector
observations take the `dmc_proprio` block, images `dmc_vision`. One update is
`Agent.train` on a fixed synthetic batch (`diagnostics.benchmark.synthetic_batch`).

  python dreamer_tf/diagnostics/peers/ours.py --size s --obs vector:17 --precision bf16
"""

import protocol


def build(args):
    from dreamer_tf.config import load_config
    from dreamer_tf.diagnostics.benchmark import build, param_counts, parse_obs, wait_for
    from dreamer_tf.envs.base import ActSpace

    kind, _ = protocol.parse_obs(args.obs)
    block = 'dmc_vision' if kind == 'image' else 'dmc_proprio'
    config = load_config(['dreamerv3', args.size, block], {
        'precision': args.precision, 'run.batch_size': args.batch,
        'run.batch_length': args.length})
    agent, batch = build(config, parse_obs(args.obs), ActSpace(False, args.act))
    info = {'system': 'dreamer_tf', 'params': param_counts(agent),
            'config': {'configs': ['dreamerv3', args.size, block],
                       'precision': agent.precision, 'xla': bool(agent.jit)},
            'notes': []}
    return lambda: wait_for(agent.train(batch)), info


def main():
    args = protocol.parser(__doc__.splitlines()[0]).parse_args()
    protocol.serve(lambda: build(args), warmup=args.warmup)


if __name__ == '__main__':
    main()
