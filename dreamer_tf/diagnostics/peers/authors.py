"""Side-by-side worker: the authors' DreamerV3 (PyPI `dreamerv3==1.5.0`, JAX) training update.

Builds their `dreamerv3.Agent` at the paper's size S or M (the overrides in `SIZES`), for
one observation key and a continuous action space, and times `agent.train(batch, state)`,
the call their training loop makes once per update (embodied/run/train.py): world model,
actor, critic and slow critic in one jitted step, metrics fetched every 10th call. Runs in
its own virtual environment, which `compare.py setup` makes from
authors-requirements.txt (read there why with `--no-deps`):

    python dreamer_tf/diagnostics/peers/compare.py setup --venvs ~/peers --systems authors
    printf 'time 3\nquit\n' | ~/peers/authors/bin/python \
        dreamer_tf/diagnostics/peers/authors.py --size s --obs vector:17 --act 6
"""

# Carrying it to a GPU machine that has JAX (jax, jaxlib with CUDA, and JAX's own
# requirements numpy, scipy, ml_dtypes, opt_einsum) but no internet. Pure Python, about
# 31 MB installed (7.6 MB as wheels), 27 MB of it tensorflow_probability: dreamerv3 (an
# sdist; `pip wheel --no-deps dreamerv3==1.5.0` makes a py3 wheel), tensorflow-probability,
# optax, ruamel.yaml, absl-py, cloudpickle, decorator, six, and gast and attrs (required,
# never imported). Not pure Python: dm-tree (compiled, a cp311 manylinux wheel of 185 KB)
# and wrapt (a C extension with a pure-Python fallback, 240 KB), both imported by TFP's
# JAX backend (nest.py); the cp311 dm-tree wheel needs Python 3.11 there. Then
# `pip install --no-deps *.whl` on that machine.

import os

import protocol

SYSTEM = 'authors dreamerv3 1.5.0'

# Per size, the overrides of their `configs.yaml` defaults (which are their XL model) that
# give the paper's model sizes (DreamerV3, Hafner et al. 2023, table of sizes), as our
# `xs`/`s`/`m` presets do: GRU state `rssm.deter`, hidden width `rssm.units` (their name),
# every MLP's depth x width, and the CNN's base depth. Their own `small`/`medium` blocks
# set sizes with the patterns `.*\.layers` and `.*\.units`, which miss
# `encoder.mlp_layers`/`mlp_units` (and the decoder's) and leave those 5 x 1024 at every
# size; here each key is named. Everything else (32 x 32 latent, 255 bins, LayerNorm,
# SiLU, losses, optimisers, horizon 15, ...) stays at their defaults, the paper's.


def size_overrides(deter, hidden, layers, units, depth):
    """Their config keys for a GRU state `deter`, hidden width `hidden`, every MLP
    `layers` x `units`, and a CNN of base depth `depth`."""
    coders = {f'{coder}.{key}': value for coder in ('encoder', 'decoder') for key, value in
              (('mlp_layers', layers), ('mlp_units', units), ('cnn_depth', depth))}
    heads = {f'{head}.{key}': value for head in ('reward_head', 'cont_head', 'actor', 'critic')
             for key, value in (('layers', layers), ('units', units))}
    return {'rssm.deter': deter, 'rssm.units': hidden, **coders, **heads}


SIZES = {'xs': size_overrides(256, 256, 1, 256, 24), 's': size_overrides(512, 512, 2, 512, 32),
         'm': size_overrides(1024, 640, 3, 640, 48)}

PRECISIONS = {'32': 'float32', 'bf16': 'bfloat16'}
JAX_PLATFORMS = {'cpu': 'cpu', 'gpu': 'cuda'}


def run_overrides(args):
    """The overrides that are not sizes: device, compute dtype and batch shape."""
    return {
        'jax.platform': args.platform,
        'jax.precision': PRECISIONS[args.precision],
        # Their default preallocates 80% of GPU memory; the side-by-side runs several
        # workers on one GPU, so this one allocates as it needs (same allocator).
        'jax.prealloc': bool(args.prealloc),
        'batch_size': args.batch,
        'batch_length': args.length,
        'seed': args.seed,
    }


def patch_jax_for_tfp():
    """Runtime patch, before `dreamerv3` (and so tensorflow_probability) is imported.

    TFP 0.25.0, the last release, registers its NumpyVariable in
    `jax.interpreters.xla.pytype_aval_mappings` when its JAX substrate is imported.
    JAX dropped that alias (the table lives on as `jax._src.core.pytype_aval_mappings`,
    the one `jax.core.pytype_aval_mappings` also names), so the import fails with an
    AttributeError on current JAX. Restore the alias; a no-op on JAX that still has it.
    """
    import jax.interpreters.xla as xla
    from jax._src import core

    if not hasattr(xla, 'pytype_aval_mappings'):
        xla.pytype_aval_mappings = core.pytype_aval_mappings


