"""`python -m provision` runs the command-line interface."""

from provision.cli import main

main()
