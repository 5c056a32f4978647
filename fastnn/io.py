"""Save a Sequential model (or a fitted MLPClassifier/MLPRegressor) to a portable file and
load it back, ready to resume training.

The file is an uncompressed NumPy ``.npz`` archive without pickled objects:

- ``meta``: UTF-8 JSON (as uint8) with the format tag and version, the layers
  (each Dense with its dtype), the states of the Dropout random generators, the
  loss name, the optimizer (class, hyper-parameters, schedule, current lr, step
  count) and the dtype and shape of every other array;
- ``params``: the flat parameter buffer;
- ``state_<name>``: the optimizer's state buffers (``state_velocity``, ``state_m``, ...);
- ``classes``: an estimator's classes_ (MLPClassifier only);
- ``sha256``: a digest of all the other arrays (names, dtypes, shapes and bytes),
  verified on load.

For an estimator, ``meta`` also holds its class, its parameters (get_params), its
fitted attributes (n_iter_, t_, loss_curve_, ...; not history_) and the state of its
random generator, so fit with warm_start or partial_fit continues as it would have.

Only fastnn's own layers, losses, optimizers and schedules can be stored: saving
anything else (a custom Module, a lambda schedule, ...) raises ValueError rather
than writing a file that would train differently once loaded. Pickle covers those.
"""
import contextlib
import hashlib
import json
import os
import secrets

import numpy as np

from .layers import ACTIVATION_MODULES, Dense, Dropout, LeakyReLU
from .losses import LOSSES
from .model import Sequential
from .optim import OPTIMIZERS, CosineDecay, ExponentialDecay, StepDecay

FORMAT = "fastnn.model"
VERSION = 1
ZIP_MAGIC = b"PK\x03\x04"

LAYERS = {cls.__name__: cls for cls in (Dense, Dropout, *ACTIVATION_MODULES.values())}
OPTIMIZER_CLASSES = {cls.__name__: cls for cls in OPTIMIZERS.values()}
SCHEDULE_FIELDS = {StepDecay: ("step_size", "gamma"), ExponentialDecay: ("gamma",),
                   CosineDecay: ("total_epochs", "min_lr")}
SCHEDULES = {cls.__name__: cls for cls in SCHEDULE_FIELDS}
ESTIMATOR_FITTED = ("n_features_in_", "n_iter_", "t_", "loss_curve_", "best_loss_", "validation_scores_",
                    "best_validation_score_")
BIT_GENERATORS = {cls.__name__: cls for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937,
                                                 np.random.Philox, np.random.SFC64)}


class ModelFileError(ValueError):
    """A file that cannot be loaded as a fastnn model: foreign, truncated, corrupted or of
    an unsupported format version."""


def save(model, path):
    """Write ``model`` (architecture, parameters, loss, optimizer and its state) to ``path``.

    model is a Sequential or a fitted fastnn MLPClassifier/MLPRegressor. path (str or
    os.PathLike) is used as given: no extension is added. The file is written to a
    temporary file in the same directory, synced and renamed over path, so path holds
    either its old contents or the complete new file.
    """
    estimator = None
    if not isinstance(model, Sequential):
        estimator, model = model, _estimator_model(model)
    path = os.fspath(path)
    generators = []
    arrays = {"params": model.params}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "training": bool(model.training),
        "layers": [_describe_layer(layer, generators) for layer in model.layers],
        "generators": [_plain(generator.bit_generator.state) for generator in generators],
        "loss": _describe_loss(model.loss),
        "optimizer": _describe_optimizer(model.optimizer, arrays),
        "estimator": None if estimator is None else _describe_estimator(estimator, arrays),
    }
    meta["arrays"] = {name: {"dtype": array.dtype.name, "shape": list(array.shape)}
                      for name, array in arrays.items()}
    text = json.dumps(meta, allow_nan=False, sort_keys=True).encode("utf-8")
    contents = {"meta": np.frombuffer(text, np.uint8), **arrays}
    contents["sha256"] = np.frombuffer(_digest(contents), np.uint8)
    _write_atomically(path, contents)


