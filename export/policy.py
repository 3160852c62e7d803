"""The exportable policy: one recurrent step of a trained agent with its state passed explicitly.

`ExportPolicy(agent)` holds the agent's own encoder, RSSM and actor (the only
variables a saved policy needs; the world model's decoder and heads, the critic
and the optimisers stay behind) and two `tf.function`s with flat, named inputs:

    step(<obs keys>..., is_first, prev_action, deter, stoch[, latent_noise, action_noise])
        -> {action, next_deter, next_stoch}
    initial_state(batch_size) -> {deter, stoch, prev_action}

Deterministic mode runs `Agent.policy_step(..., explore=False)` itself: the
posterior's mode (mean for a Gaussian latent, arg-max one-hot for a categorical
one) and the actor's mode, continuous actions clipped to [-1, 1]. `is_first`
is an input: where it is set the step restarts from the initial state (learned
or zeros) and a zero previous action, exactly as the agent does.

Stochastic mode samples the posterior and the actor as `explore=True` does, but
from noise given as inputs rather than from random ops, so that the graph
converts to every format (TFP's `.sample()` does not convert to ONNX) and a
seeded numpy generator on the device reproduces a run:
- categorical latent / one-hot actor: Gumbel-max, noise uniform in (0, 1);
- Gaussian latent, 'normal' and 'tanh_normal' actors: mean + std * noise,
  noise standard normal;
- 'trunc_normal' actor (DreamerV2): the first of TRUNC_CANDIDATES candidates
  mean + std * noise that lies in [-1, 1] (rejection sampling; if none does,
  the mean; the chance is below 1e-11 per dimension at the largest std).
The training-time exploration noise `run.expl_noise` is not part of the policy
and is left out.
"""

import re

import tensorflow as tf

from dreamer_tf_export import metadata

TRUNC_CANDIDATES = 64
# Names must be valid SavedModel signature keys and ONNX/TFLite tensor names.
NAME = re.compile(r'[A-Za-z][A-Za-z0-9_]*')
# The agent's step draws its (here unused) samples from a seed; any constant will do.
UNUSED_SEED = (0, 0)


class ExportError(ValueError):
    """The agent or run cannot be exported as a policy step."""


