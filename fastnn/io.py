"""Save a Sequential model (or a Stack of models, or a fitted MLPClassifier/MLPRegressor) to
a portable file and load it back, ready to resume training.

The file is an uncompressed NumPy ``.npz`` archive without pickled objects:

- ``meta``: UTF-8 JSON (as uint8) with the format tag and version, the layers
  (each Dense and Conv2D with its dtype), the states of the Dropout random generators, the
  loss name, the optimizer (class, hyper-parameters, schedule, current lr, step
  count) and the dtype and shape of every other array;
- ``params``: the flat parameter buffer;
- ``state_<name>``: the optimizer's state buffers (``state_velocity``, ``state_m``, ...);
- for a Stack of K models, ``params`` and ``state_<name>`` are (K, P) arrays, row k model
  k's, and ``meta`` says K and gives each model's Dropout generators and optimizer;
- ``classes``: an estimator's classes_ (MLPClassifier only);
- ``sha256``: a digest of all the other arrays (names, dtypes, shapes and bytes),
  verified on load.

For an estimator, ``meta`` also holds its class and the state it gives (its
``_save_state``: its parameters from get_params, its fitted attributes n_iter_, t_,
loss_curve_, ... but not history_, and the state of its random generator), from which
its class restores it (``_restore_state``), so fit with warm_start or partial_fit
continues as it would have. io stores that state as it comes and imports no estimator:
it finds the class by its name in fastnn's namespace, as pickle finds a class.

Only fastnn's own layers, losses, optimizers and schedules can be stored: saving
anything else (a custom Module, a lambda schedule, ...) raises ValueError rather
than writing a file that would train differently once loaded. Pickle covers those.
"""
import importlib
import json
import os
import zipfile

import numpy as np

from .conv import Conv2D, Flatten, MaxPool2D
from .layers import ACTIVATION_MODULES, Dense, Dropout, LeakyReLU
from .losses import LOSSES
from .npz import (MAX_NPY_HEADER, MAX_SMALL_BYTES, ZIP_MAGIC, ModelFileError, archive_members, digest, read_array,
                  reading, write_atomically)
from .optim import OPTIMIZERS, CosineDecay, ExponentialDecay, StepDecay
from .validation import check_int_pair, check_positive_int

FORMAT = "fastnn.model"
VERSION = 1

LAYERS = {cls.__name__: cls for cls in (Dense, Dropout, *ACTIVATION_MODULES.values(), Conv2D, MaxPool2D, Flatten)}
OPTIMIZER_CLASSES = {cls.__name__: cls for cls in OPTIMIZERS.values()}
SCHEDULE_FIELDS = {StepDecay: ("step_size", "gamma"), ExponentialDecay: ("gamma",),
                   CosineDecay: ("total_epochs", "min_lr")}
SCHEDULES = {cls.__name__: cls for cls in SCHEDULE_FIELDS}
BIT_GENERATORS = {cls.__name__: cls for cls in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937,
                                                 np.random.Philox, np.random.SFC64)}


def save(model, path):
    """Write ``model`` (architecture, parameters, loss, optimizer and its state) to ``path``.

    model is a Sequential, a Stack or a fitted fastnn MLPClassifier/MLPRegressor. path (str or
    os.PathLike) is used as given: no extension is added. The file is written to a
    temporary file in the same directory, synced and renamed over path, so path holds
    either its old contents or the complete new file.
    """
    estimator, estimator_arrays, stack = None, {}, None
    if isinstance(model, _fastnn_class("Stack")):
        stack, model = model, model[0]
    elif not isinstance(model, _fastnn_class("Sequential")):
        kind = type(model).__name__
        if _estimator_class(kind) is not type(model):
            raise TypeError(f"model must be a fastnn Sequential, Stack, MLPClassifier or MLPRegressor; got {kind}")
        model, state, estimator_arrays = model._save_state()
        estimator = {"class": kind, **state}
    path = os.fspath(path)
    generators = []
    arrays = {"params": model.params if stack is None else stack.params}
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "training": bool(model.training),
        "layers": [_describe_layer(layer, generators) for layer in model.layers],
        "generators": [generator_state(generator) for generator in generators],
        "loss": _describe_loss(model.loss),
        "optimizer": _describe_optimizer(model.optimizer, arrays),
        "estimator": estimator,
        "stack": None if stack is None else _describe_stack(stack, arrays),
    }
    arrays.update(estimator_arrays)
    meta["arrays"] = {name: {"dtype": array.dtype.name, "shape": list(array.shape)}
                      for name, array in arrays.items()}
    text = json.dumps(meta, allow_nan=False, sort_keys=True).encode("utf-8")
    contents = {"meta": np.frombuffer(text, np.uint8), **arrays}
    contents["sha256"] = np.frombuffer(digest(contents), np.uint8)
    write_atomically(path, contents)


