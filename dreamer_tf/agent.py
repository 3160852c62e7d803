"""Agent = world model + behaviour: one compiled update and one policy step.

The preset's `behavior` selects a component (one interface, see ActorCritic):
- `actor_critic` (Dreamer, Dreaming; dreamer_tf/behavior.py): `train(batch)`
    runs the whole update (world model, imagination, actor, critic, slow critic)
    as a single `tf.function`; `policy(obs, state)` filters the observation into
    the RSSM posterior and samples (or, for evaluation, takes the mode of) the actor.
- `cem` (PlaNet; dreamer_tf/planner.py): the update trains the world model only
    and the policy step plans with the cross-entropy method from the posterior.
The preset's `representation` selects the world model's component the same way
(dreamer_tf/world_model.py). Both run for a batch of environments at once,
XLA-compiled when `jit` is on.
"""

import contextlib

import tensorflow as tf

from dreamer_tf import distribute
from dreamer_tf.behavior import ActorCritic
from dreamer_tf.config import ConfigError
from dreamer_tf.optim import Adam, prefixed
from dreamer_tf.planner import Planner
from dreamer_tf.world_model import WorldModel

PRECISIONS = {'32': tf.float32, '16': tf.float16, 'bf16': tf.bfloat16}
BEHAVIORS = {'actor_critic': ActorCritic, 'cem': Planner}
# Fold-in constant deriving the observation preprocessing seed of a policy step,
# so the other draws stay those of presets without preprocessing.
PREPROCESS_STREAM = 1


def has_gpu():
    return bool(tf.config.list_physical_devices('GPU'))


def resolve_precision(precision):
    """'auto' is float32 on CPU (bf16 is not faster there) and float16 on GPU."""
    if precision == 'auto':
        precision = '16' if has_gpu() else '32'
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of 'auto', '32', '16', 'bf16'; got {precision!r}")
    return precision


def resolve_jit(jit, distributed=False):
    """'auto' compiles with XLA on GPU only: on the 2-core CPU a Dreamer update
    measured 15-33% slower under XLA than under TF's graph executor (docs/speed.md).

    A mirrored update is not compiled: one XLA program cannot span the
    devices of a MirroredStrategy, and compiling each replica's function
    apart failed on logical CPU devices (the XLA CPU device reads the
    variables of all replicas from device 0), the only multi-device setting
    this code has been run on.
    """
    if jit not in ('auto', 'on', 'off'):
        raise ConfigError(f"jit must be 'auto', 'on' or 'off'; got {jit!r}")
    if distributed:
        if jit == 'on':
            raise ConfigError(
                'jit: on cannot compile the update of distribute.strategy mirrored '
                '(one XLA program cannot span the replicas); use jit: off or auto'
            )
        return False
    if jit == 'auto':
        return has_gpu()
    return jit == 'on'


def check_config(config):
    """Fails, naming the key, on a precision, jit or behavior the agent cannot build;
    the training loop calls it before it creates a run directory."""
    resolve_precision(config.precision)
    resolve_jit(config.jit)
    if config.behavior not in BEHAVIORS:
        raise ConfigError(f'behavior must be one of {tuple(BEHAVIORS)}, got {config.behavior!r}')


