"""The adversarial pass over a training run, as a user's mistakes and accidents would go:
`python tests/adversarial.py [--kills 8] [--seed 0] [--only kill9 index ...]`.

Every try runs `scripts/train.py` (the `debug` preset on CartPole, or a misbehaving env of
tests/faulty_envs.py) in a subprocess, does something to it or to its run directory, and
checks that nothing was lost or silently poisoned: a resume goes on from the newest intact
checkpoint with its numbering, a bad input fails in one line before anything is written, a
stop signal ends the run in bounded time. Prints tries / held / failed per category and
exits 1 if a try failed. Takes about 15 minutes on 2 cores at the defaults.
"""

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(TESTS))

import faulty_envs  # noqa: E402

BASE = ['--configs', 'dreamerv3', 'gym', 'debug', '--run.eval_every', '0', '--run.train_ratio',
        '4']
LAUNCHER = f"""
import sys
sys.path[:0] = [{str(TESTS)!r}, {str(ROOT / 'scripts')!r}]
import faulty_envs, train
train.main()
"""


class Pass:
    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.results = {}
        self.launcher = self.workdir / 'launch.py'
        self.launcher.write_text(LAUNCHER)
        self.count = 0

    def logdir(self):
        self.count += 1
        return self.workdir / f'run{self.count}'

    def record(self, category, ok, detail):
        self.results.setdefault(category, []).append((ok, detail))
        print(f'  [{category}] {"held" if ok else "FAILED"}: {detail}', flush=True)

    def command(self, logdir, *flags):
        return [sys.executable, str(self.launcher), *BASE, '--logdir', str(logdir), *flags]

    def run(self, logdir, *flags, timeout=600):
        return subprocess.run(self.command(logdir, *flags), capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)

    def start(self, logdir, *flags, env=None):
        return subprocess.Popen(self.command(logdir, *flags), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                env={**os.environ, **(env or {})})


def checkpoint_numbers(logdir):
    folder = logdir / 'checkpoints'
    names = folder.glob('ckpt-*.index') if folder.is_dir() else []
    return sorted(int(re.fullmatch(r'ckpt-(\d+)\.index', p.name).group(1)) for p in names)


def resumed_from(stdout):
    match = re.search(r'Resumed from \S*ckpt-(\d+) at ([\d,]+) env steps', stdout)
    return (int(match.group(1)), int(match.group(2).replace(',', ''))) if match else None


def last_line(text):
    """The last line that is not TensorFlow's own logging."""
    lines = [line for line in text.strip().splitlines()
             if not re.match(r'[EIW]\d{4} |WARNING: All log messages', line)]
    return lines[-1] if lines else ''


def finite_replay(logdir):
    for path in (logdir / 'replay').glob('*.npz'):
        with np.load(path) as episode:
            if not all(np.isfinite(episode[k]).all()
                       for k in episode if episode[k].dtype.kind == 'f'):
                return False
    return True


