"""Run an environment in a worker process that never imports TensorFlow.

Why: MuJoCo renders headless through Mesa (EGL or OSMesa), whose llvmpipe
driver and TensorFlow each load their own LLVM; creating a GL context in a
process that has loaded TensorFlow segfaults (checked with TF 2.21, mujoco
3.17, Mesa 22). A worker started with the 'spawn' method holds the
environment and renders safely, and it also moves stepping off the
learner's cores.

A spawned worker re-imports the program's main module, so a script that
starts workers must import TensorFlow inside a function (as scripts/train.py
does), not at the top: otherwise every worker loads TensorFlow too, and a
rendering one crashes. Such a worker reports this as an error instead.
"""

import multiprocessing
import os
import sys
import traceback

from dreamer_tf.envs.base import TaskError

# The backend workers render with: the user's MUJOCO_GL, else EGL. Read at
# import, before `keep_gl_out_of_this_process` changes this process's value.
RENDER_GL = os.environ.get('MUJOCO_GL') or 'egl'


def keep_gl_out_of_this_process():
    """Stop MuJoCo from loading GL in this (TensorFlow) process.

    Even without rendering, dm_control initialises its GL backend on import,
    and with TensorFlow loaded the process then aborts at exit ('free():
    invalid pointer'). Call before dm_control is imported; workers render.
    """
    os.environ['MUJOCO_GL'] = 'disable'


def _work(pipe, make_args, gl_backend):
    os.environ['MUJOCO_GL'] = gl_backend
    from dreamer_tf.envs import make_env

    rendered = str(make_args.get('task')).startswith('dmc_') and make_args.get('obs') == 'vision'
    if rendered and 'tensorflow' in sys.modules:
        # Creating the GL context would segfault without a word.
        pipe.send(('error', (
            'the worker imported TensorFlow while re-importing the main module '
            f'{sys.modules["__main__"].__file__!r}; MuJoCo cannot render in a process with '
            'TensorFlow. Import TensorFlow (and modules that import it) inside a function '
            'of the main module, not at its top.')))
        return
    try:
        env = make_env(**make_args)
        pipe.send(('ok', (env.obs_space, env.act_space)))
    except TaskError as error:  # a bad task or space: its one-line message is the point
        pipe.send(('task_error', str(error)))
        return
    except Exception:  # reported to the parent, which raises it
        pipe.send(('error', traceback.format_exc()))
        return
    try:
        while True:
            command, arg = pipe.recv()
            if command == 'close':
                break
            try:
                result = env.reset() if command == 'reset' else env.step(arg)
                pipe.send(('ok', result))
            except Exception:
                pipe.send(('error', traceback.format_exc()))
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        env.close()


class WorkerFailure(RuntimeError):
    """The worker process died, or did not answer within its timeout."""


# A restarted worker's env is seeded apart from every earlier one.
RESTART_SEED_STRIDE = 100_003


class ProcessEnv:
    """The env built by ``make_env(**make_args)``, stepped in a child process.

    The constructor returns once the worker is started, not built, so that
    several workers start up concurrently; the first use waits for it.
    ``send`` and ``receive`` split a call in two, so that a caller can step
    many workers at once (see `dreamer_tf.envs.parallel.BatchEnv`).

    A worker that dies, or (with ``timeout`` seconds) does not answer in
    time, raises `WorkerFailure`; ``restart`` replaces it with a fresh one.
    An exception inside the env is not a failure of the worker: it is raised
    as a RuntimeError with the worker's traceback.
    """

    def __init__(self, timeout=None, **make_args):
        self.task = make_args.get('task')
        self.timeout = timeout or None
        self.make_args = make_args
        self.restarts = 0
        self._start(make_args)

    def _start(self, make_args):
        context = multiprocessing.get_context('spawn')
        self.pipe, child = context.Pipe()
        self.process = context.Process(
            target=_work, args=(child, make_args, RENDER_GL), daemon=True
        )
        self.process.start()
        child.close()
        self._spaces = None

    def restart(self):
        """Kill the worker and start a new one, its env seeded differently."""
        self._stop(wait=0)
        self.restarts += 1
        args = dict(self.make_args)
        if args.get('seed') is not None:
            args['seed'] = args['seed'] + RESTART_SEED_STRIDE * self.restarts
        spaces = self._spaces
        self._start(args)
        if spaces is not None and self._ready() != spaces:
            raise WorkerFailure(f'restarted worker for {self.task!r} has different spaces')

    @property
    def obs_space(self):
        return self._ready()[0]

    @property
    def act_space(self):
        return self._ready()[1]

    def _ready(self):
        if self._spaces is None:
            self._spaces = self.receive()
        return self._spaces

    def receive(self):
        """The result of the command sent last; raises the worker's errors."""
        # Building an env (the first answer) may take longer than a step.
        timeout = self.timeout and (self.timeout if self._spaces else max(self.timeout, 120))
        try:
            if timeout and not self.pipe.poll(timeout):
                raise WorkerFailure(
                    f'environment worker for {self.task!r} did not answer within {timeout:g} s'
                )
            status, payload = self.pipe.recv()
        except (EOFError, ConnectionError, OSError):
            self.process.join(timeout=1)
            raise WorkerFailure(
                f'environment worker for {self.task!r} died (exit code {self.process.exitcode})'
            ) from None
        if status == 'task_error':
            raise TaskError(payload)
        if status == 'error':
            raise RuntimeError(f'environment worker for {self.task!r} failed:\n{payload}')
        return payload

    def send(self, command, arg=None):
        """Starts ``'reset'`` or ``'step'`` (with the action) in the worker."""
        if command not in ('reset', 'step'):
            raise ValueError(f"command must be 'reset' or 'step', got {command!r}")
        self._ready()
        try:
            self.pipe.send((command, arg))
        except (BrokenPipeError, ConnectionError, OSError):
            raise WorkerFailure(f'environment worker for {self.task!r} died') from None

    def reset(self):
        self.send('reset')
        return self.receive()

    def step(self, action):
        self.send('step', action)
        return self.receive()

    def close(self):
        self._stop(wait=5)

    def _stop(self, wait):
        try:
            self.pipe.send(('close', None))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=wait)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self.pipe.close()
