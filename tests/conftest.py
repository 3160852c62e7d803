"""Test-session set-up shared by all test modules."""

from dreamer_tf.envs.process import keep_gl_out_of_this_process

# TensorFlow and MuJoCo's GL backends cannot share a process (see
# dreamer_tf.envs.process); rendered envs are tested through worker processes.
keep_gl_out_of_this_process()
