"""The one exception tree of lanesync.

    LanesyncError
    ├── LocalError              we (or our caller) did something wrong: fix the call
    │   ├── UsageError          bad argument from a user or API client (unknown SKU, bad price ...)
    │   │   ├── IdempotencyConflict  an idempotency key reused for another request
    │   │   └── NotFound    a read names something this terminal does not hold (a sale id)
    │   ├── PermissionDenied    the terminal's role does not allow the operation
    │   │   └── TerminalRevoked  the store revoked this terminal: it may sign nothing more
    │   ├── ConfigError         missing or unreadable key, certificate or directory
    │   ├── DirectoryBusy       another process holds the terminal directory
    │   └── LocalProtocolError  we tried to send on a connection not in a state to send
    ├── StorageError            the local database failed (a full disk, an I/O error): the
    │                           call may succeed once that is fixed, after a reopen
    ├── Busy                    the process is at a capacity it was given (the cloud's
    │                           resident stores): the same call may succeed later
    ├── ProcessFailed           a process started by tools/procs.py (for the tests, the bench,
    │                           the demo) exited while starting, did not start, or hung
    ├── NetnsError              an `ip` command building or removing a private test network of
    │   │                       network namespaces (tools/netns.py) failed
    │   └── NetnsUnavailable    this machine or user cannot create network namespaces
    └── RemoteError             bytes from elsewhere (a peer, a bundle file) are unacceptable
        ├── RecordRejected      one record fails decoding, signature, certificate or chain checks
        ├── BundleRejected      a bundle is corrupted, foreign, or not signed by an enrolled key
        └── ProtocolViolation   a peer broke the wire protocol; the connection must close

Parsers of untrusted bytes never let a library exception escape: they either return a
rejection value or raise a ``RemoteError`` carrying a one-line reason safe to show a user.
"""


class LanesyncError(Exception):
    """Root of every error lanesync raises on purpose."""


class LocalError(LanesyncError):
    """The caller misused lanesync; retrying the same call will fail the same way."""


class UsageError(LocalError):
    """A user or API client passed a bad argument."""


class IdempotencyConflict(UsageError):
    """An idempotency key was used again for a different request."""


class NotFound(UsageError):
    """A read named something this terminal does not hold (a sale, a priced SKU): HTTP 404."""


class PermissionDenied(LocalError):
    """The terminal's certificate role does not allow this operation."""


class TerminalRevoked(PermissionDenied):
    """This terminal holds a store-signed revocation of itself: it may write no record."""


class ConfigError(LocalError):
    """A key, certificate, identity file or directory is missing or unreadable."""


class StorageError(LanesyncError):
    """The local database failed (a full disk, an I/O error, a lost database connection). Not
    the caller's mistake: the same call may succeed once the cause is fixed. In-memory state
    may be ahead of disk: the terminal must be reopened (daemons stop, for a restart)."""


# How a process that stopped on a StorageError exits: EX_IOERR of sysexits.h ("an error
# occurred while doing I/O on some file"), not 1, which the CLI uses for a user's mistake, so a
# supervisor and an operator can tell the two apart.
EXIT_STORAGE_FAILED = 74


class Busy(LanesyncError):
    """This process is at a capacity it was given (the cloud's resident stores): not the
    caller's mistake, and the same call may succeed later (HTTP 503)."""


class DirectoryBusy(LocalError):
    """Another process (a daemon or a CLI command) holds the terminal directory."""


class LocalProtocolError(LocalError):
    """We misused a connection (e.g. sent before the handshake finished)."""


class ProcessFailed(LanesyncError):
    """A process started by ``lanesync.tools.procs`` (a daemon under test, a benchmark member,
    a demo lane) exited while starting, did not start in time, or ignored SIGTERM. The message
    ends with its log tail."""


class NetnsError(LanesyncError):
    """Building or removing a private test network (``lanesync.tools.netns``: the discovery
    tests and ``lanesync bench discovery``) failed; the message names the ``ip`` command."""


class NetnsUnavailable(NetnsError):
    """This machine (or this user) cannot create network namespaces: not root, or no
    iproute2."""


class RemoteError(LanesyncError):
    """Bytes that came from outside this process are unacceptable."""


class RecordRejected(RemoteError):
    """A record failed decoding, signature, certificate or chain checks."""


class BundleRejected(RemoteError):
    """A bundle (or state file) is corrupted, foreign, or signed by an unknown key."""


class ProtocolViolation(RemoteError):
    """The peer sent something the protocol does not allow; the connection must close."""
