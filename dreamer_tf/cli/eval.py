"""Evaluate a trained run: `dreamer-tf eval --logdir runs/pong --episodes 10`.

Loads the run's config.yaml and latest checkpoint (or --checkpoint), plays the
episodes with the run's run.eval_policy (or --policy), and prints
mean ± std of the returns. `--policy random` plays the uniform-random policy of
prefill in the run's environment instead (no checkpoint needed): the baseline
its scores compare to. --video writes the first episode's observations and
--dream the world model's open-loop prediction of it next to the truth
(.gif, or .mp4 with imageio-ffmpeg; checked before playing). --json writes every
episode's result. Traces, action probes and planning: `dreamer-tf diagnose`.
"""

import argparse
import os
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from dreamer_tf.cli import run_directory  # noqa: E402
from dreamer_tf.config import EVAL_POLICIES
from dreamer_tf.fileio import write_json  # noqa: E402


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--logdir', required=True, help='run directory written by train.py')
    parser.add_argument('--checkpoint', default=None, help='checkpoint path (default: latest)')
    parser.add_argument('--episodes', type=int, default=10)
    parser.add_argument('--policy', choices=(*EVAL_POLICIES, 'random'), default=None,
                        help="modes, or latent and action drawn without exploration noise, "
                        "or the latent drawn and the actor's mode (V1/V2/PlaNet) "
                        "(default: the run's run.eval_policy), or the uniform-random "
                        "actions of prefill, seeded with --seed (a baseline)")
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
    parser.add_argument('--json', default=None, help='write per-episode results as JSON')
    args = parser.parse_args(argv)
    if args.episodes < 1 or args.envs < 1:
        parser.error('--episodes and --envs must be >= 1')
    if not 0 < args.dream_context < args.dream_length:
        parser.error('need 0 < --dream_context < --dream_length')
    if args.policy == 'random' and (args.dream or args.checkpoint):
        parser.error('--policy random uses no model: it takes no --checkpoint or --dream')
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
    logdir = run_directory(args.logdir)
    import numpy as np

    from dreamer_tf.envs.from_config import envs_from_config, eval_seed
    from dreamer_tf.run.collect import evaluate, evaluate_random
    from dreamer_tf.run.restore import load_run, run_config
    from dreamer_tf.run.video import dream_frames, image_key, write_video

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
            sys.exit(f'error: {error}; `dreamer-tf diagnose trace` records any observations')
    if args.dream and not agent.wm.representation.decodes:
        envs.close()
        sys.exit('error: --dream needs a decoder; the Dreaming presets have none (use --video)')
    try:
        policy = args.policy or config.run.eval_policy
        record = bool(args.video or args.dream)
        if random:
            results = evaluate_random(envs, args.episodes, config.env.action_repeat, seed, record)
        else:
            results = evaluate(agent, envs, args.episodes, policy, record=record)
    finally:
        envs.close()
    returns = np.array([r['return'] for r in results])
    mode = {'mode': 'deterministic', 'sample': 'sampled', 'sample_latent': 'latent-sampled',
            'random': 'uniform-random'}[policy]
    if random:
        print(f'{config.task}: the uniform-random policy (action seed {seed})')
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
    if args.json:
        write_json(
            args.json, {'task': config.task, 'checkpoint': path, 'mode': mode, 'episodes': results}
        )


if __name__ == '__main__':
    main()
