"""Peer worker: sheeprl's DreamerV3 training update (PyTorch), driven by `protocol.py`.

It runs in its own virtual environment, never in the project's, which `compare.py setup`
makes from sheeprl-requirements.txt:

    python dreamer_tf/diagnostics/peers/compare.py setup --venvs ~/peers --systems sheeprl
    printf 'time 3\nquit\n' | ~/peers/sheeprl/bin/python \
        dreamer_tf/diagnostics/peers/sheeprl_worker.py --size s --obs vector:17 --act 6

The models come from sheeprl's own `build_agent` and Hydra configs (its `dreamer_v3_<SIZE>`
presets, composed as its command line composes them), and one update is one call of
`sheeprl.algos.dreamer_v3.dreamer_v3.train` preceded by the target critic's update, as the
training loop of `dreamer_v3.main` does at every gradient step. The batch is fixed and
synthetic, shaped as the loop's sampled batches are: time-major [T, B, ...] float32.

Sizes: sheeprl's presets already have the paper's sizes that our `xs`/`s`/`m` blocks use
(deter, hidden, MLP layers x units, CNN depth, 255 bins), with the same layers: with
`--act 6` their trainable parameters equal ours for vector observations and differ by
the convolutions' biases (704 at S, 1,056 at M) for images. So no size override is needed.
"""

import protocol

# sheeprl's preset per size of the paper (configs/algo/dreamer_v3_<SIZE>.yaml), and the
# overrides on top of it (none needed: the presets' layers and widths match ours, above).
PRESETS = {'xs': 'dreamer_v3_XS', 's': 'dreamer_v3_S', 'm': 'dreamer_v3_M'}
SIZE_OVERRIDES = {'xs': [], 's': [], 'm': []}
PRECISIONS = {'32': '32-true', 'bf16': 'bf16-mixed'}  # Fabric's names
KEYS = {'vector': 'state', 'image': 'rgb'}  # the observation key of each kind


def overrides(args):
    """sheeprl's Hydra overrides for the asked size, observation, precision and batch."""
    kind, shape = protocol.parse_obs(args.obs)
    key = KEYS[kind]
    cnn, mlp = ([key], []) if kind == 'image' else ([], [key])
    items = [
        'exp=dreamer_v3',  # sheeprl's DreamerV3 experiment (its env is replaced below)
        f'algo={PRESETS[args.size]}',
        'env=dummy',  # no environment is stepped: the batch is synthetic
        f'algo.cnn_keys.encoder={cnn}', f'algo.cnn_keys.decoder={cnn}',
        f'algo.mlp_keys.encoder={mlp}', f'algo.mlp_keys.decoder={mlp}',
        f'algo.per_rank_batch_size={args.batch}',
        f'algo.per_rank_sequence_length={args.length}',
        f"fabric.accelerator={'cuda' if args.platform == 'gpu' else 'cpu'}",
        f'fabric.precision={PRECISIONS[args.precision]}',
        # No metrics: the loop's aggregator (and the latents' entropies computed for it)
        # is bookkeeping, not learning
        'metric.log_level=0',
    ]
    if kind == 'image':
        # sheeprl's CNNs go from env.screen_size down to 4x4 in stride-2 stages
        items.append(f'env.screen_size={shape[0]}')
    return items + SIZE_OVERRIDES[args.size]


def compose(items):
    """The configuration sheeprl's command line would run (`sheeprl.cli.run`), as its
    `dotdict` of plain values."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf
    from sheeprl.utils.utils import dotdict

    with initialize_config_module('sheeprl.configs', version_base='1.3'):
        cfg = hydra_compose('config', overrides=items)
    return dotdict(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True))


def observation_space(spec):
    """The gymnasium observation space of `--obs`, images channels-first as sheeprl's."""
    import gymnasium as gym
    import numpy as np

    kind, shape = protocol.parse_obs(spec)
    if kind == 'image':
        height, width, channels = shape
        if height != width:
            raise SystemExit(f'--obs {spec!r}: sheeprl needs square images')
        box = gym.spaces.Box(0, 255, (channels, height, width), np.uint8)
    else:
        box = gym.spaces.Box(-np.inf, np.inf, shape, np.float32)
    return gym.spaces.Dict({KEYS[kind]: box})