class ExportPolicy(tf.Module):
    def __init__(self, agent, stochastic=False, name='policy'):
        super().__init__(name=name)
        if not agent.behavior.exportable:
            raise ExportError(planet_message())
        if agent.precision != '32' or agent.jit:
            raise ExportError(
                'build the agent with precision 32 and jit off for export '
                f'(got precision {agent.precision}, jit {agent.jit}); '
                'dreamer_tf_export.checkpoint.load_run does this'
            )
        self.stochastic = stochastic
        self.act_space = agent.act_space
        self.discrete = agent.act_space.discrete
        self.actor_kind = agent.behavior.actor.kind
        rssm = agent.wm.rssm
        # Tracked so that a SavedModel holds exactly these variables.
        self.encoder, self.rssm, self.actor = agent.wm.encoder, rssm, agent.behavior.actor
        self.obs_keys = list(self.encoder.cnn_keys) + list(self.encoder.mlp_keys)
        for key in self.obs_keys:
            if not NAME.fullmatch(key) or key in metadata.RESERVED:
                raise ExportError(
                    f'observation key {key!r} cannot name a model input: it must match '
                    f'{NAME.pattern} and not be one of {sorted(metadata.RESERVED)}'
                )
        self.obs_spaces = {k: agent.obs_space[k] for k in self.obs_keys}
        self.state_sizes = {
            'deter': rssm.deter,
            'stoch': rssm.stoch_size,
            'prev_action': agent.act_space.n,
        }
        self.noise = self._noise_spec(rssm, agent.act_space.n) if stochastic else {}
        self.input_specs = [
            *(tf.TensorSpec((None, *s.shape), s.dtype, name=k) for k, s in self.obs_spaces.items()),
            tf.TensorSpec((None,), tf.bool, name='is_first'),
            *(
                tf.TensorSpec((None, self.state_sizes[k]), tf.float32, name=k)
                for k in ('prev_action', 'deter', 'stoch')
            ),
            *(
                tf.TensorSpec((None, *n['shape']), tf.float32, name=k)
                for k, n in self.noise.items()
            ),
        ]
        self.input_names = [spec.name for spec in self.input_specs]

        def step(*inputs):
            inputs = dict(zip(self.input_names, inputs))
            obs = {k: inputs[k] for k in (*self.obs_keys, 'is_first')}
            latent = {k: inputs[k] for k in metadata.STATE_KEYS}
            if stochastic:
                action, latent = self._sample_step(agent, obs, latent, inputs)
            else:
                action, (latent, _) = agent.policy_step(
                    obs, (latent, inputs['prev_action']), tf.constant(UNUSED_SEED), False
                )
            return {'action': action, 'next_deter': latent['deter'], 'next_stoch': latent['stoch']}

        def initial_state(batch_size):
            latent, prev_action = agent.initial_state(batch_size)
            return {'deter': latent['deter'], 'stoch': latent['stoch'], 'prev_action': prev_action}

        self.step = tf.function(step, input_signature=self.input_specs, jit_compile=False)
        self.initial_state = tf.function(
            initial_state,
            input_signature=[tf.TensorSpec((), tf.int32, name='batch_size')],
            jit_compile=False,
        )

    def _noise_spec(self, rssm, act_dim):
        if rssm.classes:
            latent = {'shape': [rssm.stoch, rssm.classes], 'dist': 'uniform'}
        else:
            latent = {'shape': [rssm.stoch], 'dist': 'normal'}
        if self.discrete:
            action = {'shape': [act_dim], 'dist': 'uniform'}
        elif self.actor_kind == 'trunc_normal':
            action = {'shape': [TRUNC_CANDIDATES, act_dim], 'dist': 'normal'}
        else:
            action = {'shape': [act_dim], 'dist': 'normal'}
        return {'latent_noise': latent, 'action_noise': action}

    def _sample_step(self, agent, obs, latent, inputs):
        """`Agent.policy_step(explore=True)` with the posterior and actor sampled from inputs."""
        # The agent's own filter step (preprocessing, encoder, posterior): its latent
        # carries the posterior's parameters, so only the sampling is done here.
        _, (post, _) = agent.policy_step(
            obs, (latent, inputs['prev_action']), tf.constant(UNUSED_SEED), False
        )
        rssm, noise = self.rssm, inputs['latent_noise']
        if rssm.classes:
            stoch = tf.reshape(_gumbel_max(post['logit'], noise), [-1, rssm.stoch_size])
        else:
            stoch = post['mean'] + post['std'] * noise
        post = dict(post, stoch=stoch)
        dist = self.actor(rssm.feat(post))
        noise = inputs['action_noise']
        if self.discrete:
            action = _gumbel_max(dist.logits, noise)
        elif self.actor_kind == 'trunc_normal':
            inner = dist.dist.distribution
            action = _first_inside(inner.loc, inner.scale, noise)
        else:
            action = dist.loc + dist.std * noise
            action = tf.tanh(action) if dist.squash else action
            # As the agent: the unbounded 'normal' actor's samples are clipped for the env.
            action = tf.clip_by_value(action, -1.0, 1.0)
        return action, post

    def describe(self):
        """The model-dependent part of the metadata (the exporter adds the run's part)."""
        init = {k: v.numpy()[0] for k, v in self.initial_state(tf.constant(1)).items()}
        return {
            'mode': 'stochastic' if self.stochastic else 'deterministic',
            'observations': {
                k: {'shape': list(s.shape), 'dtype': s.dtype.name}
                for k, s in self.obs_spaces.items()
            },
            'state': {k: [n] for k, n in self.state_sizes.items()},
            # float() of a float32 prints its shortest repr, which reads back to the same float32.
            'initial_state': {k: [float(x) for x in v] for k, v in init.items()},
            'inputs': self.input_names,
            'outputs': list(metadata.STEP_OUTPUTS),
            'noise': self.noise,
            'actor': self.actor_kind,
        }


def planet_message():
    return (
        "PlaNet (algo 'planet', behavior 'cem') has no actor: it plans each action with CEM over "
        'the learned model (many imagined rollouts per step), which is not a single '
        'recurrent policy step and is not exportable. Export a preset with an actor '
        '(dreamerv1, dreamerv2, dreamerv3, dreamingv1, dreamingv2).'
    )


def _gumbel_max(logits, uniform):
    """One-hot of the Gumbel-max sample: arg max(logits - log(-log u)), u uniform in (0, 1)."""
    index = tf.argmax(logits - tf.math.log(-tf.math.log(uniform)), -1, output_type=tf.int32)
    return tf.one_hot(index, logits.shape[-1])


def _first_inside(loc, scale, normal):
    """Rejection sampling of N(loc, scale) truncated to [-1, 1] from candidates [B, K, A]."""
    candidates = loc[:, None] + scale[:, None] * normal
    inside = tf.abs(candidates) <= 1.0
    # argmax of the 0/1 mask is the first accepted candidate; none accepted falls back to loc.
    first = tf.argmax(tf.cast(inside, tf.int32), 1, output_type=tf.int32)
    chosen = tf.reduce_sum(candidates * tf.one_hot(first, normal.shape[1], axis=1), 1)
    return tf.where(tf.reduce_any(inside, 1), chosen, loc)
