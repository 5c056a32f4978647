"""Blocks that Ctrl-C cannot cut in half, and files that are written whole or not at all.

Python raises KeyboardInterrupt between any two bytecodes, so a Ctrl-C can land
after a compiled training call returned but before fit recorded how far it
got, or between the updates of Adam's m, v and the weights. Inside
``deferred_interrupt()`` a SIGINT is only noted, and delivered to the handler
that was in force when the outermost such block ends: the model, its optimizer
state, step count and history change together or not at all.

Swapping the signal handler costs microseconds, too much for every optimizer
step: fit swaps it once for the whole fit with ``watching_interrupts()``, inside
which a deferred block costs a counter and a SIGINT outside one acts at once.
Signals reach only the main thread; in other threads both blocks do nothing.

``replacing(path)`` is the one way fastnn writes a file (models, downloads, plots,
benchmark results): into a temporary file beside it, renamed over it only once
written whole.
"""
import contextlib
import os
import re
import secrets
import signal
import threading

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

_MAIN = threading.main_thread().ident
_watching = 0       # watching blocks open in the main thread
_held = 0           # deferred blocks open in the main thread
_noted = False      # a SIGINT arrived while _held
_previous = None    # the handler _handler replaced


def _deliver(signum, frame):
    """Pass a SIGINT on to the handler in force before ours."""
    if callable(_previous):
        _previous(signum, frame)
    elif _previous == signal.SIG_DFL:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.raise_signal(signal.SIGINT)


def _handler(signum, frame):
    global _noted
    if _held:
        _noted = True
    else:
        _deliver(signum, frame)


class watching_interrupts:
    """Route SIGINT through this module's handler for the block (installed by the
    outermost block); a SIGINT outside a deferred block is handled as before."""

    def __enter__(self):
        global _watching, _previous
        self.active = threading.get_ident() == _MAIN
        if self.active:
            if not _watching:
                _previous = signal.signal(signal.SIGINT, _handler)
            _watching += 1
        return self

    def __exit__(self, *exc_info):
        global _watching
        if self.active:
            _watching -= 1
            if not _watching:
                signal.signal(signal.SIGINT, _previous)


class deferred_interrupt(watching_interrupts):
    """Hold back SIGINT until the block ends, then deliver it (a KeyboardInterrupt
    under Python's default handler)."""

    def __enter__(self):
        global _held
        super().__enter__()
        _held += self.active
        return self

    def __exit__(self, *exc_info):
        global _held, _noted
        if not self.active:
            return
        _held -= 1
        try:
            if not _held and _noted:
                _noted = False
                _deliver(signal.SIGINT, None)
        finally:
            super().__exit__(*exc_info)


def _create(name, flags):
    """open()'s opener: the temporary file with the permissions of an ordinary new file."""
    return os.open(name, flags, 0o666)


@contextlib.contextmanager
def replacing(path, suffix=".tmp"):
    """An open binary file that becomes ``path`` when the with block ends without error.

    The file is a hidden temporary file beside path (the same directory, so the
    rename is atomic), ``.NAME.<16 hex digits>SUFFIX``, its name in the file's
    ``name``. After the block it is flushed, fsynced and renamed over path, and the
    directory fsynced; an error or interrupt anywhere removes it and leaves path as
    it was. The writer holds a lock on it, so the temporary files of writes that were
    killed (SIGKILL leaves them behind) are told from those still being written:
    the stale ones of the same target are removed first.
    """
    directory, name = os.path.split(os.path.abspath(path))
    _remove_stale_temporaries(directory, name, suffix)
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}{suffix}")
    file = open(temporary, "xb", opener=_create)
    try:
        with file:
            _lock(file.fileno(), blocking=True)
            yield file
            file.flush()
            os.fsync(file.fileno())
            os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if hasattr(os, "O_DIRECTORY"):
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _lock(descriptor, blocking):
    """An exclusive advisory lock on the open file (released when the process ends, however
    it ends); True when taken. Where there is no fcntl, no lock: False."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    return True


def _remove_stale_temporaries(directory, name, suffix):
    """Remove the temporary files of earlier writes to the same target whose writer is gone
    (nobody holds their lock)."""
    pattern = re.compile(re.escape(f".{name}.") + r"[0-9a-f]{16}" + re.escape(suffix))
    for entry in os.listdir(directory):
        if not pattern.fullmatch(entry):
            continue
        stale = os.path.join(directory, entry)
        try:
            descriptor = os.open(stale, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if _lock(descriptor, blocking=False):
                os.unlink(stale)
        except FileNotFoundError:
            pass
        finally:
            os.close(descriptor)
