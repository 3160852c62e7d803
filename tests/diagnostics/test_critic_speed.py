
from dreamer_tf.config import load_config
from dreamer_tf.diagnostics import critic_speed


def test_critic_moves_towards_the_target_and_the_slow_regulariser_holds_it_back():
    measure = critic_speed.measure

    def config(slow_reg):
        overrides = {'critic.layers': 1, 'critic.units': 16, 'critic.slow_reg': slow_reg,
                     'critic_opt.lr': 1e-2, 'actor.layers': 1, 'actor.units': 4}
        return load_config(['dreamerv3'], overrides)

    kw = dict(target=20.0, updates=[1, 40], din=8, batch=32)
    free = measure(config(0.0), **kw)
    held = measure(config(1.0), **kw)
    assert abs(free[0]) < 0.5 and abs(held[0]) < 0.5  # zero-initialised output: value near 0
    assert free[1] > 5.0
    assert 0.0 < held[1] < free[1]