def load(path):
    """The Sequential saved at ``path``, with its loss, optimizer and optimizer state
    (or the Stack or the fitted estimator, when one was saved).

    Raises FileNotFoundError (or another OSError) when the file cannot be opened and
    ModelFileError when it is not a complete, intact fastnn model file. Before any
    array is read, the archive's members and their sizes are checked against the
    architecture the metadata describes, so a forged file cannot make load allocate
    more than the model it describes; the arrays are then read into the model's own
    buffers (a valid file loads in about its model's size).
    """
    path = os.fspath(path)
    with open(path, "rb") as file:
        if file.read(len(ZIP_MAGIC)) != ZIP_MAGIC:
            raise ModelFileError(f"{path!r} is not a fastnn model file: it is not an .npz archive")
        file.seek(0)
        with reading(path):
            archive = zipfile.ZipFile(file)
        with archive:
            members = archive_members(archive, os.fstat(file.fileno()).st_size, path)
            meta = _read_meta(archive, members, path)
            try:
                specs = _array_specs(meta, members)
                model = _model(meta["layers"], meta["generators"])
                if meta.get("stack") is not None:  # the models of a stack, each with its generators
                    model = _fastnn_class("Stack")([_model(meta["layers"], member["generators"])
                                                    for member in meta["stack"]["members"]])
            except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
                raise _invalid(path, error) from error
            arrays = {"meta": meta.pop("_bytes"), "sha256": meta.pop("_sha256")}
            with reading(path):
                for name, (dtype, shape) in specs.items():
                    arrays[name] = read_array(archive, members[name], dtype, shape,
                                               model.params if name == "params" else None)
    stored = arrays.pop("sha256")
    if stored.tobytes() != digest(arrays):
        raise ModelFileError(f"{path!r} is corrupted: its checksum does not match its contents")
    try:
        if meta.get("stack") is not None:
            return _build_stack(meta, arrays, model)
        model = _build(meta, arrays, model)
        return model if meta["estimator"] is None else _estimator(meta["estimator"], model, arrays)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as error:
        raise _invalid(path, error) from error


def _model(layers, generator_states):
    """The Sequential of these layer specs, its Dropout layers drawing from these generators."""
    generators = [generator_from_state(state) for state in generator_states]
    return _fastnn_class("Sequential")(*[_layer(spec, generators) for spec in layers])


def _describe_stack(stack, arrays):
    """What a stack's file adds to its first model's description: the number of models and
    each one's Dropout generators and optimizer; the optimizers' state goes into arrays
    as (K, P) arrays, row k model k's."""
    members = []
    for model in stack:
        generators = []
        for layer in model.layers:
            _describe_layer(layer, generators)
        members.append({"generators": [generator_state(generator) for generator in generators],
                        "optimizer": _describe_optimizer(model.optimizer, {})})
    kinds = {type(model.optimizer) for model in stack}
    if len(kinds) > 1:
        raise ValueError(f"cannot save a stack whose models have different kinds of optimizers: "
                         f"{sorted(kind.__name__ for kind in kinds)}")
    optimizer = stack[0].optimizer
    for name in optimizer.state if optimizer is not None else ():
        arrays[f"state_{name}"] = np.stack([model.optimizer.state[name] for model in stack])
    return {"models": len(stack), "members": members}


def _build_stack(meta, arrays, stack):
    """The Stack of meta's models with their parameters, loss and optimizers (their state
    rows of the stack's): the optimizer of all models is rebuilt from theirs
    (Optimizer.of_models), so that fitting the loaded stack with it resumes training."""
    stack.params[...] = arrays["params"]
    if not np.isfinite(stack.params).all():
        raise ValueError("the parameters hold NaN or infinite values")
    loss = None if meta["loss"] is None else LOSSES[meta["loss"]]()
    stack.loss = loss
    for model in stack:
        model.loss = loss
        model.train(meta["training"])
    specs = [member["optimizer"] for member in meta["stack"]["members"]]
    if any(spec is not None for spec in specs):
        optimizers = [_optimizer(spec, {f"state_{name}": arrays[f"state_{name}"][k] for name in spec["state"]})
                      for k, spec in enumerate(specs)]
        stack.bind(type(optimizers[0]).of_models(optimizers))
        for name, buffer in stack.state.items():
            buffer[...] = arrays[f"state_{name}"]
        for mine, loaded in zip(stack.optimizers, optimizers):
            mine.lr, mine.steps, mine.epochs = loaded.lr, loaded.steps, loaded.epochs
    return stack


