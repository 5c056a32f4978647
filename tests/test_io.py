"""save/load: round trips, exact resumption of training, atomic writes, bad files, pickling."""
import fcntl
import json
import os
import pathlib
import pickle
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn.io import ModelFileError, _digest, load, save
from fastnn.layers import ACTIVATION_MODULES
from fastnn.optim import SGD, Adam, CosineDecay, ExponentialDecay, StepDecay

OPTIMIZERS = {
    "sgd": lambda: SGD(lr=0.05),
    "sgd_nesterov_step_decay": lambda: SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3,
                                           schedule=StepDecay(2, gamma=0.5)),
    "adam": lambda: Adam(lr=0.01),
    "adamw_cosine": lambda: Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01, decoupled=True,
                                 schedule=CosineDecay(10, min_lr=1e-4)),
    "adam_exponential": lambda: Adam(lr=0.01, schedule=ExponentialDecay(0.9)),
}


def data(dtype, n=24, n_features=5, n_classes=3):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n_features)).astype(dtype), np.arange(n) % n_classes


def trained_model(dtype, optimizer, epochs=2):
    model = fastnn.mlp([5, 8, 6, 3], activation="tanh", dropout=0.25, dtype=dtype, seed=1)
    X, y = data(dtype)
    model.fit(X, y, optimizer=optimizer, epochs=epochs, batch_size=8, shuffle=False, verbose=0)
    return model


def assert_same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def assert_same_model(loaded, model):
    assert repr(loaded) == repr(model)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    assert loaded.dtype == model.dtype and loaded.training == model.training
    assert_same_bits(loaded.params, model.params)
    for new, old in zip(loaded.dense_layers, model.dense_layers):
        assert new.dtype == old.dtype
        assert new.init == (old.init if isinstance(old.init, str) else None)
        assert np.shares_memory(new.W, loaded.params) and np.shares_memory(new.dW, loaded.grads)
        assert_same_bits(new.W, old.W)
        assert_same_bits(new.b, old.b)


def test_round_trip_of_an_unfit_model_with_every_activation(tmp_path, dtype):
    layers = [fastnn.Dense(4, 6, dtype=dtype, seed=0)]
    for name, cls in ACTIVATION_MODULES.items():
        layers += [cls(alpha=0.3) if name == "leaky_relu" else cls(), fastnn.Dense(6, 6, dtype=dtype, seed=1)]
    layers += [fastnn.Dropout(0.4, seed=2), fastnn.Dense(6, 2, init=lambda shape, rng: np.ones(shape),
                                                         dtype=dtype)]
    model = fastnn.Sequential(*layers)
    save(model, tmp_path / "model.fnn")
    loaded = load(tmp_path / "model.fnn")
    assert_same_model(loaded, model)
    assert [layer.alpha for layer in loaded.layers if isinstance(layer, fastnn.LeakyReLU)] == [0.3]
    assert [layer.p for layer in loaded.layers if isinstance(layer, fastnn.Dropout)] == [0.4]
    assert loaded.loss is None and loaded.optimizer is None
    X = np.random.default_rng(3).standard_normal((7, 4)).astype(dtype)
    assert_same_bits(loaded.outputs(X), model.outputs(X))


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_round_trip_keeps_loss_optimizer_and_its_state(tmp_path, dtype, make_optimizer):
    model = trained_model(dtype, make_optimizer())
    model.optimizer.lr *= 0.5
    save(model, tmp_path / "model.fnn")
    loaded = load(tmp_path / "model.fnn")
    assert_same_model(loaded, model)
    assert type(loaded.loss) is type(model.loss)
    old, new = model.optimizer, loaded.optimizer
    assert type(new) is type(old)
    assert repr(new) == repr(old)
    assert {k: v for k, v in new.get_params().items() if k != "schedule"} == \
        {k: v for k, v in old.get_params().items() if k != "schedule"}
    if old.schedule is not None:
        assert type(new.schedule) is type(old.schedule) and vars(new.schedule) == vars(old.schedule)
    assert new.lr == old.lr and new.steps == old.steps == 6
    assert new.state.keys() == old.state.keys() == set(type(old).state_names)
    for name in old.state:
        assert_same_bits(new.state[name], old.state[name])