def wait_for(predicate, timeout, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline and not predicate():
        if proc is not None and proc.poll() is not None:
            return False
        time.sleep(0.2)
    return predicate()


def resume_check(p, category, logdir, before, what):
    """A resume after `what` must go on from one of the checkpoints `before` or later."""
    result = p.run(logdir, '--run.steps', str(resume_steps(logdir)))
    got = resumed_from(result.stdout)
    ok = result.returncode == 0 and got is not None and got[0] >= (max(before) - 1 if before else 0)
    if ok and before:
        ok = checkpoint_numbers(logdir)[-1] > got[0]  # numbering went on from it
    p.record(category, ok, f'{what}: resumed from {got} (checkpoints before {before}), '
                           f'exit {result.returncode} {last_line(result.stderr)[:200]}')


def resume_steps(logdir):
    metrics = logdir / 'metrics.jsonl'
    counts = [int(m) for m in re.findall(r'"step": (\d+)', metrics.read_text())] \
        if metrics.exists() else []
    return max(counts, default=0) + 400


def kill9(p, tries, rng):
    for _ in range(tries):
        logdir = p.logdir()
        proc = p.start(logdir, '--run.steps', '1e6', '--run.save_every_secs', '0')
        # Checkpoint N is written at env step N (a save per step, so kills land inside
        # writes too); wait until training has begun after the 64 prefill steps.
        trained = lambda d=logdir: checkpoint_numbers(d)[-1:] >= [100]
        if not wait_for(trained, 300, proc):
            p.record('kill9', False,
                     f'no checkpoint before the kill: {last_line(proc.stderr.read())}')
            continue
        time.sleep(rng.uniform(0, 20))
        proc.kill()
        proc.wait()
        resume_check(p, 'kill9', logdir, checkpoint_numbers(logdir), 'kill -9')


def index(p, tries, rng):
    for i in range(tries):
        logdir = p.logdir()
        p.run(logdir, '--run.steps', '200', '--run.save_every_secs', '0')
        before = checkpoint_numbers(logdir)
        path = logdir / 'checkpoints' / 'checkpoint'
        what = ['deleted', 'truncated', 'emptied', 'garbled'][i % 4]
        if what == 'deleted':
            path.unlink()
        elif what == 'truncated':
            path.write_bytes(path.read_bytes()[:rng.randint(1, 60)])
        elif what == 'emptied':
            path.write_bytes(b'')
        else:
            path.write_bytes(bytes(rng.randrange(256) for _ in range(80)))
        resume_check(p, 'index', logdir, before, f'index {what}')


def corrupt(p, tries, rng):
    for i in range(tries):
        logdir = p.logdir()
        p.run(logdir, '--run.steps', '200', '--run.save_every_secs', '0')
        before = checkpoint_numbers(logdir)
        if i % 2 == 0:  # the newest checkpoint's data: the one before must be taken
            for path in (logdir / 'checkpoints').glob(f'ckpt-{before[-1]}.data-*'):
                path.write_bytes(b'garbage')
            result = p.run(logdir, '--run.steps', '300')
            got = resumed_from(result.stdout)
            p.record('corrupt', result.returncode == 0 and got and got[0] == before[-2],
                     f'newest checkpoint corrupt: resumed from {got}, checkpoints {before}')
        else:  # a replay file: skipped with a warning, the rest kept
            files = sorted((logdir / 'replay').glob('*.npz'))
            victim = rng.choice(files)
            victim.write_bytes(victim.read_bytes()[: rng.randint(0, 200)])
            result = p.run(logdir, '--run.steps', '300')
            ok = result.returncode == 0 and victim.name in result.stderr and resumed_from(
                result.stdout)
            p.record('corrupt', bool(ok), f'replay file {victim.name} cut: exit '
                                          f'{result.returncode}, {last_line(result.stderr)[:150]}')


def concurrent(p, tries, rng):
    for _ in range(tries):
        logdir = p.logdir()
        first = p.start(logdir, '--run.steps', '1e6')
        wait_for((logdir / 'config.yaml').exists, 240, first)
        second = p.run(logdir, '--run.steps', '1e6', timeout=240)
        first.send_signal(signal.SIGTERM)
        code = first.wait(timeout=120)
        ok = (second.returncode == 1 and f'in use by process {first.pid}' in second.stderr
              and code == 0)
        p.record('concurrent', ok, f'second: {last_line(second.stderr)[:120]}; first exit {code}')


def nonfinite(p, tries, rng):
    for i in range(tries):
        logdir = p.logdir()
        env = ['NanObs', 'InfReward'][i % 2]
        mode = ['stop', 'drop'][(i // 2) % 2]
        result = p.run(logdir, '--task', f'gym_DreamerTfTest/{env}-v0', '--run.steps', '300',
                       '--env.nonfinite', mode)
        if mode == 'stop':
            ok = result.returncode == 1 and 'returned a non-finite' in last_line(result.stderr)
        else:
            ok = result.returncode == 0 and 'is dropped' in result.stderr
        ok = ok and finite_replay(logdir)
        p.record('nonfinite', ok, f'{env}, {mode}: exit {result.returncode}, '
                                  f'{last_line(result.stderr)[:150]}')


BAD_VALUES = [['--model_opt.lr', 'nan'], ['--model_opt.lr', '-1'], ['--run.train_ratio', 'nan'],
              ['--run.train_ratio', 'inf'], ['--rssm.deter', '-5'], ['--actor_opt.lr', '0'],
              ['--imag.discount', '2'], ['--run.batch_size', '0'], ['--env.envs', '-1'],
              ['--kl.free', '-1'], ['--configs', 'dreamerv2'], ['--configs', 'planet'],
              ['--seed', '-1'], ['--env.nonfinite', 'ignore']]


def values(p, tries, rng):
    for flags in BAD_VALUES[:tries]:
        logdir = p.logdir()
        result = p.run(logdir, *flags)
        line = last_line(result.stderr)
        ok = result.returncode == 1 and ('error' in line) and not logdir.exists()
        p.record('values', ok, f'{" ".join(flags)}: {line[:150]}')


def hang(p, tries, rng):
    for i in range(tries):
        logdir = p.logdir()
        env = ['Hang', 'StubbornHang'][i % 2]
        flag = p.workdir / f'hung{p.count}'
        proc = p.start(logdir, '--task', f'gym_DreamerTfTest/{env}-v0', '--run.steps', '1e6',
                       '--run.save_every_secs', '1', '--run.stop_grace', '10',
                       env={faulty_envs.HUNG_FLAG: str(flag)})
        if not wait_for(flag.exists, 240, proc):
            p.record('hang', False, f'{env}: the env never hung')
            proc.kill()
            continue
        time.sleep(rng.uniform(0.5, 3))
        start = time.time()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = None
        took = time.time() - start
        p.record('hang', code is not None and took < 20,
                 f'{env}: SIGTERM ended it in {took:.1f} s, exit {code}')
        resume_check(p, 'hang', logdir, checkpoint_numbers(logdir), f'after {env}')


CATEGORIES = {'kill9': kill9, 'index': index, 'corrupt': corrupt, 'concurrent': concurrent,
              'nonfinite': nonfinite, 'values': values, 'hang': hang}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--kills', type=int, default=8, help='kill -9 tries')
    parser.add_argument('--tries', type=int, default=4, help='tries of the other categories')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--only', nargs='+', choices=list(CATEGORIES))
    parser.add_argument('--workdir', help='where the runs go (default: a temporary folder)')
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    workdir = args.workdir or tempfile.mkdtemp(prefix='dreamer_tf_adversarial_')
    Path(workdir).mkdir(parents=True, exist_ok=True)
    p = Pass(workdir)
    print(f'Runs in {workdir}', flush=True)
    for name in args.only or CATEGORIES:
        tries = {'kill9': args.kills, 'values': len(BAD_VALUES)}.get(name, args.tries)
        print(f'{name}: {tries} tries', flush=True)
        CATEGORIES[name](p, tries, rng)
    print('\ncategory     tries  held  failed')
    for name, results in p.results.items():
        held = sum(ok for ok, _ in results)
        print(f'{name:<12} {len(results):>5} {held:>5} {len(results) - held:>7}')
    failed = sum(not ok for results in p.results.values() for ok, _ in results)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
