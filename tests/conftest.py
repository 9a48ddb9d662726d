import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENDOR = Path(os.environ.get("SEGDEPLOY_SHARED", REPO.parent / "shared")) / "reference" / "vendor"


@pytest.fixture(scope="session")
def vendor_dir() -> Path:
    if not VENDOR.is_dir():
        pytest.fail(f"vendor reference files not found at {VENDOR} (set SEGDEPLOY_SHARED)")
    return VENDOR
