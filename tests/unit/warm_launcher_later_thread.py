"""A module whose import starts a thread (the launcher's tests: a server must not fork after
importing it)."""

import threading

_idle = threading.Event()
threading.Thread(target=_idle.wait, name="started-by-an-import", daemon=True).start()
