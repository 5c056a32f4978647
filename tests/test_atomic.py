"""Ctrl-C during training: a real SIGINT sent to a process mid-fit or mid-step leaves
the model, its optimizer state, step count and history at one and the same moment."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastnn

DATA = """
import json, sys
import numpy as np
import fastnn
rng = np.random.default_rng(0)
X = rng.standard_normal((48, 4)).astype(np.float32)
y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
"""


def interrupt(script, args, delay):
    """Run script, send it SIGINT ``delay`` seconds after it prints 'ready', and return
    the JSON it prints last (after catching the KeyboardInterrupt)."""
    process = subprocess.Popen([sys.executable, "-c", DATA + textwrap.dedent(script), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=os.path.dirname(__file__))  # the installed fastnn, not the tree
    try:
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        time.sleep(delay)
        os.kill(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


FIT = """
backend, path, optimizer = sys.argv[1:]
fastnn.set_backend(backend)
make = lambda: fastnn.Adam(0.01) if optimizer == "adam" else fastnn.SGD(0.05, momentum=0.9)
fastnn.mlp([4, 8, 2], seed=0).fit(X, y, optimizer=make(), epochs=3, batch_size=16, verbose=0)  # compiles
model, opt = fastnn.mlp([4, 8, 2], seed=0), make()
print("ready", flush=True)
try:
    model.fit(X, y, optimizer=opt, epochs=10**8, batch_size=16, seed=0, verbose=0)
except KeyboardInterrupt:
    model.save(path)
    print(json.dumps({"epochs": len(model.history), "opt_epochs": opt.epochs,
                      "stop": model.history.stop_reason}))
"""


@pytest.mark.parametrize("backend", ["cython", "numba", "numpy"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_sigint_during_fit_leaves_weights_state_steps_and_history_at_one_epoch(tmp_path, backend, optimizer):
    """The saved model equals a fresh fit of exactly the epochs its history recorded."""
    path = tmp_path / "m.fnn"
    got = interrupt(FIT, [backend, str(path), optimizer], delay=0.7)
    saved = fastnn.load(path)
    assert got["stop"] == "interrupted" and got["epochs"] > 0
    with fastnn.use_backend(backend):
        rng = np.random.default_rng(0)
        X = rng.standard_normal((48, 4)).astype(np.float32)
        y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
        replay = fastnn.mlp([4, 8, 2], seed=0)
        opt = fastnn.Adam(0.01) if optimizer == "adam" else fastnn.SGD(0.05, momentum=0.9)
        replay.fit(X, y, optimizer=opt, epochs=got["epochs"], batch_size=16, seed=0, verbose=0)
    if backend == "numpy":  # the per-module path stops after the last whole optimizer step
        assert saved.optimizer.steps >= 3 * got["epochs"]
        assert got["opt_epochs"] == got["epochs"]
        return
    assert saved.optimizer.steps == opt.steps == 3 * got["epochs"]
    assert got["opt_epochs"] == opt.epochs == got["epochs"]
    np.testing.assert_array_equal(saved.params, replay.params)
    for name, buffer in opt.state.items():
        np.testing.assert_array_equal(saved.optimizer.state[name], buffer)


STEPS = """
fastnn.set_backend("numpy")
n = 2_000_000
params, grads = np.zeros(n), np.full(n, 0.5)
opt = fastnn.Adam(0.01)
opt.bind(n, np.float64)
print("ready", flush=True)
try:
    while True:
        opt.step(params, grads)
except KeyboardInterrupt:
    np.savez(sys.argv[1], params=params, m=opt.state["m"], v=opt.state["v"], steps=opt.steps)
    print(json.dumps({"steps": opt.steps}))
"""


@pytest.mark.parametrize("delay", [0.3, 0.55, 0.8])
def test_sigint_during_an_optimizer_step_applies_it_whole_or_not_at_all(tmp_path, delay):
    """NumPy's adam_update updates m, v and the weights in separate statements: an
    interrupt between them must not leave the weights a step behind the moments."""
    path = tmp_path / "state.npz"
    got = interrupt(STEPS, [str(path)], delay)
    saved = np.load(path)
    n = 1000
    with fastnn.use_backend("numpy"):
        params, grads = np.zeros(n), np.full(n, 0.5)
        opt = fastnn.Adam(0.01)
        opt.bind(n, np.float64)
        for _ in range(got["steps"]):
            opt.step(params, grads)
    assert int(saved["steps"]) == got["steps"] > 0
    for name, want in (("params", params), ("m", opt.state["m"]), ("v", opt.state["v"])):
        np.testing.assert_array_equal(saved[name][:n], want, err_msg=name)


def test_deferred_interrupt_delivers_the_held_signal_at_the_end():
    from fastnn.atomic import deferred_interrupt

    reached = []
    with pytest.raises(KeyboardInterrupt):
        with deferred_interrupt():
            signal.raise_signal(signal.SIGINT)
            reached.append("after the signal")
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_watched_sigint_acts_at_once_outside_a_deferred_block_and_after_one_inside():
    from fastnn.atomic import deferred_interrupt, watching_interrupts

    reached = []
    with watching_interrupts():
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
            reached.append("not reached")
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupt():
                with deferred_interrupt():
                    signal.raise_signal(signal.SIGINT)
                reached.append("inner block ended")
            reached.append("not reached")
    assert reached == ["inner block ended"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# --- files written whole: replacing --------------------------------------------------------

def test_replacing_writes_the_file_whole_beside_its_target(tmp_path):
    from fastnn.atomic import replacing

    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with replacing(path) as file:
        file.write(b"new contents")
        assert os.path.dirname(file.name) == str(tmp_path)
        assert path.read_bytes() == b"old"  # nothing under the final name until the block ends
    assert path.read_bytes() == b"new contents"
    assert os.listdir(tmp_path) == ["out.bin"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=["OSError", "interrupt"])
def test_replacing_leaves_the_old_file_and_no_temporary_file_on_failure(tmp_path, error):
    from fastnn.atomic import replacing

    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(type(error)):
        with replacing(path, suffix=".part") as file:
            file.write(b"half")
            raise error
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_replacing_removes_the_stale_temporary_files_of_its_target_only(tmp_path):
    from fastnn.atomic import replacing

    path = tmp_path / "out.bin"
    stale = tmp_path / ".out.bin.0123456789abcdef.part"
    other_suffix = tmp_path / ".out.bin.0123456789abcdef.tmp"
    other_target = tmp_path / ".other.bin.0123456789abcdef.part"
    for leftover in (stale, other_suffix, other_target):
        leftover.write_bytes(b"left by a killed writer")
    with replacing(path, suffix=".part") as file:
        file.write(b"x")
    assert sorted(os.listdir(tmp_path)) == sorted(["out.bin", other_suffix.name, other_target.name])
