#!/usr/bin/env python3
"""The vendor's `python vamp_eval.py ...` with its flags unchanged: the same command as `deploy eval`
(see `deploy eval --help`), so a vendor README line works after replacing the script's path."""
import sys

from deploy.cli import main

if __name__ == "__main__":
    main(["eval", *sys.argv[1:]])