class Agent(tf.Module):
    def __init__(self, obs_space, act_space, config, name='agent'):
        super().__init__(name=name)
        check_config(config)
        self.config = config
        self.obs_space, self.act_space = obs_space, act_space
        self.precision = resolve_precision(config.precision)
        self.strategy = distribute.make_strategy(config)
        self.jit = resolve_jit(config.jit, distributed=self.strategy is not None)
        self.replicas = distribute.Replicas(self.strategy)
        dtype = PRECISIONS[self.precision]
        # The generator stays outside the strategy: one stream of update seeds.
        self.rng = tf.random.Generator.from_seed(config.seed)
        with self.name_scope, self._scope():
            self.wm = WorldModel(obs_space, act_space, config, dtype)
            scale = self.precision == '16'
            self.model_opt = Adam(
                self.wm.trainable_variables, **config.model_opt, loss_scale=scale, name='model_opt'
            )
            self.behavior = BEHAVIORS[config.behavior].from_config(
                self.wm, act_space, config, dtype, scale
            )
        # The compiled update with an explicit seed, `update(data, seed)`: what `train`
        # calls, and what the diagnostics time and export (scripts/export_update.py).
        self.update = tf.function(self._train_step, jit_compile=self.jit)
        self._policy = tf.function(self.policy_step, jit_compile=self.jit)

    @property
    def optimizers(self):
        """{role: optim.Adam}: the world model's and the behaviour's."""
        return {'model': self.model_opt, **self.behavior.optimizers}

    def train(self, data):
        """One update on a batch dict of [B, T, ...] tensors; returns float metrics."""
        return self.update(data, self.rng.make_seeds(1)[:, 0])

    def _train_step(self, data, seed):
        """The world model's step, then the behaviour's from its posterior states.

        Each phase computes gradients on the replicas (one device, or the
        rows of each device under `distribute`), then applies their mean once.
        """
        seed_wm, seed_behavior = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        grads, start, metrics = self.replicas.run(self._model_grads, data, seed_wm)
        metrics = self.replicas.mean(metrics)
        metrics.update(prefixed('model', self.model_opt.apply(self.replicas.mean(grads))))
        metrics.update(self.behavior.train(self.wm, start, seed_behavior, self.replicas))
        return metrics

    def _model_grads(self, data, seed):
        data = {k: distribute.local_rows(v) for k, v in data.items()}
        with tf.GradientTape() as tape:
            model_loss, post, metrics = self.wm.loss(data, seed)
        grads = self.model_opt.gradients(tape, model_loss)
        start = {k: tf.reshape(tf.stop_gradient(v), [-1, *v.shape[2:]]) for k, v in post.items()}
        start['cont'] = 1.0 - tf.reshape(tf.cast(data['is_terminal'], tf.float32), [-1])
        return grads, start, metrics

    def _scope(self):
        return self.strategy.scope() if self.strategy else contextlib.nullcontext()

    def policy_variables(self):
        """The variables `policy_step` reads: the world model's and the behaviour's."""
        return [*self.wm.variables, *self.behavior.policy_variables()]

    def initial_state(self, batch_size):
        """Recurrent policy state: (RSSM latent, previous action)."""
        return (self.wm.rssm.initial(batch_size), tf.zeros((batch_size, self.act_space.n)))

    def policy(self, obs, state, explore=True, env_steps=0, noise=True, sample_latent=False):
        """obs: dict of [N, ...] arrays incl. `is_first`; returns (action [N, A], new state).

        With `explore`, the latent and the action are sampled, and with `noise`
        the action is then perturbed by the exploration noise at `env_steps`
        (`exploration`), if the config has any. Without `noise` this is
        DreamerV3's evaluation policy (`run.eval_policy: sample`). Without
        `explore`, `sample_latent` samples the latent only (`sample_latent`).
        """
        amount = None
        if explore and noise and self.config.run.expl_noise:
            amount = tf.constant(self.exploration(env_steps), tf.float32)
        return self._policy(self.obs_tensors(obs), state, self.rng.make_seeds(1)[:, 0], explore,
                            amount, sample_latent)

    def obs_tensors(self, obs):
        """The policy's inputs of `obs` as tensors: the observation keys and `is_first`."""
        return {
            k: tf.convert_to_tensor(v)
            for k, v in obs.items()
            if k in self.obs_space or k == 'is_first'
        }

    def exploration(self, env_steps):
        """The exploration amount after `env_steps` env steps: `run.expl_noise`,
        decaying linearly by 1 per `run.expl_decay` steps to `run.expl_min`
        (DreamerV1's schedule; RajGhugare19/dreamerv2's epsilon 0.4 - t / 7000 >= 0.05)."""
        run = self.config.run
        if not run.expl_decay:
            return float(run.expl_noise)
        return float(max(run.expl_min, run.expl_noise - env_steps / run.expl_decay))

    def policy_step(self, obs, state, seed, explore, noise=None, sample_latent=False):
        """The policy step `policy` compiles, with an explicit seed: also traced by
        the exporter (export/policy.py), so exported and evaluated policies agree.

        `noise` (a scalar tensor, or None for none) is the exploration amount,
        applied only when `explore`: the exporter leaves it out. `sample_latent`
        samples the posterior also when not exploring (the V1/V2/PlaNet evaluation)."""
        latent, seed_act, seed_noise = self.observe(obs, state, seed, explore or sample_latent)
        action = self.behavior.act(self.wm, latent, seed_act, explore)
        if explore and noise is not None:
            action = self._explore(action, noise, seed_noise)
        if not self.act_space.discrete:
            # V3's Normal actor is unbounded; the env and the replay see actions in [-1, 1].
            action = tf.clip_by_value(action, -1.0, 1.0)
        return action, (latent, action)

    def observe(self, obs, state, seed, sample):
        """The policies' filter step: (posterior latent, action seed, noise seed); the
        latent is sampled with `sample`, else the posterior's mode."""
        latent, prev_action = state
        seed_obs, seed_act, seed_noise = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        seed_pre = tf.random.fold_in(seed, PREPROCESS_STREAM)
        embed = self.wm.encoder(self.wm.preprocess(obs, seed_pre, augment=False))
        latent = self.posterior(latent, prev_action, embed, obs['is_first'], seed_obs, sample)
        return latent, seed_act, seed_noise

    def posterior(self, latent, prev_action, embed, is_first, seed, explore):
        """The policy's filter step: the posterior state after `embed`; without
        `explore` its latent is the mode, as evaluation acts deterministically
        (the posterior's mode and the actor's mode)."""
        latent = self.wm.rssm.obs_step(latent, prev_action, embed, is_first, seed)
        if not explore:
            latent = dict(latent, stoch=self.wm.rssm.latent_dist(latent).mode())
        return latent

    def _explore(self, action, amount, seed):
        """DreamerV1's exploration: additive Gaussian noise (continuous) or epsilon-greedy
        (discrete)."""
        if self.act_space.discrete:
            seed_pick, seed_index = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            random = tf.one_hot(
                tf.random.stateless_uniform(
                    tf.shape(action)[:1], seed_index, 0, self.act_space.n, tf.int32
                ),
                self.act_space.n,
            )
            pick = tf.random.stateless_uniform(tf.shape(action)[:1], seed_pick) < amount
            return tf.where(pick[:, None], random, action)
        noise = amount * tf.random.stateless_normal(tf.shape(action), seed)
        return tf.clip_by_value(action + noise, -1.0, 1.0)

