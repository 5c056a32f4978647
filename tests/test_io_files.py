"""Model files that cannot be half written or misread: atomic writes, killed saves,
truncated, flipped, forged and foreign files."""
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn.io import ModelFileError, load, save
from fastnn.npz import digest
from fastnn.optim import Adam
from model_files import assert_same_bits, assert_same_model, trained_model


# Atomic writes


@pytest.fixture
def existing_file(tmp_path):
    """A model saved at tmp_path / 'model.fnn' and the file's bytes."""
    path = tmp_path / "model.fnn"
    save(trained_model(np.float32, Adam()), path)
    return path, path.read_bytes()


def test_a_failure_while_writing_leaves_the_old_file_and_no_temp_file(existing_file, monkeypatch):
    path, old_bytes = existing_file

    def savez_then_fail(file, **arrays):
        file.write(b"PK\x03\x04 half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", savez_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save(fastnn.mlp([2, 2], seed=0), path)
    assert path.read_bytes() == old_bytes
    assert os.listdir(path.parent) == [path.name]


@pytest.mark.parametrize("error", [OSError("rename failed"), KeyboardInterrupt()], ids=["OSError", "interrupt"])
def test_a_failure_at_the_rename_leaves_the_old_file_and_no_temp_file(existing_file, monkeypatch, error):
    path, old_bytes = existing_file

    def fail(source, target):
        raise error

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(type(error)):
        save(fastnn.mlp([2, 2], seed=0), path)
    assert path.read_bytes() == old_bytes
    assert os.listdir(path.parent) == [path.name]


def test_save_replaces_an_existing_file(existing_file):
    path, _ = existing_file
    model = fastnn.mlp([2, 2], seed=0)
    save(model, path)
    assert_same_model(load(path), model)
    assert os.listdir(path.parent) == [path.name]


def test_save_into_a_missing_directory_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save(fastnn.mlp([2, 2], seed=0), tmp_path / "nowhere" / "model.fnn")


KILLED_SAVE = """
import sys
import fastnn
model = fastnn.mlp([1000, 1000, 10], seed=0)
print("ready", flush=True)
while True:
    model.save(sys.argv[1])
"""


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_the_next_save_removes_the_temporary_files_of_killed_saves(tmp_path, signum):
    """A save killed while writing leaves its hidden temporary file; the next save to the
    same target removes it, and leaves those of other targets and of live writers alone."""
    path = tmp_path / "m.fnn"
    for _ in range(20):
        process = subprocess.Popen([sys.executable, "-c", KILLED_SAVE, str(path)], stdout=subprocess.PIPE, text=True,
                                   cwd=tmp_path)
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        process.send_signal(signum)
        process.wait(timeout=60)
        process.stdout.close()
        if len(os.listdir(tmp_path)) > 1:
            break
    killed = sorted(set(os.listdir(tmp_path)) - {path.name})
    assert killed and all(re.fullmatch(r"\.m\.fnn\.[0-9a-f]{16}\.tmp", name) for name in killed)
    other = tmp_path / ".n.fnn.0123456789abcdef.tmp"
    other.write_bytes(b"another target's")
    live = tmp_path / ".m.fnn.fedcba9876543210.tmp"
    with open(live, "wb") as writer:
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        model = fastnn.mlp([2, 2], seed=0)
        save(model, path)
    assert sorted(os.listdir(tmp_path)) == sorted([path.name, other.name, live.name])
    assert_same_model(load(path), model)


def test_a_save_error_names_the_target_not_the_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "m.fnn"
    real_open = os.open

    def denied(name, flags, mode=0o777):  # as in a read-only directory (root writes there anyway)
        if str(name).endswith(".tmp"):
            raise PermissionError(13, "Permission denied", name)
        return real_open(name, flags, mode)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(PermissionError, match="Permission denied") as info:
        save(fastnn.mlp([2, 2], seed=0), path)
    assert repr(str(path)) in str(info.value) and ".tmp" not in str(info.value)


# Bad files


def rewrite(path, recompute_checksum=True, **meta_changes):
    """Rewrite the model file at path with changed metadata (and a matching checksum unless told not to)."""
    with np.load(path) as archive:
        arrays = dict(archive)
    meta = json.loads(arrays["meta"].tobytes())
    meta.update(meta_changes)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    if recompute_checksum:
        arrays["sha256"] = np.frombuffer(digest({k: v for k, v in arrays.items() if k != "sha256"}), np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def assert_model_file_error(path, match):
    with pytest.raises(ModelFileError, match=match) as info:
        load(path)
    assert repr(str(path)) in str(info.value)


def test_every_truncation_is_an_error(existing_file):
    path, old_bytes = existing_file
    for size in range(len(old_bytes)):
        path.write_bytes(old_bytes[:size])
        assert_model_file_error(path, "not an .npz archive" if size < 4 else "truncated or corrupted")


def test_every_flipped_byte_is_an_error_or_harmless(existing_file):
    path, old_bytes = existing_file
    original = load(path)
    errors = 0
    for position in range(len(old_bytes)):
        damaged = bytearray(old_bytes)
        damaged[position] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            loaded = load(path)
        except ModelFileError as error:
            assert repr(str(path)) in str(error)
            errors += 1
        else:  # a byte the reader ignores, such as a timestamp in the zip headers
            assert_same_model(loaded, original)
            for name in original.optimizer.state:
                assert_same_bits(loaded.optimizer.state[name], original.optimizer.state[name])
    assert errors > 0.9 * len(old_bytes)


def test_changed_contents_with_intact_zip_structure_fail_the_checksum(existing_file):
    path, _ = existing_file
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays["params"][0] += 1
    with open(path, "wb") as file:
        np.savez(file, **arrays)
    assert_model_file_error(path, "checksum does not match")


def test_a_newer_format_version_is_an_error(existing_file):
    path, _ = existing_file
    rewrite(path, version=2)
    assert_model_file_error(path, "format version 2; this fastnn reads version 1")


def test_a_checksummed_but_invalid_description_is_an_error(existing_file):
    path, _ = existing_file
    rewrite(path, layers=[{"type": "Conv3D"}])
    assert_model_file_error(path, "invalid model description.*Conv3D")


@pytest.mark.parametrize("change", [{"kernel_size": [0, 3]}, {"kernel_size": 2.5}, {"in_channels": -1}])
def test_a_conv_layer_with_bad_sizes_is_an_error(existing_file, change):
    path, _ = existing_file
    conv = {"type": "Conv2D", "in_channels": 1, "out_channels": 2, "kernel_size": [3, 3], "stride": [1, 1],
            "padding": [0, 0], "dtype": "float32", "init": None, **change}
    rewrite(path, layers=[conv, {"type": "Flatten"}, {"type": "Dense", "in_features": 2, "out_features": 2,
                                                      "dtype": "float32", "init": None}])
    assert_model_file_error(path, f"invalid model description.*{next(iter(change))}")


PEAK = """
import sys
import fastnn

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as clear:  # restart the high-water mark (ru_maxrss keeps the parent's)
    clear.write("5")
before = status("VmRSS")
try:
    fastnn.load(sys.argv[1])
    outcome = "loaded"
except fastnn.ModelFileError as error:
    outcome = str(error)
print(outcome)
print(status("VmHWM") - before)
"""


def load_in_subprocess(path):
    """(what load said, how far it raised the peak resident memory in bytes) in a new process."""
    done = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, timeout=300,
                          cwd=path.parent)
    assert done.returncode == 0, done.stderr
    outcome, rise = done.stdout.strip().splitlines()
    return outcome, int(rise)


def rezip(path, compression, extra=None):
    """Rewrite the archive at path with every member compressed as given, plus an extra
    member streamed from the (name, chunk, count) extra."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if extra is not None:
            name, chunk, count = extra
            with archive.open(name, "w", force_zip64=True) as member:
                for _ in range(count):
                    member.write(chunk)


def forge(path, layers, n_params):
    """A checksummed model file at path describing layers, with n_params parameters
    declared but only 10 stored."""
    save(fastnn.mlp([2, 3], seed=0), path)
    with np.load(path) as archive:
        arrays = dict(archive)
    meta = json.loads(arrays["meta"].tobytes())
    meta["layers"] = layers
    meta["arrays"]["params"]["shape"] = [n_params]
    arrays["params"] = np.zeros(10, np.float32)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    arrays["sha256"] = np.frombuffer(digest({k: v for k, v in arrays.items() if k != "sha256"}), np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def test_an_extra_compressed_member_is_refused_before_it_is_read(existing_file):
    path, _ = existing_file
    rezip(path, zipfile.ZIP_DEFLATED, extra=("junk.npy", bytes(1 << 20), 300))
    assert path.stat().st_size < 2 << 20
    outcome, rise = load_in_subprocess(path)
    assert "the file holds arrays ['junk', 'meta'" in outcome and rise < 30e6


@pytest.mark.parametrize("n", [15_000, 1_000_000])
def test_a_forged_file_declaring_a_huge_layer_is_refused_before_memory_is_taken(tmp_path, n):
    path = tmp_path / "forged.fnn"
    forge(path, [{"type": "Dense", "in_features": n, "out_features": n, "dtype": "float32", "init": None}], n * n + n)
    outcome, rise = load_in_subprocess(path)
    assert f"array 'params' is declared as float32 ({n * n + n},)" in outcome and "its member holds" in outcome
    assert rise < 30e6


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
@pytest.mark.parametrize("with_optimizer", [False, True], ids=["model", "adam"])
def test_a_valid_file_loads_within_twice_its_model_size(tmp_path, compression, with_optimizer):
    path = tmp_path / "big.fnn"
    model = fastnn.mlp([4000, 4000, 10], seed=0)
    if with_optimizer:
        model.optimizer = Adam()
        model.optimizer.bind(model.n_params, model.dtype)
    save(model, path)
    rezip(path, compression)
    outcome, rise = load_in_subprocess(path)
    size = model.params.nbytes * (3 if with_optimizer else 1)
    assert outcome == "loaded" and rise < 2 * size


def test_deeply_nested_metadata_is_a_model_file_error(tmp_path):
    path = tmp_path / "nested.fnn"
    nested = ("[" * 100_000 + "]" * 100_000).encode()
    meta = np.frombuffer(b'{"format": "fastnn.model", "version": 1, "layers": ' + nested + b"}", np.uint8)
    with open(path, "wb") as file:
        np.savez(file, meta=meta, sha256=np.zeros(32, np.uint8))
    assert_model_file_error(path, "metadata is not valid JSON.*RecursionError")


def rewrite_arrays(path, **changes):
    """Rewrite the model file at path with some arrays replaced (metadata and checksum to match)."""
    with np.load(path) as archive:
        arrays = dict(archive)
    arrays.update(changes)
    meta = json.loads(arrays["meta"].tobytes())
    for name in changes:
        meta["arrays"][name] = {"dtype": arrays[name].dtype.name, "shape": list(arrays[name].shape)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    arrays["sha256"] = np.frombuffer(digest({k: v for k, v in arrays.items() if k != "sha256"}), np.uint8)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


@pytest.mark.parametrize("field,value,message", [
    ("lr", -0.1, "lr must be a finite number > 0; got -0.1"),
    ("steps", -5, "steps must be an integer in \\[0, 2\\*\\*63\\); got -5"),
    ("epochs", 2.5, "epochs must be an integer in \\[0, 2\\*\\*63\\); got 2.5"),
])
def test_a_forged_optimizer_record_is_refused(existing_file, field, value, message):
    path, _ = existing_file
    with np.load(path) as archive:
        optimizer = json.loads(archive["meta"].tobytes())["optimizer"]
    rewrite(path, optimizer={**optimizer, field: value})
    assert_model_file_error(path, "invalid model description.*" + message)


def test_forged_parameters_and_optimizer_state_are_refused(existing_file):
    path, old_bytes = existing_file
    params = load(path).params
    cases = [({"params": np.where(np.arange(params.size) == 3, np.nan, params).astype(params.dtype)},
              "the parameters hold NaN or infinite values"),
             ({"state_m": np.zeros(params.size - 1, params.dtype)}, r"array 'state_m' is declared as float32 \("),
             ({"state_v": np.zeros(params.size, np.float64)}, "array 'state_v' is declared as float64"),
             ({"state_v": np.full(params.size, -1.0, params.dtype)}, "state 'v' holds NaN, infinite or negative"),
             ({"state_m": np.full(params.size, np.inf, params.dtype)}, "state 'm' holds NaN, infinite values")]
    for changes, message in cases:
        path.write_bytes(old_bytes)
        rewrite_arrays(path, **changes)
        assert_model_file_error(path, "invalid model description.*" + message)


def test_foreign_files_are_errors(tmp_path):
    foreign_npz = tmp_path / "arrays.npz"
    np.savez(foreign_npz, a=np.arange(3), b=np.ones((2, 2)))
    assert_model_file_error(foreign_npz, "not a fastnn model file: it has no fastnn metadata")

    other_meta = tmp_path / "other.npz"
    np.savez(other_meta, meta=np.frombuffer(b'{"format": "other"}', np.uint8), sha256=np.zeros(32, np.uint8))
    assert_model_file_error(other_meta, "not a fastnn model file: its format tag is not 'fastnn.model'")

    npy = tmp_path / "array.npy"
    np.save(npy, np.arange(3))
    text = tmp_path / "notes.txt"
    text.write_text("not a model\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for path in (npy, text, empty):
        assert_model_file_error(path, "not a fastnn model file: it is not an .npz archive")


def test_a_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.fnn"):
        load(tmp_path / "missing.fnn")
