"""One module per `hope` subcommand, each exposing `command`."""
