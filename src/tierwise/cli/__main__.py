"""`python -m tierwise.cli`."""

from tierwise.cli import main

main()
