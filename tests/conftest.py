import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENDOR_FORMATS = Path(__file__).resolve().parent / "fixtures" / "vendor_formats"
SHARED_VENDOR = Path(os.environ.get("SEGDEPLOY_SHARED", REPO.parent / "shared")) / "reference" / "vendor"


@pytest.fixture(scope="session")
def vendor_dir() -> Path:
    """Our own files in the vendor's formats (both build-YAML schemas, both vdsp JSON formats), so
    the tests need nothing outside the repository."""
    return VENDOR_FORMATS


@pytest.fixture(scope="session")
def shared_vendor_dir() -> Path:
    """The vendor's reference files beside the clone (`../shared`, or $SEGDEPLOY_SHARED), when present."""
    if not SHARED_VENDOR.is_dir():
        pytest.skip(f"no vendor reference files at {SHARED_VENDOR} (set SEGDEPLOY_SHARED to check them)")
    return SHARED_VENDOR
