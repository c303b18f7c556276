"""Sub-commands of the ``cosmic`` CLI; each module registers its own parser (see cli.py)."""
