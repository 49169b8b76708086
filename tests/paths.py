"""Where the tests find the repository, their captured data and the public samples.

The samples (../shared/samples) are third-party outputs that are not copied into the
repository; tests that read them skip when the folder is absent."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
SAMPLES = REPO.parent / "shared" / "samples"
