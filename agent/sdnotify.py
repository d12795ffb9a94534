"""systemd integration without libsystemd: ``sd_notify`` over ``$NOTIFY_SOCKET`` and journald logs.

:class:`Notifier` sends the daemon's state to the service manager (``Type=notify`` units): ``READY=1``
once the service runs, ``WATCHDOG=1`` pings while ``WatchdogSec=`` is set (``$WATCHDOG_USEC``),
``RELOADING=1`` while SIGHUP reloads the configuration and ``STOPPING=1`` on shutdown. Without
``$NOTIFY_SOCKET`` (not started by systemd) every call is a no-op, so the daemons call it
unconditionally. The protocol is sd_notify(3): one datagram of ``KEY=VALUE`` lines to an
``AF_UNIX`` socket, whose name may start with ``@`` for the abstract namespace.

:class:`JournalFormatter` prefixes each log line with its syslog priority (``<3>`` error ... ``<7>``
debug), which journald turns into the entry's PRIORITY (``SyslogLevelPrefix=yes``, the default), and
leaves the timestamp to the journal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["JournalFormatter", "Notifier", "journal_logging_wanted"]

log = logging.getLogger("kwatt.systemd")


class Notifier:
    """Sends sd_notify(3) messages; a no-op when the process was not started with ``NOTIFY_SOCKET``."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if raw.startswith("@"):
            self.address = "\0" + raw[1:]
        elif raw.startswith("/"):
            self.address = raw
        elif raw:
            log.warning("NOTIFY_SOCKET=%r is neither a path nor @abstract; not notifying", raw)
        self.watchdog_interval_s = _watchdog_interval(env)
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; False (and nothing sent) without a socket.

        A failed send is logged and reported as False: systemd notification must never stop the
        daemon itself.
        """
        if self.address is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as e:
            log.warning("sd_notify %s failed: %s", assignments[0] if assignments else "", e)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: startup (or a reload) is complete."""
        return self.send("READY=1", *_status(status))

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC`` (systemd >= 253 wants it; older ones ignore it)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun (flushing)."""
        return self.send("STOPPING=1", *_status(status))

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the keep-alive ping; send it every :attr:`watchdog_interval_s`."""
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        """``STATUS=...``: free text shown by ``systemctl status``."""
        return self.send(*_status(text))

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _status(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    return ("STATUS=" + text.replace("\n", " "),)


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """How often to ping: half of ``WatchdogSec=`` as sd_watchdog_enabled(3) advises, or None.

    ``WATCHDOG_PID``, when set, must be this process (the variable may have been inherited).
    """
    usec = env.get("WATCHDOG_USEC", "")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; no watchdog pings", usec)
        return None
    if value <= 0:
        return None
    return value / 1e6 / 2


#: syslog priorities (RFC 5424) of the logging levels.
_PRIORITY = {
    logging.CRITICAL: 2,
    logging.ERROR: 3,
    logging.WARNING: 4,
    logging.INFO: 6,
    logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """``<priority>LEVEL component: message`` with no timestamp (journald stamps every line).

    A multi-line message (a traceback) is folded onto one line with `` | `` separators, so a
    journal entry never splits into several with the wrong priority.
    """

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", " | ")
        priority = _PRIORITY.get(record.levelno)
        if priority is None:
            priority = 3 if record.levelno > logging.WARNING else 6
        return f"<{priority}>{text}"


def journal_logging_wanted(environ: Mapping[str, str] | None = None, fd: int = 2) -> bool:
    """True when ``fd`` (stderr) is the journal's stream: systemd sets ``JOURNAL_STREAM`` to its
    ``device:inode`` (systemd.exec(5)), which a redirected stderr no longer matches."""
    env = os.environ if environ is None else environ
    dev, _, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not dev or not ino:
        return False
    try:
        st = os.fstat(fd)
    except OSError:
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{dev}:{ino}"
