"""Compare an exported model with the TensorFlow policy over a rollout with carried state.

Inputs are random observations with episode starts sprinkled in; each side
carries its own recurrent state from its own outputs, so errors compound over
the rollout exactly as they would on a device.
"""

import numpy as np
import tensorflow as tf

from dreamer_tf_export import metadata


def random_inputs(meta, steps=50, batch=2, seed=0, restart=0.05):
    """Per-step input dicts: random observations and noise; `is_first` at step 0 and at random."""
    rng = np.random.default_rng(seed)
    sequence = []
    for t in range(steps):
        inputs = {}
        for key, spec in meta['observations'].items():
            shape, dtype = (batch, *spec['shape']), np.dtype(spec['dtype'])
            if dtype == np.uint8:
                inputs[key] = rng.integers(0, 256, shape, np.uint8)
            else:
                inputs[key] = (2 * rng.standard_normal(shape)).astype(dtype)
        inputs['is_first'] = np.full(batch, True) if t == 0 else rng.random(batch) < restart
        for key, spec in meta['noise'].items():
            shape = (batch, *spec['shape'])
            if spec['dist'] == 'normal':
                inputs[key] = rng.standard_normal(shape, np.float32)
            else:
                inputs[key] = np.maximum(rng.random(shape, np.float32), np.float32(1e-20))
        sequence.append(inputs)
    return sequence


def rollout(run_step, meta, sequence):
    """Runs `run_step(inputs) -> {action, next_deter, next_stoch}` carrying its own state."""
    state = metadata.initial_state(meta, len(sequence[0]['is_first']))
    outputs = []
    for inputs in sequence:
        out = run_step({**inputs, **state})
        out = {k: np.asarray(out[k]) for k in metadata.STEP_OUTPUTS}
        state = {
            'deter': out['next_deter'],
            'stoch': out['next_stoch'],
            'prev_action': out['action'],
        }
        outputs.append(out)
    return outputs


def agent_rollout(agent, sequence):
    """The agent's own deterministic policy (`Agent.policy(explore=False)`), as evaluation
    runs it."""
    state = agent.initial_state(len(sequence[0]['is_first']))
    outputs = []
    for inputs in sequence:
        action, state = agent.policy(inputs, state, explore=False)
        latent = state[0]
        outputs.append(
            {
                'action': action.numpy(),
                'next_deter': latent['deter'].numpy(),
                'next_stoch': latent['stoch'].numpy(),
            }
        )
    return outputs


# Documented bounds (docs/export.md). float32: closed-loop rollout, max abs error.
# Quantised: one step at a time (`teacher_forced`): max abs error of the GRU state,
# mean abs error of continuous actions, rate of differing discrete actions.
TOLERANCE = {
    'float32': {'action': 1e-4, 'next_deter': 1e-4, 'next_stoch': 1e-4, 'action_mismatch_rate': 0},
    'float16': {'next_deter': 2e-3, 'action_mean': 5e-3, 'action_mismatch_rate': 0.02},
    'int8': {'next_deter': 5e-2, 'action_mean': 5e-2, 'action_mismatch_rate': 0.1},
}


def violations(errors, variant):
    """The entries of `errors` over the variant's tolerance (empty when it passes)."""
    bounds = TOLERANCE[variant]
    return {k: v for k, v in errors.items() if k in bounds and v > bounds[k]}


def compare(reference, outputs, discrete):
    """Max abs errors over the rollout; also the rate of differing discrete actions, or
    the mean abs error of continuous actions."""
    stack = lambda outs, k: np.stack([o[k] for o in outs])
    errors = {
        k: float(np.abs(stack(reference, k) - stack(outputs, k)).max())
        for k in metadata.STEP_OUTPUTS
    }
    expected, got = stack(reference, 'action'), stack(outputs, 'action')
    if discrete:
        errors['action_mismatch_rate'] = float((expected.argmax(-1) != got.argmax(-1)).mean())
    else:
        errors['action_mean'] = float(np.abs(expected - got).mean())
    return errors


def runner(path, meta):
    """A step function over numpy dicts for the model at `path`, in its format."""
    if meta['format'] == 'savedmodel':
        signature = tf.saved_model.load(str(path)).signatures['step']
        return lambda inputs: {k: v.numpy() for k, v in signature(**inputs).items()}
    if meta['format'] == 'onnx':
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        return lambda inputs: dict(
            zip(metadata.STEP_OUTPUTS, session.run(list(metadata.STEP_OUTPUTS), inputs))
        )
    interpreter = tf.lite.Interpreter(model_path=str(path))
    signature = interpreter.get_signature_runner('step')
    return lambda inputs: signature(**inputs)


def policy_runner(policy):
    """The in-memory ExportPolicy's step (the graph every format is converted from)."""
    return lambda inputs: {
        k: v.numpy()
        for k, v in policy.step(*(tf.constant(inputs[name]) for name in policy.input_names)).items()
    }


def teacher_forced(run_step, meta, sequence, reference):
    """One step at a time from the reference's own state: the error a step adds, not compounds.

    Quantised models are judged this way: in closed loop, one flipped arg-max
    of a categorical latent changes the whole later trajectory.
    """
    state = metadata.initial_state(meta, len(sequence[0]['is_first']))
    outputs = []
    for inputs, ref in zip(sequence, reference):
        out = run_step({**inputs, **state})
        outputs.append({k: np.asarray(out[k]) for k in metadata.STEP_OUTPUTS})
        state = {
            'deter': ref['next_deter'],
            'stoch': ref['next_stoch'],
            'prev_action': ref['action'],
        }
    return outputs


def check(path, meta, agent=None, policy=None, steps=50, batch=2, seed=0, forced=False):
    """Errors of the model at `path` against the agent (deterministic) or `policy` (stochastic).

    forced: compare one step at a time from the reference state (`teacher_forced`)
    instead of a closed-loop rollout.
    """
    sequence = random_inputs(meta, steps, batch, seed)
    if meta['mode'] == 'deterministic':
        reference = agent_rollout(agent, sequence)
    else:
        reference = rollout(policy_runner(policy), meta, sequence)
    run_step = runner(path, meta)
    if forced:
        outputs = teacher_forced(run_step, meta, sequence, reference)
    else:
        outputs = rollout(run_step, meta, sequence)
    return compare(reference, outputs, meta['action_space']['discrete'])