def import_authors(platform):
    """(dreamerv3, embodied, jax, np) with the patches applied. JAX_PLATFORMS keeps the
    other platform's backend from starting (a CPU run on a GPU machine takes no GPU
    memory; a GPU run fails rather than falling back to the CPU)."""
    os.environ['JAX_PLATFORMS'] = JAX_PLATFORMS[platform]
    patch_jax_for_tfp()
    import dreamerv3
    import jax
    import numpy as np
    from dreamerv3 import embodied

    return dreamerv3, embodied, jax, np


def spaces(embodied, np, kind, shape, act):
    """Observation and action spaces as their gym/dm_env wrappers build them: the
    observation key beside reward and the episode flags; actions beside `reset`."""
    Space = embodied.Space
    key, dtype = ('image', np.uint8) if kind == 'image' else ('vector', np.float32)
    obs = {key: Space(dtype, shape), 'reward': Space(np.float32), 'is_first': Space(bool),
           'is_last': Space(bool), 'is_terminal': Space(bool)}
    acts = {'action': Space(np.float32, (act,), -1, 1), 'reset': Space(bool)}
    return obs, acts


def synthetic_batch(np, kind, shape, act, batch, length, seed=0):
    """A fixed [batch, length] batch with every key their replay yields (replay/generic.py):
    the observation, `action` (their a_t, taken after o_t), `reward`, the three episode
    flags, the driver's `reset` flag (= that step's is_last) and the replay's `id`, a
    16-byte uuid per step. Their replay sets is_first at t=0 of every sequence; one more
    episode starts inside row 0 and the last step of the last row ends one."""
    rng = np.random.default_rng(seed)
    data = {}
    if kind == 'image':
        data['image'] = rng.integers(0, 256, (batch, length, *shape), dtype=np.uint8)
    else:
        data['vector'] = rng.standard_normal((batch, length, *shape), dtype=np.float32)
    data['action'] = rng.uniform(-1, 1, (batch, length, act)).astype(np.float32)
    data['reward'] = rng.standard_normal((batch, length), dtype=np.float32)
    data['is_first'] = np.zeros((batch, length), bool)
    data['is_first'][:, 0] = True
    data['is_first'][0, length // 2] = True
    data['is_last'] = np.zeros((batch, length), bool)
    data['is_last'][-1, -1] = True
    data['is_terminal'] = data['is_last'].copy()
    data['reset'] = data['is_last'].copy()
    data['id'] = rng.integers(0, 256, (batch, length, 16), dtype=np.uint8)
    return data


# Where each part's trainable variables sit in their state dict (ninjax paths), and the
# optimiser that updates them; slow critic, optimiser state and counters are excluded.
PARTS = {
    'world_model': ('agent/wm/', 'agent/wm/model_opt'),
    'actor': ('agent/task_behavior/ac/actor/', 'agent/task_behavior/ac/actor_opt'),
    'critic': ('agent/task_behavior/critic/net/', 'agent/task_behavior/critic/critic_opt'),
}


def param_counts(np, varibs, optimizer_counts):
    """Trainable parameters by part from their parameter tree, with the world model's by
    module (enc, rssm, dec, rew, cont). Each part's count is checked against what its
    optimiser reported while tracing (`jaxutils.Optimizer.PARAM_COUNTS`)."""
    counts, modules = {}, {}
    for part, (prefix, optimizer) in PARTS.items():
        total = 0
        for key, value in varibs.items():
            if not key.startswith(prefix) or key.startswith(optimizer + '/'):
                continue
            size = int(np.prod(value.shape))
            total += size
            if part == 'world_model':
                module = key[len(prefix):].split('/')[0]
                modules[module] = modules.get(module, 0) + size
        if total != int(optimizer_counts[optimizer]):
            raise RuntimeError(f'{part}: {total} parameters in the tree, '
                               f'{optimizer_counts[optimizer]} in {optimizer}')
        counts[part] = total
    counts['total'] = sum(counts.values())
    return counts, modules


# How their update differs from the paper's DreamerV3 as our code implements it, beyond the
# parameter counts (see `extra_notes` for the ones that depend on the run).
NOTES = [
    "dreamerv3 1.5.0 is the authors' 2023 code, the architecture of the paper's first "
    'version, as ours: a plain GRU (one fused linear layer over [h, x], LayerNorm, update '
    'bias -1; no block-diagonal GRU), LayerNorm (eps 1e-3, float32 statistics; no RMSNorm), '
    'learned initial state, 32x32 latent with 1% unimix, stride-2 CNN down to 4x4 with '
    'LayerNorm+SiLU, symlog vector inputs, no replay context. The 2024 code (block GRU, '
    'RMSNorm, replay context) is not this one.',
    'Vector sizes match ours parameter for parameter; their CNN layers followed by '
    'LayerNorm have no bias (ours keep one), see the image notes.',
    "Initialisers: theirs truncated normal with fan-avg variance ('winit: normal'), ours "
    'uniform with the same variance; zero-initialised reward and critic outputs in both.',
    'Their replay stores a_t with o_t and the world model shifts the actions, prepending '
    'the action carried from the previous update; ours stores a_{t-1} with o_t. Their '
    'loop carries the last posterior and action into the next update, but their replay '
    'sets is_first at t=0 of every sequence, so it is always reset, as ours starts each '
    'sequence from the initial state.',
    'Their actor-critic step calls more forward passes than ours: the actor again on the '
    'imagined trajectory in its loss (ours keeps its outputs from the imagination scan), '
    'the critic three times (values for the actor loss, the critic target, the critic loss) '
    'and the reward head twice where ours shares one critic and one reward pass; XLA may '
    'merge some of them. The actor and the critic steps run one after the other.',
    'Their compiled step computes its metrics every update: 11 tensor summaries (mean, '
    'std, min, max, max |x| and a random permutation subsampling 1024 values, e.g. of the '
    'imagined actions), loss means and stds, reward and continue balance statistics; '
    "they are fetched to the host every 10th update ('jax.metrics_every: 10'), which the "
    'timings include, as their loop does.',
    'Their whole update is one jax.jit program on every platform, CPU included.',
    'Batch: fixed synthetic data put on the device once (their loop copies a fresh batch '
    'in a prefetching thread); their `reset` and `id` replay keys are included and cast '
    'to float32 by their preprocessing, unused otherwise.',
]


def extra_notes(args, kind, overrides):
    """The notes that depend on the observation, precision and platform."""
    notes = []
    if kind == 'image':
        depth = overrides['encoder.cnn_depth']
        notes.append(
            f'Image: their 4 encoder convolutions and 3 inner decoder transposed convolutions '
            f'have no bias (LayerNorm follows), ours do: {22 * depth:,} fewer parameters '
            f'in theirs at depth {depth}; the layout is otherwise the same.')
    if args.precision == 'bf16':
        notes.append(
            "bf16 ('jax.precision: bfloat16', float32 parameters and LayerNorm statistics): "
            'their RSSM casts its state (deter, stoch, logits) to bfloat16 between steps, so '
            'the GRU state is rounded every step; ours keeps it in float32. Their default '
            'precision is float16 with dynamic loss scaling, not used here.')
    else:
        notes.append("float32 compute ('jax.precision: float32'); their default is float16 "
                     'with dynamic loss scaling, not used here.')
    if args.platform == 'gpu' and not args.prealloc:
        notes.append("GPU memory is allocated on demand ('jax.prealloc: False'), so that "
                     'workers can share a GPU; their default preallocates 80% of it.')
    return notes


def build(args):
    """Their agent on a fixed synthetic batch: (update, info) for protocol.serve."""
    dreamerv3, embodied, jax, np = import_authors(args.platform)
    kind, shape = protocol.parse_obs(args.obs)
    overrides = {**SIZES[args.size], **run_overrides(args)}
    config = embodied.Config(dreamerv3.configs['defaults']).update(overrides)
    obs_space, act_space = spaces(embodied, np, kind, shape, args.act)
    # Builds the variables by tracing the train step once (their _init_varibs).
    agent = dreamerv3.Agent(obs_space, act_space, embodied.Counter(), config)
    data = synthetic_batch(np, kind, shape, args.act, args.batch, args.length, args.seed)
    # Their dataset's postprocess: an explicit device_put (they set jax_transfer_guard to
    # 'disallow', so an implicit copy would raise).
    batch = agent._convert_inps(data, agent.train_devices)
    state = [None]  # their loop's `state = [None]`: what agent.train threads through

    def update():
        _, state[0], _ = agent.train(batch, state[0])
        jax.block_until_ready((agent.varibs, state[0]))

    optimizers = dreamerv3.jaxutils.Optimizer.PARAM_COUNTS
    params, modules = param_counts(np, agent.varibs, optimizers)
    info = {
        'params': params,
        'param_modules': {'world_model': modules},
        'system': SYSTEM,
        'config': overrides,
        'devices': [str(d) for d in agent.train_devices],
        'versions': {'jax': jax.__version__, 'dreamerv3': '1.5.0'},
        'notes': NOTES + extra_notes(args, kind, overrides),
    }
    return update, info


def main():
    parser = protocol.parser("The authors' DreamerV3 (dreamerv3==1.5.0, JAX) training update.")
    parser.add_argument('--seed', type=int, default=0, help='their config seed; the batch seed')
    parser.add_argument('--prealloc', action='store_true',
                        help="their default 'jax.prealloc: True' (80%% of GPU memory up front)")
    args = parser.parse_args()
    protocol.serve(lambda: build(args), warmup=args.warmup)


if __name__ == '__main__':
    main()