def load(path):
    """The Sequential saved at ``path``, with its loss, optimizer and optimizer state
    (or the fitted estimator, when an estimator was saved).

    Raises FileNotFoundError (or another OSError) when the file cannot be opened and
    ModelFileError when it is not a complete, intact fastnn model file.
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        arrays = _read_arrays(file, path)
    meta = _read_meta(arrays, path)
    try:
        model = _build(meta, arrays)
        return model if meta["estimator"] is None else _estimator(meta["estimator"], model, arrays)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path!r} holds an invalid model description "
                             f"({type(error).__name__}: {error})") from error


def load_as(cls, path):
    """load(path), refusing a file that holds anything but a ``cls`` (TypeError): the
    class-level loaders Sequential.load, MLPClassifier.load and MLPRegressor.load."""
    model = load(path)
    if not isinstance(model, cls):
        raise TypeError(f"{os.fspath(path)!r} holds a {type(model).__name__}, not a {cls.__name__}; "
                        f"fastnn.load(path) loads any fastnn model")
    return model


def _estimator_model(estimator):
    """The Sequential inside a fitted fastnn estimator; TypeError for anything else."""
    from .sklearn import ESTIMATORS

    if type(estimator) not in ESTIMATORS.values():
        raise TypeError(f"model must be a fastnn Sequential, MLPClassifier or MLPRegressor; "
                        f"got {type(estimator).__name__}")
    if "model_" not in estimator.__dict__:
        raise ValueError(f"this {type(estimator).__name__} is not fitted yet: there is no model to save")
    return estimator.model_


def _describe_estimator(estimator, arrays):
    """The estimator's class, parameters, fitted attributes and generator state; adds classes_."""
    params = estimator.get_params()
    try:
        json.dumps(params, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"cannot save {type(estimator).__name__} parameters {params}: only plain values "
                         f"(numbers, strings, None, tuples) can be stored ({error}); pickle it instead") from None
    if hasattr(estimator, "classes_"):
        if estimator.classes_.dtype.kind not in "biufU":
            raise ValueError(f"cannot save classes_ of dtype {estimator.classes_.dtype}: only numbers and "
                             "strings can be stored; pickle the estimator instead")
        arrays["classes"] = estimator.classes_
    return {"class": type(estimator).__name__, "params": params,
            "fitted": {name: _plain(getattr(estimator, name)) for name in ESTIMATOR_FITTED},
            "generator": _plain(estimator._rng.bit_generator.state)}


def _describe_layer(layer, generators):
    kind = type(layer).__name__
    if LAYERS.get(kind) is not type(layer):
        raise ValueError(f"cannot save layer {layer!r}: only {sorted(LAYERS)} can be stored in a "
                         "model file (pickle the model instead)")
    spec = {"type": kind}
    if isinstance(layer, Dense):
        spec.update(in_features=layer.in_features, out_features=layer.out_features, dtype=layer.dtype.name,
                    init=layer.init if isinstance(layer.init, str) else None)
    elif isinstance(layer, LeakyReLU):
        spec["alpha"] = layer.alpha
    elif isinstance(layer, Dropout):
        spec["p"] = layer.p
        spec["generator"] = _generator_index(layer._rng, generators)
    return spec


def _generator_index(generator, generators):
    """Index of generator in generators (appended if new): layers that share a generator keep sharing it."""
    for i, known in enumerate(generators):
        if known is generator:
            return i
    kind = type(generator.bit_generator).__name__
    if BIT_GENERATORS.get(kind) is not type(generator.bit_generator):
        raise ValueError(f"cannot save a Dropout generator driven by {kind}; "
                         f"supported bit generators: {sorted(BIT_GENERATORS)}")
    generators.append(generator)
    return len(generators) - 1


def _plain(value):
    """value with its arrays turned into lists, for JSON."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _describe_loss(loss):
    if loss is None:
        return None
    if LOSSES.get(loss.name) is not type(loss):
        raise ValueError(f"cannot save loss {loss!r}: only {sorted(LOSSES)} can be stored in a model file "
                         "(pickle the model instead)")
    return loss.name


def _describe_optimizer(optimizer, arrays):
    """The optimizer as JSON-ready data; adds its state buffers to arrays."""
    if optimizer is None:
        return None
    kind = type(optimizer).__name__
    if OPTIMIZER_CLASSES.get(kind) is not type(optimizer):
        raise ValueError(f"cannot save optimizer {optimizer!r}: only {sorted(OPTIMIZER_CLASSES)} can be "
                         "stored in a model file (pickle the model instead)")
    params = optimizer.get_params()
    params["schedule"] = _describe_schedule(params["schedule"])
    for name, buffer in optimizer.state.items():
        arrays[f"state_{name}"] = buffer
    return {"type": kind, "params": params, "lr": optimizer.lr, "steps": optimizer.steps,
            "epochs": optimizer.epochs, "state": sorted(optimizer.state)}


def _describe_schedule(schedule):
    if schedule is None:
        return None
    fields = SCHEDULE_FIELDS.get(type(schedule))
    if fields is None:
        raise ValueError(f"cannot save the learning-rate schedule {schedule!r}: only {sorted(SCHEDULES)} can "
                         "be stored in a model file; set optimizer.schedule = None before saving, "
                         "or pickle the model instead")
    return {"type": type(schedule).__name__, "fields": {name: getattr(schedule, name) for name in fields}}


def _digest(arrays):
    """SHA-256 over the name, dtype, shape and bytes of every array, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}\n".encode("utf-8"))
        digest.update(array)
    return digest.digest()


