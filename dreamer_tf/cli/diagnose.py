"""Look inside a trained run (dreamer_tf/diagnostics/): `dreamer-tf diagnose <tool> --logdir RUN`.

    dreamer-tf diagnose trace --logdir runs/walker --out episode.npz
    dreamer-tf diagnose probe --logdir runs/balance --steps 5,20,60
    dreamer-tf diagnose plan --logdir runs/balance --episodes 5

trace: one episode step by step (observations, actions, rewards) as .npz in the
replay's format, with what the reward head and critic predict at each step beside the
discounted return-to-go the episode gave (bootstrapped with the critic's last value at a
time limit), and the return the world model imagines under the actor from each state,
the critic's fixed point. probe (dm_control): at the given policy steps of one episode,
each constant action held in the model and in the simulator, their rewards compared.
plan: episodes acted by CEM over the run's world model and critic instead of its actor;
beside the actor's return it tells whether the model and critic or the actor limit a run.
"""

import argparse
import io
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf.cli import run_directory  # noqa: E402
from dreamer_tf.config import EVAL_POLICIES  # noqa: E402
from dreamer_tf.fileio import write_atomic, write_json  # noqa: E402


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    tools = parser.add_subparsers(dest='tool', required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--logdir', required=True, help='run directory written by train')
    common.add_argument('--seed', type=int, default=None,
                        help='env seed (default: the run seed + 20000, as eval)')
    common.add_argument('--json', default=None, help='also write the result as JSON')
    run = argparse.ArgumentParser(add_help=False)
    run.add_argument('--checkpoint', default=None, help='checkpoint path (default: latest)')
    trace = tools.add_parser('trace', parents=[common, run], help='an episode with the '
                             "model's rewards, values and imagined returns, as .npz")
    trace.add_argument('--out', required=True, help='the .npz to write')
    trace.add_argument('--policy', choices=EVAL_POLICIES, default=None,
                       help="the policy played (default: the run's run.eval_policy)")
    trace.add_argument('--horizon', type=int, default=None, help='imagined steps of the '
                       'rollouts behind the imagined return (default: round(1 / (1 - discount)))')
    trace.add_argument('--samples', type=int, default=4, help='imagined rollouts per state')
    probe = tools.add_parser('probe', parents=[common], help='constant actions in the model '
                             'and the simulator (dm_control)')
    probe.add_argument('--steps', required=True, help='policy steps of the episode, e.g. 5,20,60')
    probe.add_argument('--horizon', type=int, default=15,
                       help='policy steps each constant action is held')
    plan = tools.add_parser('plan', parents=[common, run], help='episodes acted by CEM over '
                            'the world model and critic')
    plan.add_argument('--episodes', type=int, default=1)
    plan.add_argument('--envs', type=int, default=1, help='envs stepped in lockstep')
    plan.add_argument('--horizon', type=int, default=None,
                      help="policy steps planned (default: the run's imag.horizon)")
    plan.add_argument('--candidates', type=int, default=100, help='action sequences per iteration')
    plan.add_argument('--top', type=int, default=10, help='best candidates the belief is refit to')
    plan.add_argument('--iterations', type=int, default=4, help='CEM iterations per action')
    args = parser.parse_args(argv)
    _check(parser, args)
    return args


def _check(parser, args):
    if args.tool == 'trace':
        if not args.out.endswith('.npz'):
            parser.error(f'--out writes .npz; got {args.out!r}')
        if (args.horizon is not None and args.horizon < 1) or args.samples < 1:
            parser.error('--horizon and --samples must be >= 1')
    elif args.tool == 'probe':
        try:
            args.steps = sorted({int(x) for x in args.steps.split(',')})
        except ValueError:
            parser.error(f'--steps takes policy steps like 5,20,60; got {args.steps!r}')
        if args.steps[0] < 0 or args.horizon < 1:
            parser.error('--steps must be >= 0 and --horizon >= 1')
    else:
        if args.episodes < 1 or args.envs < 1:
            parser.error('--episodes and --envs must be >= 1')
        from dreamer_tf.planner import CEM

        try:  # settings checked now; the horizon may still come from the run's config
            CEM(1, horizon=1 if args.horizon is None else args.horizon, candidates=args.candidates,
                iterations=args.iterations, top=args.top)
        except ValueError as error:
            parser.error(str(error).replace('planner.', '--'))


def main(argv=None):
    args = parse(argv)
    logdir = run_directory(args.logdir)
    tool = {'trace': trace, 'probe': probe, 'plan': plan}[args.tool]
    try:
        result = tool(logdir, args)
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        sys.exit(f'error: {error}')
    if args.json:
        write_json(args.json, result)


def trace(logdir, args):
    import numpy as np

    from dreamer_tf.diagnostics.value_trace import default_horizon, format_report, model_along
    from dreamer_tf.run.collect import evaluate
    from dreamer_tf.run.restore import load_run

    agent, config, envs, path = load_run(logdir, 1, args.seed, checkpoint=args.checkpoint)
    try:
        [episode] = evaluate(agent, envs, 1, args.policy or config.run.eval_policy, record=True)
    finally:
        envs.close()
    steps = episode.pop('steps')
    horizon = args.horizon or default_horizon(config.imag.discount)
    model = model_along(agent, steps, horizon, args.samples)
    buffer = io.BytesIO()
    np.savez(buffer, **steps, **model)
    write_atomic(args.out, buffer.getvalue())
    print(f'{config.task}: checkpoint {path}; return {episode["return"]:.2f}')
    print(f'Trace ({len(steps["reward"])} steps, first of them the reset): {args.out}')
    if 'imagined_return' in model:
        print(f'Imagined returns: {args.samples} rollouts of {horizon} steps per state')
    print(format_report(steps, model, config.imag.discount))
    return {'task': config.task, 'checkpoint': path, 'episode': episode}


def probe(logdir, args):
    from dreamer_tf.diagnostics.action_probe import format_report
    from dreamer_tf.diagnostics.action_probe import probe as run_probe

    result = run_probe(logdir, args.steps, args.horizon, seed=args.seed)
    print(format_report(result, args.horizon))
    return result


def plan(logdir, args):
    import numpy as np

    from dreamer_tf.diagnostics.planning import planning_policy
    from dreamer_tf.planner import CEM
    from dreamer_tf.run.collect import play_agent
    from dreamer_tf.run.restore import load_run

    agent, config, envs, path = load_run(logdir, args.envs, args.seed, checkpoint=args.checkpoint)
    try:
        planner = CEM(agent.act_space.n, horizon=args.horizon or config.imag.horizon,
                      candidates=args.candidates, iterations=args.iterations, top=args.top)
        results = play_agent(agent, envs, args.episodes, planning_policy(agent, planner))
    finally:
        envs.close()
    returns = np.array([r['return'] for r in results])
    print(f'{config.task}: checkpoint {path}, CEM over its world model and critic '
          f'(horizon {planner.horizon}, {planner.candidates} candidates, top {planner.top}, '
          f'{planner.iterations} iterations)')
    print(f'{len(returns)} planned episodes: return {returns.mean():.2f} ± {returns.std():.2f}')
    return {'task': config.task, 'checkpoint': path, 'mode': 'planned', 'episodes': results}


if __name__ == '__main__':
    main()
