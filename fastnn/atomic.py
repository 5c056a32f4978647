"""Blocks that Ctrl-C cannot cut in half.

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
"""
import signal
import threading

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