def test_dropout_layers_keep_sharing_one_generator_in_the_same_state(tmp_path):
    model = fastnn.mlp([3, 4, 4, 2], dropout=0.5, seed=0)
    first, second = [layer for layer in model.layers if isinstance(layer, fastnn.Dropout)]
    assert first._rng is second._rng
    save(model, tmp_path / "model.fnn")
    new_first, new_second = [layer for layer in load(tmp_path / "model.fnn").layers
                             if isinstance(layer, fastnn.Dropout)]
    assert new_first._rng is new_second._rng and new_first._rng is not first._rng
    assert_same_bits(new_first._rng.random(5), first._rng.random(5))


def test_save_and_load_accept_str_and_pathlike_and_add_no_extension(tmp_path):
    model = fastnn.mlp([2, 2], seed=0)
    save(model, str(tmp_path / "as_str"))
    save(model, pathlib.Path(tmp_path / "as_path"))
    model.save(tmp_path / "via_method")
    assert sorted(os.listdir(tmp_path)) == ["as_path", "as_str", "via_method"]
    for name in ("as_str", "as_path", "via_method"):
        assert_same_model(load(str(tmp_path / name)), model)
        assert_same_model(load(pathlib.Path(tmp_path / name)), model)


def test_save_refuses_what_it_cannot_store(tmp_path):
    class MyReLU(fastnn.ReLU):
        pass

    model = fastnn.mlp([2, 3, 2], seed=0)
    model.optimizer = SGD(schedule=lambda epoch, lr: lr)
    with pytest.raises(ValueError, match="cannot save the learning-rate schedule"):
        save(model, tmp_path / "model.fnn")
    with pytest.raises(ValueError, match="cannot save layer MyReLU"):
        save(fastnn.Sequential(fastnn.Dense(2, 2), MyReLU()), tmp_path / "model.fnn")
    with pytest.raises(TypeError, match="model must be a fastnn Sequential"):
        save(fastnn.Dense(2, 2), tmp_path / "model.fnn")
    assert os.listdir(tmp_path) == []


# Resuming training


@pytest.mark.parametrize("make_optimizer", [OPTIMIZERS["sgd"], lambda: SGD(lr=0.05, momentum=0.9),
                                            OPTIMIZERS["adam"]], ids=["sgd", "momentum", "adam"])
