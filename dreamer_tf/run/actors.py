"""`distribute.actors: N`: collection by Ray actors, each with its own envs and policy copy.

The learner (`run/loop.py` `Session`, in the training process) keeps the replay, the
counters, evaluation, logs and checkpoints, as in the other modes. Each actor
(`EnvActor`, a Ray actor process on this machine or on any node of the cluster at
`distribute.address`) builds `env.envs` envs from the config, acts with a copy of the
policy, and returns chunks of `distribute.chunk` lockstep steps: every env's steps with
the action that led to each, in the order they happened. The learner stores them in its
replay as it stores its own envs' steps (the atomic episode files of `replay.py`).

The train ratio holds as in the other modes: after each chunk the learner runs the
updates that chunk made due, and only then asks that actor for its next chunk, while
the other actors keep collecting; so the actors run at most one chunk each ahead of the
schedule, and a run ends with the sync loop's update count. Weights go to an actor with
its next request whenever the learner has made `run.policy_refresh` updates since the
last copy; each chunk says the policy version (learner update count) it acted with.

When an actor fails (its process died, or it raised), the learner drops the unfinished
episodes of its envs and goes on. Ray restarts an actor whose process died; one that
raised, or answered "unavailable" while alive (a network blip), lives on with its envs
mid-episode, so the learner's next request to a failed actor asks it to start new
episodes in all its envs first: a stored episode never has a gap. While Ray restarts an
actor (a new process imports TensorFlow and builds its envs: seconds, minutes on a loaded
machine), requests answered "unavailable" are asked again, up to RESTART_SECONDS. An
actor that fails FAILURES times in a row without a chunk (an env that cannot start, say)
stops the run with its error.
Actors are Ray processes that import TensorFlow for their policy: envs that render
MuJoCo step in worker processes of their own (`env.process`), as in the training
process, with the backend this process would render with (envs/process.py RENDER_GL).
"""

import time

import numpy as np

from dreamer_tf.agent import Agent
from dreamer_tf.config import ConfigError
from dreamer_tf.envs.from_config import envs_from_config
from dreamer_tf.envs.process import RENDER_GL, keep_gl_out_of_this_process
from dreamer_tf.run.collect import (
    Collector,
    lockstep_events,
    random_action,
    reset_events,
    stack_obs,
)

# Seeds of actor i's envs start at seed + ACTOR_SEED * (i + 1): apart from the loop's
# evaluation envs (envs/from_config.py LOOP_EVAL_SEED, EVAL_SEED).
ACTOR_SEED = 100_000
FAILURES = 3
RESTART_SECONDS = 600.0


def check_actors(config):
    """Fails, naming the key, on a distribute block that cannot start actors."""
    dist = config.distribute
    if dist.actors < 0:
        raise ConfigError(f'distribute.actors must be >= 0, got {dist.actors}')
    if not dist.actors:
        return
    if config.run.mode != 'async':
        raise ConfigError('distribute.actors collect beside the learner: set run.mode async')
    if dist.chunk < 1:
        raise ConfigError(f'distribute.chunk must be >= 1, got {dist.chunk}')
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError('distribute.actors needs Ray: pip install "dreamer_tf[ray]"') from None


class EnvActor:
    """One actor's envs and policy (run remotely by `Actors`, or in-process by tests)."""

    def __init__(self, config, index, env_fn=None):
        keep_gl_out_of_this_process()
        # The policy runs here on one device; the learner's strategy is its own business.
        config = config.update({'distribute.strategy': 'none', 'distribute.actors': 0})
        self.config = config
        seed = config.seed + ACTOR_SEED * (index + 1)
        self.envs = envs_from_config(config, config.env.envs, seed, factory=env_fn)
        self.agent = Agent(self.envs.obs_space, self.envs.act_space, config)
        self.rng = np.random.default_rng(seed)
        self.collector = Collector(self.envs, config.env.action_repeat)
        self.no_action = np.zeros(self.envs.act_space.n, np.float32)
        self.version = -1
        self._start_episodes()

    def _start_episodes(self):
        """Resets every env; their first steps go out with the next chunk."""
        self.pending = reset_events(self.collector, self.no_action)
        self.state = self.agent.initial_state(len(self.envs))

    def collect(self, steps, env_steps, weights=None, version=None, fresh=False):
        """`steps` lockstep steps from the learner's count `env_steps` (prefill acts at
        random), after loading `weights` (numpy arrays of `policy_variables`) if given,
        and, with `fresh`, after starting new episodes in every env that is mid-episode
        (the learner dropped this actor's unfinished ones). Returns (events, version): one
        (worker, step in replay form, whether it starts an episode, the episode it ends
        or None) per env step (`lockstep_events`)."""
        if weights is not None:
            for variable, value in zip(self.agent.policy_variables(), weights):
                variable.assign(value)
            self.version = version
        if fresh and not self.pending:  # pending: its envs were just reset
            self._start_episodes()
        events, self.pending = self.pending, []
        width = len(self.envs) * self.config.env.action_repeat
        for _ in range(steps):
            actions, version = self._actions(env_steps)
            events += lockstep_events(self.collector, actions, self.no_action, version)
            env_steps += width
        return events, self.version

    def _actions(self, env_steps):
        """Every env's action, and the version of the policy that chose them."""
        envs = self.envs
        if env_steps < self.config.run.prefill:
            return [random_action(envs.act_space, self.rng) for _ in range(len(envs))], -1
        action, self.state = self.agent.policy(
            stack_obs(self.collector.obs, envs.obs_space), self.state, env_steps=env_steps)
        return list(action.numpy()), self.version

    def close(self):
        self.envs.close()


