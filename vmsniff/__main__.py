"""``python -m vmsniff`` runs the command-line interface."""

from vmsniff.cli import main

if __name__ == "__main__":
    main()
