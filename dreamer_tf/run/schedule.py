"""When the training loop updates, evaluates and films: counted from fixed points, so a
resumed run keeps the schedule it started with."""

from dreamer_tf.config import ConfigError


def check_schedule(run):
    """Fails early, naming the key, on a training schedule the loop cannot follow."""
    if run.train_ratio < 0 or run.pretrain < 0:
        raise ConfigError(
            f'run.train_ratio and run.pretrain must be >= 0, '
            f'got {run.train_ratio} and {run.pretrain}'
        )
    if not run.train_ratio and (run.train_every < 1 or run.train_steps < 0):
        raise ConfigError(
            'with run.train_ratio 0, updates follow run.train_every (>= 1 policy steps) and '
            f'run.train_steps (>= 0); got {run.train_every} and {run.train_steps}'
        )


def schedule_count(step, start, every):
    """How many points of the schedule start, start + every, start + 2 every, ...
    env step `step` has reached (0 if `every` is 0: no schedule).

    Evaluations come at the first env step at or past each point from the end
    of prefill on; videos at the first evaluation at or past each point of
    theirs. Counting from fixed points rather than from the last event keeps a
    resumed run on the schedule it started with: counting from the resumed
    step would put the next evaluation a whole interval after every restart.
    """
    if not every or step < start:
        return 0
    return (step - start) // every + 1


def scheduled_updates(run, since):
    """Total updates due once `since` policy steps have followed prefill (>= 0).

    V3: `train_ratio` replayed steps per policy step; V1/V2: `train_steps`
    updates every `train_every` policy steps, the first batch right after
    prefill. `pretrain` updates come on top, at the end of prefill. The loop
    tops its update count up to this total, so a resumed run repeats nothing.
    """
    if run.train_ratio:
        scheduled = int(since * run.train_ratio / (run.batch_size * run.batch_length))
    else:
        scheduled = (since // run.train_every + 1) * run.train_steps
    return run.pretrain + scheduled