class Actors:
    """`count` remote EnvActors, each asked for one chunk at a time (module docstring)."""

    def __init__(self, config, count, envs_each, spec, env_fn=None):
        import ray

        dist = config.distribute
        self.started = not ray.is_initialized()
        if self.started:
            address = None if dist.address == 'local' else dist.address
            cpus = {'num_cpus': count} if address is None else {}
            ray.init(address=address, include_dashboard=False, log_to_driver=False, **cpus)
        self.ray, self.chunk, self.envs_each = ray, dist.chunk, envs_each
        self.obs_space, self.act_space = spec['obs_space'], spec['act_space']
        # The training process has set MUJOCO_GL to 'disable' for itself (keep_gl_out_of_
        # this_process), and Ray's processes inherit its environment.
        remote = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0,
                            runtime_env={'env_vars': {'MUJOCO_GL': RENDER_GL}})(EnvActor)
        self.handles = [remote.remote(config, i, env_fn) for i in range(count)]
        self.running = {}  # object ref -> actor index
        self.weights = None  # (object ref of the learner's policy weights, version)
        self.sent = [None] * count  # the version each actor last received
        self.failures = [0] * count  # each actor's failures since its last chunk
        self.asked = [0] * count  # the env step count of each actor's latest request
        self.unavailable = {}  # actor index -> when its requests began to fail so
        self.retries = {}  # actor index -> when to send its unavailable request again
        self.dropped = set()  # actors whose unfinished episodes the learner dropped

    def request(self, index, env_steps):
        """Asks actor `index` for its next chunk, with the newest weights it lacks, and to
        start new episodes if the learner dropped its unfinished ones."""
        self.asked[index] = env_steps
        weights, version = self.weights or (None, None)
        if self.sent[index] == version:
            weights, version = None, None
        else:
            self.sent[index] = version
        ref = self.handles[index].collect.remote(self.chunk, env_steps, weights, version,
                                                 fresh=index in self.dropped)
        self.running[ref] = index

    def publish(self, values, version):
        """The learner's policy weights (numpy arrays), sent with each actor's next request."""
        self.weights = (self.ray.put(values), version)

    def next(self, timeout=1.0):
        """Waits up to `timeout` seconds for a chunk: None, or (actor index, events,
        version) with events None if the actor failed."""
        now = time.monotonic()
        for index in [i for i, due in self.retries.items() if due <= now]:
            del self.retries[index]
            self.request(index, self.asked[index])
        if not self.running:  # every actor is restarting and will be asked again
            time.sleep(timeout)
            return None
        ready, _ = self.ray.wait(list(self.running), num_returns=1, timeout=timeout)
        if not ready:
            return None
        ref = ready[0]
        index = self.running.pop(ref)
        try:
            events, version = self.ray.get(ref)
        except self.ray.exceptions.ActorUnavailableError as error:
            return self._unavailable(index, error)
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.RayTaskError) as error:
            return self._failed(index, error)
        self.failures[index] = 0
        self.unavailable.pop(index, None)
        self.dropped.discard(index)
        return index, events, version

    def _unavailable(self, index, error):
        """Ray could not reach the actor (its process ended and Ray restarts it, or it
        lives on behind a network blip): the first time, a failure that does not count
        towards FAILURES (the restart should recover); then, while the restart lasts, the
        same request again a second later (`next` sends it), up to RESTART_SECONDS."""
        since = self.unavailable.get(index)
        if since is None:
            self.unavailable[index] = time.monotonic()
            return self._lost(index)
        if time.monotonic() - since > RESTART_SECONDS:
            return self._failed(index, error)
        self.retries[index] = time.monotonic() + 1.0
        return None

    def _failed(self, index, error):
        self.unavailable.pop(index, None)
        self.failures[index] += 1
        if self.failures[index] >= FAILURES:
            raise RuntimeError(f'actor {index} failed {FAILURES} times in a row without '
                               f'collecting; its last error: {_last_lines(error)}') from None
        return self._lost(index)

    def _lost(self, index):
        """A failure the learner answers by dropping the actor's unfinished episodes: its
        next request resends the weights (a restarted actor has its initial ones) and asks
        for new episodes."""
        self.sent[index] = None
        self.dropped.add(index)
        return index, None, None

    def worker(self, index, worker):
        """The replay's worker id of an actor's env."""
        return index * self.envs_each + worker

    def __len__(self):
        return len(self.handles) * self.envs_each

    def close(self):
        for handle in self.handles:
            self.ray.kill(handle)
        if self.started:
            self.ray.shutdown()


def _last_lines(error, count=3):
    """The end of a remote error's text: Ray puts the cause after the traceback."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return ' '.join(line.strip() for line in lines[-count:])
