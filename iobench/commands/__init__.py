"""One module per `iobench` command that has moved out of cli.py (as asv keeps `commands/`): each has
`add_parser(subparsers)` and `run(args) -> exit code`, which tests can call directly. cli.py parses,
dispatches and turns a UserError into one line and exit 2."""
