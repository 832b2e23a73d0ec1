"""The `tldrlab` command line: one module per verb group, each exposing `register(app)`."""
