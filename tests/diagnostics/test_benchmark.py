"""The benchmark's measurements: FLOP counts against hand-computed values, replay bytes."""

import numpy as np
import tensorflow as tf

from dreamer_tf.diagnostics import benchmark
from dreamer_tf.envs.base import ActSpace, Space


def test_flops_of_a_scan_and_its_gradient():
    w = tf.Variable(tf.ones((8, 8)))

    @tf.function
    def fn(x):
        with tf.GradientTape() as tape:
            y = tf.scan(lambda a, e: tf.tanh(a @ w) + e, x, initializer=tf.zeros((4, 8)))
            loss = tf.reduce_sum(y)
        return tape.gradient(loss, w)

    # 5 steps x (forward a@w + gradient wrt a + gradient wrt w), each 2*4*8*8 FLOPs.
    assert benchmark.graph_flops(fn, tf.zeros((5, 4, 8))) == 5 * 3 * 2 * 4 * 8 * 8


def test_flops_follow_loop_counts_into_nested_functions():
    # A persistent tape wraps loops and their gradients in function calls whose
    # trip counts arrive as function inputs and outputs; unused gradients are pruned.
    w = tf.Variable(tf.ones((8, 8)))
    v = tf.Variable(tf.ones((8, 3)))

    @tf.function
    def fn(x):
        with tf.GradientTape(persistent=True) as tape:
            y = tf.scan(lambda a, e: tf.tanh(a @ w) + e, x, initializer=tf.zeros((4, 8)))
            head = tf.reduce_sum(tf.square(y @ v))  # its gradient needs y @ v
        return tape.gradient(head, w), tape.gradient(head, v)

    scan = 7 * 3 * 2 * 4 * 8 * 8  # forward, d/da, d/dw over 7 steps
    head = 3 * 2 * (7 * 4) * 8 * 3  # y @ v: forward, d/dy (for w's gradient) and d/dv
    assert benchmark.graph_flops(fn, tf.zeros((7, 4, 8))) == scan + head


def test_flops_of_a_convolution_and_its_gradients():
    w = tf.Variable(tf.ones((4, 4, 3, 8)))

    @tf.function
    def fn(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, w, 2, 'SAME')
            loss = tf.reduce_sum(tf.square(y))  # its gradient needs y
        return tape.gradient(loss, [x, w])

    forward = 2 * (2 * 8 * 8 * 8) * (4 * 4 * 3)  # output elements x kernel multiply-adds
    assert benchmark.graph_flops(fn, tf.zeros((2, 16, 16, 3))) == 3 * forward


def test_replay_bytes_per_step_keep_images_uint8():
    obs_space = {'image': Space((16, 16, 3), np.uint8), 'vector': Space((5,), np.float32)}
    per_step = benchmark.replay_bytes_per_step(obs_space, ActSpace(False, 2), steps=200)
    # image uint8, vector and action float32, reward float32, three bool flags.
    exact = 16 * 16 * 3 + 5 * 4 + 2 * 4 + 4 + 3
    assert exact <= per_step <= exact + 16  # plus the .npz headers, shared by 200 steps


def test_op_profile_finds_the_matmuls_of_a_loop():
    # A loop of matmuls and cheap element-wise ops: the profile names the matmul
    # (oneDNN's `_MklMatMul` on this CPU) as the costliest op type.
    @tf.function
    def fn(x):
        for _ in tf.range(20):
            x = tf.matmul(x, x) * 1e-3 + 1.0
        return x

    x = tf.random.normal((256, 256))
    fn(x)
    times = benchmark.op_profile(fn, x)
    assert times and all(seconds > 0 for seconds in times.values())
    assert 'MatMul' in next(iter(times)), times
