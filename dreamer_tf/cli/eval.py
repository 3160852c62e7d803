"""Evaluate a trained run: `python scripts/eval.py --logdir runs/pong --episodes 10`.

Loads the run's config.yaml and latest checkpoint (or --checkpoint), plays the
episodes with the run's run.eval_policy (or --policy), and prints
mean ± std of the returns. `--policy random` plays the uniform-random policy of
prefill in the run's environment instead (no checkpoint needed): the baseline
its scores compare to; `--policy plan` acts by the cross-entropy method over the
run's world model, scoring action sequences by discounted predicted rewards plus
the critic's value at the horizon (the actor's objective, searched instead of
learned): beside the actor's return it tells whether the world model and critic
or the actor limit a run. --video writes the first episode's observations and
--dream the world model's open-loop prediction of it next to the truth
(.gif, or .mp4 with imageio-ffmpeg; checked before playing). --trace writes the
first episode step by step (observations, actions, rewards) as .npz, in the
replay's format, for looking at what the policy does, with what the reward
head and the critic predict at each step beside the rewards and the discounted
return-to-go the episode gave, also bootstrapped with the critic's last value at a
time limit, and the return the world model imagines under the actor from each
state, the critic's fixed point (dreamer_tf/run/value_trace.py). --json writes every
episode's result.
"""

import argparse
import io
import os
import sys
from pathlib import Path

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf.config import EVAL_POLICIES
from dreamer_tf.fileio import write_atomic, write_json  # noqa: E402


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--logdir', required=True, help='run directory written by train.py')
    parser.add_argument('--checkpoint', default=None, help='checkpoint path (default: latest)')
    parser.add_argument('--episodes', type=int, default=10)
    parser.add_argument('--policy', choices=(*EVAL_POLICIES, 'plan', 'random'), default=None,
                        help="modes, or latent and action drawn without exploration noise, "
                        "or the latent drawn and the actor's mode (V1/V2/PlaNet) "
                        "(default: the run's run.eval_policy), or CEM planning over the "
                        "world model and critic (--plan_*), or the uniform-random "
                        "actions of prefill, seeded with --seed (a baseline)")
    parser.add_argument('--plan_horizon', type=int, default=None,
                        help="--policy plan: policy steps planned (default: the run's imag.horizon)")
    parser.add_argument('--plan_candidates', type=int, default=100,
                        help='--policy plan: action sequences per CEM iteration')
    parser.add_argument('--plan_top', type=int, default=10,
                        help='--policy plan: best candidates the belief is refit to')
    parser.add_argument('--plan_iterations', type=int, default=4,
                        help='--policy plan: CEM iterations per action')
    parser.add_argument('--envs', type=int, default=1, help='envs stepped in lockstep')
    parser.add_argument(
        '--seed', type=int, default=None, help='env seed (default: run seed + 20000)'
    )
    parser.add_argument('--task', default=None, help='evaluate on another task of the same spaces')
    parser.add_argument('--video', default=None, help='write the first episode (.gif/.mp4)')
    parser.add_argument('--dream', default=None, help='write the open-loop prediction (.gif/.mp4)')
    parser.add_argument('--dream_context', type=int, default=5, help='frames observed first')
    parser.add_argument('--dream_length', type=int, default=50, help='frames in the dream video')
    parser.add_argument('--fps', type=int, default=15)
    parser.add_argument('--trace', default=None,
                        help="write the first episode's observations, actions and rewards (.npz), "
                        "with the model's reward and the critic's value at each step")
    parser.add_argument('--trace_horizon', type=int, default=None,
                        help='imagined steps of the rollouts behind the trace\'s imagined return '
                        '(default: round(1 / (1 - imag.discount)))')
    parser.add_argument('--trace_samples', type=int, default=4,
                        help='imagined rollouts per traced state')
    parser.add_argument('--json', default=None, help='write per-episode results as JSON')
    parser.add_argument('--probe_actions', default=None, metavar='STEPS',
                        help='dm_control runs: instead of scoring episodes, compare the model\'s '
                        'and the simulator\'s rewards of constant actions at these policy steps '
                        'of one episode, e.g. 5,20,60 (dreamer_tf/run/action_probe.py)')
    parser.add_argument('--probe_horizon', type=int, default=15,
                        help='policy steps each constant action is held')
    args = parser.parse_args(argv)
    if args.probe_actions is not None:
        try:
            args.probe_actions = sorted({int(x) for x in args.probe_actions.split(',')})
        except ValueError:
            parser.error(f'--probe_actions takes policy steps like 5,20,60; got {args.probe_actions!r}')
        if args.probe_actions[0] < 0 or args.probe_horizon < 1:
            parser.error('--probe_actions steps must be >= 0 and --probe_horizon >= 1')
    if args.episodes < 1 or args.envs < 1:
        parser.error('--episodes and --envs must be >= 1')
    if not 0 < args.dream_context < args.dream_length:
        parser.error('need 0 < --dream_context < --dream_length')
    if args.trace and not args.trace.endswith('.npz'):
        parser.error(f'--trace writes .npz; got {args.trace!r}')
    if (args.trace_horizon is not None and args.trace_horizon < 1) or args.trace_samples < 1:
        parser.error('--trace_horizon and --trace_samples must be >= 1')
    if args.policy == 'plan':
        from dreamer_tf.planner import CEM

        try:
            # Settings checked now; the horizon may still come from the run's config.
            CEM(1, horizon=1 if args.plan_horizon is None else args.plan_horizon,
                candidates=args.plan_candidates, iterations=args.plan_iterations,
                top=args.plan_top)
        except ValueError as error:
            parser.error(str(error).replace('planner.', '--plan_'))
    if args.policy == 'random' and (args.dream or args.trace or args.probe_actions or args.checkpoint):
        parser.error('--policy random uses no model: it takes no --checkpoint, --dream, '
                     '--trace or --probe_actions')
    from dreamer_tf.run.video import check_video_path

    for path in (args.video, args.dream):
        if path:
            try:
                check_video_path(path)
            except (ValueError, RuntimeError) as error:
                parser.error(str(error))
    return args


