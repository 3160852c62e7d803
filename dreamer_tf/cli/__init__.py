"""The `dreamer-tf` command: `dreamer-tf <command> [args]` (also `python -m dreamer_tf`).

Each command is a module of this package with a `main(argv)`; `scripts/<command>.py`
runs the same function. A command module imports TensorFlow only inside functions:
environment worker processes re-import the main module, and a rendering one must not
load TensorFlow.
"""

import importlib
import sys
from pathlib import Path

COMMANDS = {
    'train': 'train an agent from named presets, or resume a run',
    'eval': "evaluate a run's policy (returns, videos, dreams)",
    'diagnose': "look inside a run: episode traces, action probes, planning over its model",
    'export': "export a run's policy to SavedModel, ONNX and TFLite",
    'serve': 'run an exported ONNX or TFLite policy in its env and report returns',
    'reproduce': "train and evaluate under a paper's protocol; report against its table",
    'plot': 'learning curves of runs',
    'results': 'the results table from results/*.yaml, or add the record of a run',
    'benchmark': 'update time, FLOPs, memory and policy latency on synthetic batches',
}


def run_directory(logdir):
    """`logdir` as a Path, or exit naming why it is not a run directory of `train`. The
    commands that restore a run call it first; it also keeps MuJoCo's GL out of their
    process, which imports TensorFlow (dreamer_tf/envs/process.py)."""
    logdir = Path(logdir).expanduser()
    if not (logdir / 'config.yaml').exists():
        sys.exit(f'error: {logdir} has no config.yaml; is it a run directory of train?')
    from dreamer_tf.envs.process import keep_gl_out_of_this_process

    keep_gl_out_of_this_process()
    return logdir


def usage():
    width = max(map(len, COMMANDS))
    lines = ['usage: dreamer-tf <command> [args]   (dreamer-tf <command> --help)', '',
             'commands:']
    lines += [f'  {name:<{width}}  {text}' for name, text in COMMANDS.items()]
    return '\n'.join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(usage())
        return 0
    command, args = argv[0], argv[1:]
    if command not in COMMANDS:
        sys.exit(f'unknown command {command!r}\n{usage()}')
    # The command's own name in its usage lines: `dreamer-tf train`, not `dreamer-tf`.
    sys.argv = [f'dreamer-tf {command}', *args]
    # Commands fail through sys.exit; what a main returns is for Python callers (serve's
    # returns), not an exit status.
    importlib.import_module(f'dreamer_tf.cli.{command}').main(args)
    return 0
