"""One module per subcommand of `sgm-export`. Each has `register(commands, common)`, which adds its
parser (with `common` as a parent, for --debug and --quiet) and sets `handler` to the function
that runs it and returns the exit code."""