def _invalid(path, error):
    return ModelFileError(f"{path!r} holds an invalid model description ({type(error).__name__}: {error})")


def load_as(cls, path):
    """load(path), refusing a file that holds anything but a ``cls`` (TypeError): the
    class-level loaders Sequential.load, MLPClassifier.load and MLPRegressor.load."""
    model = load(path)
    if not isinstance(model, cls):
        raise TypeError(f"{os.fspath(path)!r} holds a {type(model).__name__}, not a {cls.__name__}; "
                        f"fastnn.load(path) loads any fastnn model")
    return model


def _fastnn_class(name):
    """The class of this name in fastnn's namespace, or None. io builds Sequentials and
    estimators without importing their modules (they import io to save and load
    themselves): it finds their classes by name, as pickle does; the namespace imports
    the estimators' module on first use."""
    package = importlib.import_module(__package__)
    found = getattr(package, name, None) if name in package.__all__ else None
    return found if isinstance(found, type) else None


def _estimator_class(name):
    """fastnn's estimator class of this name, or None: one that restores its instances
    from their saved state (``_restore_state``)."""
    found = _fastnn_class(name)
    return found if hasattr(found, "_restore_state") else None


def _describe_layer(layer, generators):
    kind = type(layer).__name__
    if LAYERS.get(kind) is not type(layer):
        raise ValueError(f"cannot save layer {layer!r}: only {sorted(LAYERS)} can be stored in a "
                         "model file (pickle the model instead)")
    spec = {"type": kind}
    if isinstance(layer, Dense):
        spec.update(in_features=layer.in_features, out_features=layer.out_features, dtype=layer.dtype.name,
                    init=layer.init if isinstance(layer.init, str) else None)
    elif isinstance(layer, Conv2D):
        spec.update(in_channels=layer.in_channels, out_channels=layer.out_channels,
                    kernel_size=list(layer.kernel_size), stride=list(layer.stride), padding=list(layer.padding),
                    dtype=layer.dtype.name, init=layer.init if isinstance(layer.init, str) else None)
    elif isinstance(layer, MaxPool2D):
        spec.update(kernel_size=list(layer.kernel_size), stride=list(layer.stride))
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


def generator_state(generator):
    """The state of a NumPy Generator as JSON-ready data, for generator_from_state."""
    return _plain(generator.bit_generator.state)


def generator_from_state(state):
    """A new NumPy Generator in the state generator_state gave; KeyError or ValueError
    when state is not one of a known bit generator."""
    bit_generator = BIT_GENERATORS[state["bit_generator"]]()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


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


def _read_meta(archive, members, path):
    """The metadata, after checking the format tag and the version; its raw bytes and the
    stored checksum ride along as meta['_bytes'] and meta['_sha256']."""
    with reading(path):
        text = read_array(archive, members["meta"], "uint8", None, None)
        stored = read_array(archive, members["sha256"], "uint8", [32], None)
    if text.ndim != 1:
        raise ModelFileError(f"{path!r} is not a fastnn model file: it has no fastnn metadata")
    try:
        meta = json.loads(text.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise ModelFileError(f"{path!r} is corrupted: its metadata is not valid JSON "
                             f"({type(error).__name__}: {error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path!r} is not a fastnn model file: its format tag is not {FORMAT!r}")
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path!r} has format version {meta.get('version')!r}; "
                             f"this fastnn reads version {VERSION}")
    meta["_bytes"], meta["_sha256"] = text, stored
    return meta