def setup_torch(cfg):
    """The torch settings of sheeprl's `run_algorithm` and of its `reproducible` wrapper,
    except the thread count: torch's default (all cores) is kept, where sheeprl sets
    OMP_NUM_THREADS to `num_threads` (1), too late to change the running pool anyway."""
    import torch
    from torch.distributions import Distribution

    torch.set_float32_matmul_precision(cfg.float32_matmul_precision)
    # Off by default in sheeprl (distribution.validate_args): checks cost time at every call
    Distribution.set_default_validate_args(cfg.distribution.validate_args)
    torch.backends.cudnn.benchmark = cfg.torch_backends_cudnn_benchmark


def build_models(cfg, obs_space, act):
    """Fabric, the models, their optimizers and the return normalizer, as `dreamer_v3.main`
    builds them."""
    import hydra
    from sheeprl.algos.dreamer_v3.agent import build_agent
    from sheeprl.algos.dreamer_v3.utils import Moments
    from sheeprl.utils.metric import MetricAggregator

    MetricAggregator.disabled = True  # what `run_algorithm` sets for metric.log_level=0
    fabric = hydra.utils.instantiate(cfg.fabric, _convert_='all')
    fabric.seed_everything(cfg.seed)
    setup_torch(cfg)
    world_model, actor, critic, target_critic, _ = build_agent(fabric, (act,), True, cfg, obs_space)
    optimizers = fabric.setup_optimizers(*[
        hydra.utils.instantiate(part.optimizer, params=module.parameters(), _convert_='all')
        for part, module in ((cfg.algo.world_model, world_model), (cfg.algo.actor, actor),
                             (cfg.algo.critic, critic))
    ])
    moments_cfg = cfg.algo.actor.moments
    moments = Moments(moments_cfg.decay, moments_cfg.max, moments_cfg.percentile.low,
                      moments_cfg.percentile.high)
    models = {'world_model': world_model, 'actor': actor, 'critic': critic,
              'target_critic': target_critic, 'moments': moments}
    return fabric, models, optimizers


