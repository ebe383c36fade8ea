"""A module the warm server imports after it is ready (`preload_after_ready`, the launcher's
tests): its import waits (at most 120 s) for the file DFP_TEST_LATER_GO names to exist, then
writes the importing process's id to DFP_TEST_LATER_DONE."""

import os
import time
from pathlib import Path

if os.environ.get("DFP_TEST_LATER_GO"):
    _deadline = time.monotonic() + 120
    while not Path(os.environ["DFP_TEST_LATER_GO"]).exists() and time.monotonic() < _deadline:
        time.sleep(0.05)
    Path(os.environ["DFP_TEST_LATER_DONE"]).write_text(str(os.getpid()))