def _array_specs(meta, members):
    """(dtype name, shape) of every array the metadata lists, after checking that the list
    matches the archive's members, that the parameters and optimizer state have the
    length and dtype of the layers described and their members that many bytes, and
    that any other array belongs to an estimator and is small."""
    listed = meta["arrays"]
    if set(members) != set(listed) | {"meta", "sha256"}:
        raise ValueError(f"the file holds arrays {sorted(members)}; the metadata lists {sorted(listed)}")
    weighted = [spec for spec in meta["layers"] if LAYERS[spec["type"]] in (Dense, Conv2D)]
    n_params = sum(_n_params(spec) for spec in weighted)
    stacked = meta.get("stack") is not None
    models = check_positive_int("models", meta["stack"]["models"]) if stacked else 1
    if stacked and len(meta["stack"]["members"]) != models:
        raise ValueError(f"the stack lists {len(meta['stack']['members'])} models; it says it has {models}")
    want_shape = [models, n_params] if stacked else [n_params]
    want = weighted[0]["dtype"] if weighted else None
    specs = {}
    for name, spec in listed.items():
        dtype, shape, size = spec["dtype"], spec["shape"], members[name].file_size
        if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
            raise ValueError(f"array {name!r} is declared with shape {shape!r}")
        if _is_model_array(name):
            if shape != want_shape or dtype != want:
                raise ValueError(f"array {name!r} is declared as {dtype} {tuple(shape)}; the layers need "
                                 f"{want} {tuple(want_shape)}")
            nbytes = np.dtype(dtype).itemsize * n_params * models
            if not nbytes <= size <= nbytes + MAX_NPY_HEADER:
                raise ValueError(f"array {name!r} is declared as {dtype} {tuple(want_shape)}, {nbytes} bytes; "
                                 f"its member holds {size} bytes")
        elif meta["estimator"] is not None:
            if size > MAX_SMALL_BYTES + MAX_NPY_HEADER:
                raise ValueError(f"array {name!r} takes {size} bytes, more than {MAX_SMALL_BYTES}")
        else:
            raise ValueError(f"array {name!r} is not part of a fastnn model file")
        specs[name] = (dtype, shape)
    return specs


def _n_params(spec):
    """The parameter count of a Dense or Conv2D layer's spec, from its checked sizes
    (without building the layer, which would allocate them)."""
    if LAYERS[spec["type"]] is Dense:
        fan_in, n_out = (check_positive_int(name, spec[name]) for name in ("in_features", "out_features"))
    else:
        height, width = check_int_pair("kernel_size", spec["kernel_size"], 1)
        fan_in = check_positive_int("in_channels", spec["in_channels"]) * height * width
        n_out = check_positive_int("out_channels", spec["out_channels"])
    return fan_in * n_out + n_out


def _build(meta, arrays, model):
    """The Sequential of meta's layers with its parameters (read into model.params), loss
    and optimizer; one of the errors load catches when meta is invalid."""
    if arrays["params"] is not model.params:
        model.params[...] = arrays["params"]
    if not np.isfinite(model.params).all():
        raise ValueError("the parameters hold NaN or infinite values")
    model.loss = None if meta["loss"] is None else LOSSES[meta["loss"]]()
    model.optimizer = None if meta["optimizer"] is None else _optimizer(meta["optimizer"], arrays)
    model.train(meta["training"])
    return model


def _estimator(spec, model, arrays):
    """The fitted estimator spec describes, restored by its class from its state and
    arrays around the loaded model."""
    cls = _estimator_class(spec["class"])
    if cls is None:
        raise ValueError(f"fastnn has no estimator {spec['class']!r}")
    state = {key: value for key, value in spec.items() if key != "class"}
    own = {name: array for name, array in arrays.items() if name != "meta" and not _is_model_array(name)}
    return cls._restore_state(model, state, own)


def _is_model_array(name):
    """Whether the array called name is the model's: its parameters or optimizer state."""
    return name == "params" or name.startswith("state_")


def _layer(spec, generators):
    kind = LAYERS[spec["type"]]
    if kind is Dense:
        layer = Dense(spec["in_features"], spec["out_features"], init="zeros", dtype=spec["dtype"])
        layer.init = spec["init"]
        return layer
    if kind is Conv2D:
        layer = Conv2D(spec["in_channels"], spec["out_channels"], spec["kernel_size"], spec["stride"],
                       spec["padding"], init="zeros", dtype=spec["dtype"])
        layer.init = spec["init"]
        return layer
    if kind is MaxPool2D:
        return MaxPool2D(spec["kernel_size"], spec["stride"])
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
    optimizer.lr = spec["lr"]
    for count in ("steps", "epochs"):
        if type(spec[count]) is not int or not 0 <= spec[count] < 2**63:
            raise ValueError(f"the optimizer's {count} must be an integer in [0, 2**63); got {spec[count]!r}")
        setattr(optimizer, count, spec[count])
    for name in spec["state"]:
        if name not in kind.state_names:
            raise ValueError(f"{spec['type']} has no state buffer {name!r}")
        buffer = arrays[f"state_{name}"]
        if not np.isfinite(buffer).all() or name == "v" and (buffer < 0).any():
            raise ValueError(f"the optimizer state {name!r} holds NaN, infinite{' or negative' * (name == 'v')} "
                             "values")
        optimizer.state[name] = buffer.astype(buffer.dtype.newbyteorder("="), copy=False)
    return optimizer