def main(argv=None):
    args = parse(argv)
    logdir = Path(args.logdir).expanduser()
    if not (logdir / 'config.yaml').exists():
        sys.exit(f'error: {logdir} has no config.yaml; is it a run directory of train.py?')
    from dreamer_tf.envs.process import keep_gl_out_of_this_process

    keep_gl_out_of_this_process()
    import numpy as np

    from dreamer_tf.run.loop import (
        envs_from_config,
        eval_seed,
        evaluate,
        evaluate_random,
        load_run,
        play_agent,
        run_config,
    )
    from dreamer_tf.run.video import dream_frames, image_key, write_video

    if args.probe_actions is not None:
        from dreamer_tf.run.action_probe import format_report, probe

        try:
            result = probe(logdir, args.probe_actions, args.probe_horizon, seed=args.seed)
        except (FileNotFoundError, RuntimeError, ValueError) as error:
            sys.exit(f'error: {error}')
        print(format_report(result, args.probe_horizon))
        if args.json:
            write_json(args.json, result)
        return
    overrides = {'task': args.task} if args.task else {}
    random = args.policy == 'random'
    try:
        if random:
            # The baseline needs only the run's config: no checkpoint, no agent.
            agent, path = None, None
            config = run_config(logdir, overrides)
            seed = eval_seed(config, args.seed)
            envs = envs_from_config(config, args.envs, seed, 'eval')
        else:
            agent, config, envs, path = load_run(
                logdir, args.envs, args.seed, checkpoint=args.checkpoint, overrides=overrides
            )
    except (FileNotFoundError, RuntimeError, ValueError) as error:
        sys.exit(f'error: {error}')
    if args.video or args.dream:
        try:
            image_key(envs.obs_space)  # fail before playing if there is nothing to film
        except ValueError as error:
            envs.close()
            sys.exit(f'error: {error}; --trace records any observations')
    if args.dream and agent.wm.decoder is None:
        envs.close()
        sys.exit('error: --dream needs a decoder; the Dreaming presets have none (use --video)')
    try:
        policy = args.policy or config.run.eval_policy
        record = bool(args.video or args.dream or args.trace)
        if random:
            results = evaluate_random(envs, args.episodes, config.env.action_repeat, seed, record)
        elif policy == 'plan':
            from dreamer_tf.planner import CEM

            horizon = config.imag.horizon if args.plan_horizon is None else args.plan_horizon
            planner = CEM(agent.act_space.n, horizon=horizon,
                          candidates=args.plan_candidates, iterations=args.plan_iterations,
                          top=args.plan_top)
            try:
                plan = agent.planning_policy(planner)
            except ValueError as error:
                sys.exit(f'error: --policy plan: {error}')
            results = play_agent(agent, envs, args.episodes, plan, record)
        else:
            results = evaluate(agent, envs, args.episodes, policy, record=record)
    finally:
        envs.close()
    returns = np.array([r['return'] for r in results])
    mode = {'mode': 'deterministic', 'sample': 'sampled', 'sample_latent': 'latent-sampled',
            'plan': 'planned', 'random': 'uniform-random'}[policy]
    if random:
        print(f'{config.task}: the uniform-random policy (action seed {seed})')
    elif policy == 'plan':
        print(f'{config.task}: checkpoint {path}, CEM over its world model and critic '
              f'(horizon {planner.horizon}, {planner.candidates} candidates, top {planner.top}, '
              f'{planner.iterations} iterations)')
    else:
        print(f'{config.task}: checkpoint {path}')
    print(
        f'{len(returns)} {mode} episodes: return {returns.mean():.2f} ± {returns.std():.2f} '
        f'(min {returns.min():.2f}, max {returns.max():.2f}), '
        f'length {np.mean([r["length"] for r in results]):.0f} env steps'
    )
    steps = next((r.pop('steps') for r in results if 'steps' in r), None)
    if args.video:
        print(f'Video: {write_video(steps[image_key(envs.obs_space)], args.video, args.fps)}')
    if args.dream:
        frames = dream_frames(agent, steps, args.dream_context, args.dream_length)
        print(f'Dream (truth | model | difference): {write_video(frames, args.dream, args.fps)}')
    if args.trace:
        from dreamer_tf.run.value_trace import default_horizon, format_report, model_along

        horizon = args.trace_horizon or default_horizon(config.imag.discount)
        model = model_along(agent, steps, horizon, args.trace_samples)
        buffer = io.BytesIO()
        np.savez(buffer, **steps, **model)
        write_atomic(args.trace, buffer.getvalue())
        print(f'Trace ({len(steps["reward"])} steps, first of them the reset): {args.trace}')
        if 'imagined_return' in model:
            print(f'Imagined returns: {args.trace_samples} rollouts of {horizon} steps per state')
        print(format_report(steps, model, config.imag.discount))
    if args.json:
        write_json(
            args.json, {'task': config.task, 'checkpoint': path, 'mode': mode, 'episodes': results}
        )


if __name__ == '__main__':
    main()