def synthetic_batch(obs_space, act, batch, length, device, seed=0):
    """A fixed batch shaped as `sample_batches` yields them: time-major [T, B, ...], every
    value float32 (the buffer's uint8 images too, still in 0..255). An episode starts at
    every row's first step and in the middle of row 0; the last row ends terminated."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    data = {}
    for key, space in obs_space.items():
        shape = (length, batch, *space.shape)
        if space.dtype.kind == 'u':
            data[key] = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8).float()
        else:
            data[key] = torch.randn(shape, generator=gen)
    data['actions'] = torch.rand((length, batch, act), generator=gen) * 2 - 1
    data['rewards'] = torch.randn((length, batch, 1), generator=gen)
    flags = {name: torch.zeros((length, batch, 1)) for name in ('is_first', 'terminated')}
    flags['is_first'][0] = 1
    flags['is_first'][length // 2, 0] = 1
    flags['terminated'][-1, -1] = 1
    data.update(flags, truncated=flags['terminated'].clone())
    return {k: v.to(device) for k, v in data.items()}


def make_update(fabric, cfg, models, optimizers, data, act):
    """One gradient step of `dreamer_v3.main`'s loop: the target critic's EMA update (the
    loop does it before `train` every `per_rank_target_network_update_freq` steps, with
    tau 1 at the first one), then `train` on the batch."""
    import torch
    from sheeprl.algos.dreamer_v3.dreamer_v3 import train

    critic, target_critic = models['critic'], models['target_critic']
    every, steps = cfg.algo.critic.per_rank_target_network_update_freq, [0]
    cuda = fabric.device.type == 'cuda'

    def update():
        if steps[0] % every == 0:
            tau = 1 if steps[0] == 0 else cfg.algo.critic.tau
            for cp, tcp in zip(critic.module.parameters(), target_critic.parameters()):
                tcp.data.copy_(tau * cp.data + (1 - tau) * tcp.data)
        train(fabric, models['world_model'], models['actor'], critic, target_critic,
              *optimizers, data, None, cfg, True, (act,), models['moments'])
        steps[0] += 1
        if cuda:  # CUDA runs asynchronously: the step is done when the device is
            torch.cuda.synchronize(fabric.device)

    return update


def param_counts(models):
    """Trainable parameters by part, without the target critic nor optimizer state."""
    counts = {name: sum(p.numel() for p in models[name].parameters() if p.requires_grad)
              for name in ('world_model', 'actor', 'critic')}
    return {**counts, 'total': sum(counts.values())}


def notes(cfg, kind):
    """How this update differs in cost from the paper's DreamerV3 (and from ours)."""
    items = [
        "sheeprl's own DreamerV3 (2023 paper version, its `dreamer_v3` algorithm, not "
        '`dreamer_v3_5`): LayerNorm (eps 1e-3) + SiLU after every hidden layer, no bias '
        'before a LayerNorm; GRU with one fused linear over [h, x] and LayerNorm on its '
        'pre-activations; unimix 0.01 on the latents; learned initial state',
        'RSSM not decoupled (the posterior sees the deterministic state); the observation '
        "part of the posterior's first layer is computed for the whole sequence at once, "
        'and the priors after the unroll, as ours: the same FLOPs as the paper, fewer '
        'small ops',
        'continuous actions: Normal(tanh(mean), std in [0.1, 1]) actor trained by dynamics '
        'backpropagation (the imagination keeps its graph through the world model); '
        'analytic entropy',
        'critic: two-hot symlog (255 bins) regressed to the lambda-returns and to the '
        'target critic (EMA tau 0.02 each step, done here as the training loop does it)',
        f'horizon {cfg.algo.horizon} from all B x T posterior states; return '
        'normalization by the 5th/95th percentiles (torch.quantile, EMA 0.99)',
        'Adam fused=True (sheeprl default; world model lr 1e-4 eps 1e-8, actor and critic '
        'lr 3e-5 eps 1e-5), gradient norms clipped to 1000 / 100 / 100',
        'torch.compile off (sheeprl default algo.compile.enabled=False); eager PyTorch',
        'metrics off (metric.log_level=0): no latent entropies nor aggregator updates',
        f'float32_matmul_precision={cfg.float32_matmul_precision!r} as sheeprl sets it '
        '(CPU matmuls stay fp32 without AMX); torch default threads (sheeprl sets '
        'num_threads=1 by default)',
        'the batch is float32 as sheeprl samples it (images 0..255 cast before `train`, '
        'outside the timed update)',
    ]
    if cfg.fabric.precision == 'bf16-mixed':
        items.append('bf16: Fabric bf16-mixed, torch.autocast(bfloat16) inside every '
                     'module call (fp32 weights cast once per loss, LayerNorm on bf16 '
                     'activations), each module casting its inputs to bf16 and its outputs '
                     'to fp32, also at every step of the unrolls; distributions and losses '
                     'in fp32')
    if kind == 'image':
        items.append('image encoder/decoder: 4x4 stride-2 (de)convolutions, channels-first; '
                     'no conv bias before LayerNorm (ours has one: 704 params at S, 1,056 '
                     'at M); image decoder loss is MSE on pixels in [-0.5, 0.5]')
    return items


def builder(args):
    """`protocol.serve`'s `build`: the update and the description of this system."""

    def build():
        import sheeprl
        import torch

        items = overrides(args)
        cfg = compose(items)
        space = observation_space(args.obs)
        fabric, models, optimizers = build_models(cfg, space, args.act)
        data = synthetic_batch(space, args.act, args.batch, args.length, fabric.device)
        update = make_update(fabric, cfg, models, optimizers, data, args.act)
        info = {
            'params': param_counts(models),
            'system': f'sheeprl {sheeprl.__version__} dreamer_v3',
            'threads': torch.get_num_threads(),
            'config': {'overrides': items, 'torch': torch.__version__,
                       'device': str(fabric.device)},
            'notes': notes(cfg, protocol.parse_obs(args.obs)[0]),
        }
        return update, info

    return build


def main():
    args = protocol.parser("sheeprl's DreamerV3 update, as a peer of the side-by-side").parse_args()
    protocol.parse_obs(args.obs)  # fail on a bad --obs before the slow imports
    protocol.serve(builder(args), warmup=args.warmup)


if __name__ == '__main__':
    main()
