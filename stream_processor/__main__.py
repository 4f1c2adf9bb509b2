"""``python -m stream_processor``: the command line."""

from .cli import main

main()
