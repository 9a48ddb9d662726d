#!/usr/bin/env python3
"""The vendor's `python vsx_inference.py ...` with its flags unchanged: the same command as `deploy run`
(see `deploy run --help`), so a vendor README line works after replacing the script's path."""
import sys

from deploy.cli import main

if __name__ == "__main__":
    main(["run", *sys.argv[1:]])