def _write_atomically(path, arrays):
    """np.savez to a temporary file beside path, fsync, rename over path; the temporary file
    is removed on any error, leaving path as it was."""
    directory, name = os.path.split(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path!r}: directory {directory!r} does not exist")
    temp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            np.savez(file, **arrays)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    if hasattr(os, "O_DIRECTORY"):
        descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _read_arrays(file, path):
    """Every array of the .npz archive in file, read into memory."""
    if file.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
        raise ModelFileError(f"{path!r} is not a fastnn model file: it is not an .npz archive")
    file.seek(0)
    try:
        with np.load(file, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception as error:  # a damaged zip fails in many ways: BadZipFile, EOFError, NotImplementedError...
        raise ModelFileError(f"{path!r} is truncated or corrupted: its .npz archive cannot be read "
                             f"({type(error).__name__}: {error})") from error


def _read_meta(arrays, path):
    """The metadata, after checking the format tag, the version and the checksum."""
    text = arrays.get("meta")
    if text is None or "sha256" not in arrays or text.dtype != np.uint8 or text.ndim != 1:
        raise ModelFileError(f"{path!r} is not a fastnn model file: it has no fastnn metadata")
    try:
        meta = json.loads(text.tobytes().decode("utf-8"))
    except ValueError as error:
        raise ModelFileError(f"{path!r} is corrupted: its metadata is not valid JSON ({error})") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is not a fastnn model file: its format tag is not {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path!r} has format version {meta.get('version')!r}; "
                             f"this fastnn reads version {VERSION}")
    stored = arrays["sha256"]
    if stored.dtype != np.uint8 or stored.tobytes() != _digest({k: v for k, v in arrays.items() if k != "sha256"}):
        raise ModelFileError(f"{path!r} is corrupted: its checksum does not match its contents")
    return meta


def _build(meta, arrays):
    """The Sequential described by meta; one of the errors load catches when meta is invalid."""
    if set(arrays) != set(meta["arrays"]) | {"meta", "sha256"}:
        raise ValueError(f"the file holds arrays {sorted(arrays)}; the metadata lists {sorted(meta['arrays'])}")
    for name, spec in meta["arrays"].items():
        if arrays[name].dtype.name != spec["dtype"] or list(arrays[name].shape) != spec["shape"]:
            raise ValueError(f"array {name!r} is {arrays[name].dtype.name} {arrays[name].shape}; "
                             f"the metadata says {spec['dtype']} {tuple(spec['shape'])}")
    generators = [_generator(state) for state in meta["generators"]]
    model = Sequential(*[_layer(spec, generators) for spec in meta["layers"]])
    if arrays["params"].dtype.name != model.dtype.name or arrays["params"].shape != model.params.shape:
        raise ValueError(f"params are {arrays['params'].dtype.name} {arrays['params'].shape}; the layers need "
                         f"{model.dtype.name} {model.params.shape}")
    model.params[...] = arrays["params"]
    model.loss = None if meta["loss"] is None else LOSSES[meta["loss"]]()
    model.optimizer = None if meta["optimizer"] is None else _optimizer(meta["optimizer"], arrays)
    model.train(meta["training"])
    return model


def _estimator(spec, model, arrays):
    """The estimator described by spec, fitted: model_ is the loaded model."""
    from .sklearn import ESTIMATORS

    params = {name: tuple(value) if isinstance(value, list) else value for name, value in spec["params"].items()}
    estimator = ESTIMATORS[spec["class"]](**params)
    for name in ESTIMATOR_FITTED:
        setattr(estimator, name, spec["fitted"][name])
    if "classes" in arrays:
        estimator.classes_ = arrays["classes"]
    estimator._rng = _generator(spec["generator"])
    estimator.model_ = model
    return estimator


def _generator(state):
    bit_generator = BIT_GENERATORS[state["bit_generator"]]()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def _layer(spec, generators):
    kind = LAYERS[spec["type"]]
    if kind is Dense:
        layer = Dense(spec["in_features"], spec["out_features"], init="zeros", dtype=spec["dtype"])
        layer.init = spec["init"]
        return layer
    if kind is Dropout:
        return Dropout(spec["p"], seed=generators[spec["generator"]])
    if kind is LeakyReLU:
        return LeakyReLU(spec["alpha"])
    return kind()


def _optimizer(spec, arrays):
    kind = OPTIMIZER_CLASSES[spec["type"]]
    params = dict(spec["params"])
    schedule = params["schedule"]
    if schedule is not None:
        params["schedule"] = SCHEDULES[schedule["type"]](**schedule["fields"])
    optimizer = kind(**params)
    optimizer.lr = float(spec["lr"])
    optimizer.steps = int(spec["steps"])
    optimizer.epochs = int(spec["epochs"])
    for name in spec["state"]:
        if name not in kind.state_names:
            raise ValueError(f"{spec['type']} has no state buffer {name!r}")
        buffer = arrays[f"state_{name}"]
        optimizer.state[name] = buffer.astype(buffer.dtype.newbyteorder("="), copy=False)
    return optimizer
