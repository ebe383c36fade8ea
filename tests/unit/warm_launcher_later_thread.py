"""A module whose import starts a thread that never ends, not a daemon one (the launcher's
tests: a server must not fork after importing it, and must still exit)."""

import threading

_idle = threading.Event()
threading.Thread(target=_idle.wait, name="started-by-an-import", daemon=False).start()
