"""Expected conditions every ``capturekit`` command reports in one line, and the exit codes they map to.

The codes are part of the kit's interface (systemd's ``RestartPreventExitStatus``, the crew's scripts,
``docs/operations.md``):

====  ==========================================================================================
code  meaning
====  ==========================================================================================
0     done
1     a check found problems (simulate mismatch, selftest FAIL, status found damaged bundles)
2     bad input: configuration, arguments, a roster file, a refused manual entry or command
3     the data directory is in use by another capturekit process (its lock is held)
4     the data directory or journal cannot be used as it is (missing, not writable, damaged,
      another kit's, too little free space): nothing was changed; fix it and start again
5     the capture daemon is not reachable (control commands)
70    storage failed while working (the daemon stops; systemd restarts it; recovery settles)
75    the camera keeps failing (systemd restarts the daemon)
130   interrupted (Ctrl-C)
====  ==========================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUSY = 3
EXIT_DATA = 4
EXIT_UNREACHABLE = 5
EXIT_STORAGE = 70  # EX_SOFTWARE: storage failed, restart and recover
EXIT_CAMERA = 75  # EX_TEMPFAIL: camera keeps failing, restart
EXIT_INTERRUPTED = 130


class KitError(RuntimeError):
    """An expected condition: the message says what and where (one line); ``code`` is the exit code."""

    code = EXIT_DATA


class StorageError(KitError):
    """The journal or spool could not make something durable (never retried: the data on disk is unknown)."""

    code = EXIT_STORAGE


class DataDirBusy(KitError):
    """Another capturekit process holds the data directory's lock."""

    code = EXIT_BUSY


class StartRefused(KitError):
    """The kit will not start (or a command will not run) on the data directory as it is; nothing was changed."""

    code = EXIT_DATA


class JournalDamaged(StartRefused):
    """The journal fails its integrity check or is not a journal; it is kept byte for byte."""
