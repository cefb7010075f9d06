"""``python -m salcli``: the command line (also how ``torchrun -m salcli train`` starts it)."""

from salcli.cli import main

main()