def test_training_resumed_from_a_file_matches_uninterrupted_training(tmp_path, make_optimizer):
    X, y = data(np.float64)
    straight = trained_model(np.float64, make_optimizer(), epochs=2)
    first_half = trained_model(np.float64, make_optimizer(), epochs=1)
    save(first_half, tmp_path / "checkpoint.fnn")
    resumed = load(tmp_path / "checkpoint.fnn")
    resumed.fit(X, y, optimizer=resumed.optimizer, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert_same_bits(resumed.params, straight.params)
    assert resumed.optimizer.steps == straight.optimizer.steps
    for name in straight.optimizer.state:
        assert_same_bits(resumed.optimizer.state[name], straight.optimizer.state[name])


def test_training_resumed_with_a_schedule_matches_uninterrupted_training(tmp_path):
    X, y = data(np.float64)
    straight = trained_model(np.float64, SGD(lr=0.05, schedule=StepDecay(1, gamma=0.5)), epochs=2)
    first_half = trained_model(np.float64, SGD(lr=0.05, schedule=StepDecay(1, gamma=0.5)), epochs=1)
    save(first_half, tmp_path / "checkpoint.fnn")
    resumed = load(tmp_path / "checkpoint.fnn")
    resumed.fit(X, y, optimizer=resumed.optimizer, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert_same_bits(resumed.params, straight.params)


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
        arrays["sha256"] = np.frombuffer(_digest({k: v for k, v in arrays.items() if k != "sha256"}), np.uint8)
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
    rewrite(path, layers=[{"type": "Conv2D"}])
    assert_model_file_error(path, "invalid model description.*Conv2D")


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
    arrays["sha256"] = np.frombuffer(_digest({k: v for k, v in arrays.items() if k != "sha256"}), np.uint8)
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
    arrays["sha256"] = np.frombuffer(_digest({k: v for k, v in arrays.items() if k != "sha256"}), np.uint8)
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


# Pickling


def test_pickle_round_trip_keeps_layers_as_views_of_the_flat_buffers():
    model = trained_model(np.float32, Adam())
    copy = pickle.loads(pickle.dumps(model))
    assert_same_bits(copy.params, model.params)
    for layer in copy.dense_layers:
        for view, buffer in ((layer.W, copy.params), (layer.b, copy.params),
                             (layer.dW, copy.grads), (layer.db, copy.grads)):
            assert np.shares_memory(view, buffer)
    X, y = data(np.float32)
    model.fit(X, y, optimizer=model.optimizer, epochs=1, batch_size=8, shuffle=False, verbose=0)
    copy.fit(X, y, optimizer=copy.optimizer, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert_same_bits(copy.outputs(X), model.outputs(X))


# Estimators


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_round_trip_predicts_and_keeps_training_identically(tmp_path):
    from sklearn.datasets import load_digits

    from fastnn.sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]
    estimator = MLPClassifier((16,), max_iter=3, batch_size=64, random_state=0).fit(X[:1000], labels[:1000])
    estimator.save(tmp_path / "digits.fnn")
    loaded = load(tmp_path / "digits.fnn")
    assert type(loaded) is MLPClassifier and loaded.get_params() == estimator.get_params()
    np.testing.assert_array_equal(loaded.classes_, estimator.classes_)
    np.testing.assert_array_equal(loaded.predict(X[1000:]), estimator.predict(X[1000:]))
    assert loaded.n_iter_ == 3 and loaded.loss_curve_ == estimator.loss_curve_
    for fitted in (estimator, loaded):
        fitted.partial_fit(X[:1000], labels[:1000])
    assert_same_bits(loaded.model_.params, estimator.model_.params)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_class_level_loaders_give_their_class_and_refuse_another(tmp_path):
    X = np.random.default_rng(0).standard_normal((40, 3))
    fastnn.MLPRegressor((4,), max_iter=2, random_state=0).fit(X, X[:, 0]).save(tmp_path / "regressor.fnn")
    fastnn.MLPClassifier((4,), max_iter=2, random_state=0).fit(X, X[:, 0] > 0).save(tmp_path / "classifier.fnn")
    fastnn.mlp([3, 2], seed=0).save(tmp_path / "net.fnn")
    assert type(fastnn.MLPRegressor.load(tmp_path / "regressor.fnn")) is fastnn.MLPRegressor
    assert type(fastnn.MLPClassifier.load(tmp_path / "classifier.fnn")) is fastnn.MLPClassifier
    assert type(fastnn.Sequential.load(tmp_path / "net.fnn")) is fastnn.Sequential
    for cls, name, held in ((fastnn.MLPClassifier, "regressor.fnn", "MLPRegressor"),
                            (fastnn.MLPRegressor, "net.fnn", "Sequential"),
                            (fastnn.Sequential, "classifier.fnn", "MLPClassifier")):
        with pytest.raises(TypeError, match=f"holds a {held}, not a {cls.__name__}; fastnn.load"):
            cls.load(tmp_path / name)


def test_unfitted_estimator_and_foreign_objects_are_refused(tmp_path):
    from fastnn.sklearn import MLPRegressor

    with pytest.raises(ValueError, match="MLPRegressor is not fitted yet"):
        save(MLPRegressor(), tmp_path / "x")
    with pytest.raises(TypeError, match="model must be a fastnn Sequential, MLPClassifier or MLPRegressor; got dict"):
        save({}, tmp_path / "x")
    assert not list(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_with_a_callable_init_is_refused(tmp_path):
    from fastnn.sklearn import MLPRegressor

    X = np.random.default_rng(0).standard_normal((20, 2))
    estimator = MLPRegressor((3,), max_iter=2, init=lambda shape, rng: np.zeros(shape)).fit(X, X[:, 0])
    with pytest.raises(ValueError, match="cannot save MLPRegressor parameters"):
        estimator.save(tmp_path / "x")
