"""Agent = world model + behaviour: one compiled update and one policy step.

`behavior` selects how actions are chosen:
- `actor_critic` (Dreamer, Dreaming): `train(batch)` runs the whole update
    (world model, imagination, actor, critic, slow critic) as a single
    `tf.function`; `policy(obs, state)` filters the observation into the RSSM
    posterior and samples (or, for evaluation, takes the mode of) the actor.
- `cem` (PlaNet): there is no actor or critic (`behavior` is None); the update
    trains the world model only and the policy step plans with the
    cross-entropy method from the posterior (dreamer_tf/planner.py).
Both run for a batch of environments at once, XLA-compiled when `jit` is on.
"""

import contextlib

import tensorflow as tf

from dreamer_tf import distribute
from dreamer_tf.behavior import ActorCritic
from dreamer_tf.config import ConfigError
from dreamer_tf.optim import Adam
from dreamer_tf.planner import CEM
from dreamer_tf.world_model import WorldModel

PRECISIONS = {'32': tf.float32, '16': tf.float16, 'bf16': tf.bfloat16}
BEHAVIORS = ('actor_critic', 'cem')
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
        raise ConfigError(f'behavior must be one of {BEHAVIORS}, got {config.behavior!r}')


class Agent(tf.Module):
    def __init__(self, obs_space, act_space, config, name='agent'):
        super().__init__(name=name)
        check_config(config)
        self.config = config
        self.obs_space, self.act_space = obs_space, act_space
        self.precision = resolve_precision(config.precision)
        self.strategy = distribute.make_strategy(config)
        self.jit = resolve_jit(config.jit, distributed=self.strategy is not None)
        dtype = PRECISIONS[self.precision]
        if config.behavior == 'cem' and act_space.discrete:
            raise ConfigError(
                'behavior cem (PlaNet) plans continuous actions in [-1, 1]; '
                'this environment has discrete actions'
            )
        # The generator stays outside the strategy: one stream of update seeds.
        self.rng = tf.random.Generator.from_seed(config.seed)
        with self.name_scope, self._scope():
            self.wm = WorldModel(obs_space, act_space, config, dtype)
            scale = self.precision == '16'
            self.model_opt = Adam(
                self.wm.trainable_variables, **config.model_opt, loss_scale=scale, name='model_opt'
            )
            if config.behavior == 'cem':
                self.behavior, self.planner = None, CEM(act_space.n, **config.planner)
            else:
                self._build_actor_critic(dtype, scale)
        # The compiled update with an explicit seed, `update(data, seed)`: what `train`
        # calls, and what the diagnostics time and export (scripts/export_update.py).
        self.update = tf.function(self._train_step, jit_compile=self.jit)
        self._policy = tf.function(self.policy_step, jit_compile=self.jit)

    def _build_actor_critic(self, dtype, scale):
        config = self.config
        self.behavior = ActorCritic(self.wm.rssm.feat_size, self.act_space, config, dtype)
        self.actor_opt = Adam(
            self.behavior.actor.trainable_variables,
            **config.actor_opt,
            loss_scale=scale,
            name='actor_opt',
        )
        self.critic_opt = Adam(
            self.behavior.critic.trainable_variables,
            **config.critic_opt,
            loss_scale=scale,
            name='critic_opt',
        )

    def train(self, data):
        """One update on a batch dict of [B, T, ...] tensors; returns float metrics."""
        return self.update(data, self.rng.make_seeds(1)[:, 0])

    def _train_step(self, data, seed):
        """World model, then actor and critic on imagination from its posterior.

        Each phase computes gradients on the replicas (one device, or the
        rows of each device under `distribute`), then applies their mean once.
        """
        seed_wm, seed_imag = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        grads, start, metrics = self._on_replicas(self._model_grads, data, seed_wm)
        metrics = self._mean(metrics)
        metrics.update(_prefix('model', self.model_opt.apply(self._mean(grads))))
        if self.behavior is None:
            return metrics
        actor_grads, critic_grads, state, behavior_metrics = self._on_replicas(
            self._behavior_grads, start, seed_imag
        )
        metrics.update(self._mean(behavior_metrics))
        actor_metrics = self.actor_opt.apply(self._mean(actor_grads))
        metrics.update(_prefix('actor', actor_metrics))
        metrics.update(_prefix('critic', self.critic_opt.apply(self._mean(critic_grads))))
        # Replicas computed identical statistics from the gathered returns.
        self.behavior.apply_state(self._first(state), actor_metrics['grad_finite'] > 0)
        return metrics

    def _model_grads(self, data, seed):
        data = {k: distribute.local_rows(v) for k, v in data.items()}
        with tf.GradientTape() as tape:
            model_loss, post, metrics = self.wm.loss(data, seed)
        grads = self.model_opt.gradients(tape, model_loss)
        start = {k: tf.reshape(tf.stop_gradient(v), [-1, *v.shape[2:]]) for k, v in post.items()}
        start['cont'] = 1.0 - tf.reshape(tf.cast(data['is_terminal'], tf.float32), [-1])
        return grads, start, metrics

    def _behavior_grads(self, start, seed):
        start = dict(start)
        start_cont = start.pop('cont')
        # The critic's tape opens after the imagination: see ActorCritic.losses.
        with tf.GradientTape() as actor_tape:
            traj = self.behavior.imagine(self.wm, start, start_cont, seed)
            with tf.GradientTape() as critic_tape:
                critic_raw = self.behavior.critic.raw(traj['feat'])
                actor_loss, critic_loss, metrics, state = self.behavior.losses(traj, critic_raw)
        actor_grads = self.actor_opt.gradients(actor_tape, actor_loss)
        critic_grads = self.critic_opt.gradients(critic_tape, critic_loss)
        return actor_grads, critic_grads, state, metrics

    def _scope(self):
        return self.strategy.scope() if self.strategy else contextlib.nullcontext()

    def _on_replicas(self, fn, *args):
        """fn(*args) on one device, or on each replica's rows under `distribute`."""
        if self.strategy is None:
            return fn(*args)

        def replica_fn(*args):
            with distribute.replica_rows():
                return fn(*args)

        return self.strategy.run(replica_fn, args)

    def _mean(self, values):
        """The mean over replicas of each tensor (the all-reduce of gradients and metrics)."""
        if self.strategy is None:
            return values
        reduce = lambda x: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, x, axis=None)
        return tf.nest.map_structure(reduce, values)

    def _first(self, values):
        if self.strategy is None:
            return values
        return tf.nest.map_structure(
            lambda x: self.strategy.experimental_local_results(x)[0], values
        )

    def policy_variables(self):
        """The variables `policy_step` reads: the world model's and the actor's."""
        actor = self.behavior.actor.variables if self.behavior is not None else ()
        return [*self.wm.variables, *actor]

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
        if self.behavior is None:
            # PlaNet: plan from the posterior (CEM samples its own candidates, also in evaluation).
            reward = lambda feat: self.wm.reward(feat).mean()
            action = self.planner(self.wm.rssm, reward, latent, seed_act)
        else:
            dist = self.behavior.actor(self.wm.rssm.feat(latent))
            action = dist.sample(seed_act) if explore else dist.mode()
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
        latent, _ = self.wm.rssm.obs_step(latent, prev_action, embed, is_first, seed)
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


def _prefix(name, metrics):
    return {f'{name}_{k}': v for k, v in metrics.items()}
