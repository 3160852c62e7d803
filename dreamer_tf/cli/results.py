"""Measured results as data (dreamer_tf/results.py): print the table of `results/`, or add
the record of a run.

    dreamer-tf results                       # the Markdown table README.md shows
    dreamer-tf results --render              # results/README.md and results/curves/*.png
    dreamer-tf results --plot curves.png     # the records' learning curves in one PNG
    dreamer-tf eval --logdir runs/cartpole --episodes 10 --json eval.json
    dreamer-tf results add --logdir runs/cartpole --eval eval.json --name dreamerv3-cartpole \\
        --command "dreamer-tf train --configs dreamerv3 gym cpu --logdir runs/cartpole"
"""

import argparse
import sys

from dreamer_tf import results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--folder', default='results', help='where the records are')
    parser.add_argument('--render', action='store_true',
                        help="write FOLDER/README.md (every table) and FOLDER/curves/*.png "
                        "(needs pip install '.[plot]')")
    parser.add_argument('--plot', help="also draw the records' learning curves into this PNG "
                        "(needs pip install '.[plot]')")
    commands = parser.add_subparsers(dest='action')
    add = commands.add_parser('add', help="write results/<name>.yaml from a run and its eval")
    add.add_argument('--logdir', required=True, help='the run directory (config.yaml, metrics)')
    add.add_argument('--eval', required=True, help='the JSON that `dreamer-tf eval --json` wrote')
    add.add_argument('--name', required=True, help='record name: letters, digits, - and _')
    add.add_argument('--command', required=True, help='the training command, as it was run')
    add.add_argument('--machine', default='unknown', help="e.g. '2-core CPU' or '1x H100'")
    add.add_argument('--commit', help='the commit of the code that trained the run '
                     "(default: this checkout's HEAD)")
    add.add_argument('--headline', action='store_true',
                     help="make it a row of README.md's results table")
    args = parser.parse_args(argv)
    try:
        if args.action == 'add':
            if not args.name.replace('-', '').replace('_', '').isalnum():
                parser.error(f'--name {args.name!r}: use letters, digits, - and _')
            record = results.from_run(args.logdir, args.name, args.command, args.eval,
                                      args.machine, args.commit)
            if args.headline:
                record['headline'] = True
            print(f'Wrote {results.write(record, args.folder)}')
        elif args.render:
            for path in results.render(args.folder):
                print(f'Wrote {path}')
        else:
            records = results.load(args.folder)
            print(results.table(records), end='')
            if args.plot:
                print(f'Curves: {results.plot(records, args.plot)}')
    except (results.RecordError, OSError, KeyError) as error:
        sys.exit(f'results error: {error}')


if __name__ == '__main__':
    main()
