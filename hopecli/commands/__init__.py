"""One module per `hope` subcommand, each exposing `command`; `summary` holds shared output."""
