"""Allows ``python -m yolor_cli``, which torchrun and debuggers need."""

from yolor_cli.app import main

if __name__ == "__main__":
    main()
