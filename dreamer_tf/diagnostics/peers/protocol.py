"""The line protocol between the side-by-side driver (`peers/compare.py`) and one
system's worker process.

Standard library only: the peers' workers run in their own virtual environments (JAX,
PyTorch) and import this file by path. A worker builds its system's training update
at the asked size, observation, action and precision, warms it up, and then times
updates whenever the driver asks, so that the driver can interleave the systems round
by round while the others wait idle. Messages from worker to driver are JSON lines
prefixed by `PREFIX` on stdout; anything else a library prints is ignored.

  worker -> {"ready": true, "params": {...}, "warmup_s": ..., "notes": [...]}
  driver -> "time N"
  worker -> {"times_s": [N wall times of one update each]}
  driver -> "quit" (or closes stdin)
"""

import argparse
import json
import sys
import time

PREFIX = '@@peer '
BATCH, LENGTH = 16, 64  # DreamerV3's batch: 16 sequences of 64 steps


def parser(description):
    """The arguments every worker takes (the driver passes them on)."""
    args = argparse.ArgumentParser(description=description)
    args.add_argument('--size', choices=('xs', 's', 'm'), default='s',
                      help="DreamerV3's model size of the paper (Table: XS, S, M)")
    args.add_argument('--obs', default='vector:17',
                      help="'vector:D' (an MLP encoder) or 'image:HxWxC' (a CNN encoder)")
    args.add_argument('--act', type=int, default=6, help='continuous action dimensions')
    args.add_argument('--precision', choices=('32', 'bf16'), default='32',
                      help='float32, or bfloat16 compute with float32 weights')
    args.add_argument('--platform', choices=('cpu', 'gpu'), default='cpu')
    args.add_argument('--batch', type=int, default=BATCH)
    args.add_argument('--length', type=int, default=LENGTH)
    args.add_argument('--warmup', type=int, default=2, help='updates before `ready`')
    return args


def parse_obs(spec):
    """'vector:17' -> ('vector', (17,)); 'image:64x64x3' -> ('image', (64, 64, 3))."""
    kind, _, shape = spec.partition(':')
    if kind not in ('vector', 'image') or not shape:
        raise SystemExit(f"--obs {spec!r}: expected 'vector:D' or 'image:HxWxC'")
    return kind, tuple(int(d) for d in shape.split('x'))


def combination(args):
    """A name for one (size, observation, precision), e.g. 's-image64x64x3-bf16'."""
    return f"{args.size}-{args.obs.replace(':', '')}-{args.precision}"


def serve(build, warmup=2):
    """Worker side: `build()` returns (update, info). `update()` runs one training update
    and returns once its results are computed (block on them); `info` is a JSON-able
    dict with `params` (trainable parameters by part: world_model, actor, critic) and
    `notes` (how this system's update differs from the others')."""
    start = time.perf_counter()
    update, info = build()
    for _ in range(warmup):
        update()
    emit({'ready': True, 'warmup_s': time.perf_counter() - start, **info})
    for line in sys.stdin:
        command, _, count = line.strip().partition(' ')
        if command == 'quit':
            break
        if command == 'time':
            times = []
            for _ in range(int(count)):
                begin = time.perf_counter()
                update()
                times.append(time.perf_counter() - begin)
            emit({'times_s': times})


def emit(message):
    sys.stdout.write(PREFIX + json.dumps(message) + '\n')
    sys.stdout.flush()
