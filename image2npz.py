#!/usr/bin/env python3
"""The vendor's `python image2npz.py ...` with its flags unchanged: the same command as `deploy image2npz`
(see `deploy image2npz --help`), so a vendor README line works after replacing the script's path."""
import sys

from deploy.cli import main

if __name__ == "__main__":
    main(["image2npz", *sys.argv[1:]])
