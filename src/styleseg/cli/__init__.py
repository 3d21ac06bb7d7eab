"""The `styleseg` command line: one module per group of subcommands."""
