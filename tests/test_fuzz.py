"""Fuzz tests: every checked kernel and public callable on arbitrary shapes, dtypes,
memory layouts, read-only and overlapping arrays and bad scalars, on every backend. Each
call either raises ValueError/TypeError (the same on every backend) or gives the result
the NumPy reference computes on clean copies of the arguments, and leaves its inputs
alone; a call without defects must be accepted. A crash would end the run: pytest's
faulthandler (on by default) then prints where.

A recipe (plain values drawn by hypothesis) says how to build every argument: its dtype,
shape, layout, whether it is read-only, not an array at all, or a view into a pool of
memory shared with other arguments (so outputs overlap inputs, fully or in part).
``build(recipe)`` makes the same arguments afresh each time, aliasing included, so every
backend gets an identical call.

CI runs FUZZ_EXAMPLES examples per test (each example calls every backend); the
``fuzz_long`` variants (pytest -m fuzz_long) run FUZZ_LONG_EXAMPLES.
"""
import importlib
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import fastnn
import fastnn.kernels as K
from fastnn.kernels import ACTIVATIONS

FUZZ_EXAMPLES = 500
FUZZ_LONG_EXAMPLES = 20_000

# name, role ("in", "out", "labels"; "?" when None is allowed), shape in terms of the dims
# b(atch), i(nputs), o(utputs), n (flat buffer length).
ARRAYS = {
    "matmul": [("A", "in", "bi"), ("B", "in", "io"), ("out", "out", "bo")],
    "dense_forward": [("X", "in", "bi"), ("W", "in", "io"), ("b", "in", "o"), ("out", "out", "bo")],
    "dense_backward": [("X", "in", "bi"), ("W", "in", "io"), ("dZ", "in", "bo"), ("dW", "out", "io"),
                       ("db", "out", "o"), ("dX", "out?", "bi")],
    "activation_forward": [("Z", "in", "bo"), ("out", "out", "bo")],
    "activation_backward": [("A", "in", "bo"), ("dA", "in", "bo"), ("out", "out", "bo")],
    "softmax": [("Z", "in", "bo"), ("out", "out", "bo")],
    "softmax_cross_entropy": [("Z", "in", "bo"), ("labels", "labels", "b"), ("grad", "out", "bo"),
                              ("sample_weight", "in?", "b")],
    "sgd_update": [("params", "out", "n"), ("grad", "in", "n"), ("velocity", "out", "n")],
    "adam_update": [("params", "out", "n"), ("grad", "in", "n"), ("m", "out", "n"), ("v", "out", "n")],
}
for _loss in ("softmax_cross_entropy_soft", "mse", "bce_with_logits"):
    ARRAYS[_loss] = [("Z", "in", "bo"), ("target", "in", "bo"), ("grad", "out", "bo"), ("sample_weight", "in?", "b")]

TRAINABLE = [name for name in ACTIVATIONS if name != "step"]
# Valid scalar arguments after the arrays, and values that must be refused.
SCALARS = {
    "dense_forward": lambda: [st.sampled_from(TRAINABLE), st.sampled_from([0.0, 0.01, 0.3])],
    "activation_forward": lambda: [st.sampled_from(list(ACTIVATIONS) + list(ACTIVATIONS.values())),
                                   st.sampled_from([0.0, 0.2])],
    "activation_backward": lambda: [st.sampled_from(TRAINABLE), st.sampled_from([0.0, 0.2])],
    "sgd_update": lambda: [st.sampled_from([1e-3, 0.1]), st.sampled_from([0.0, 0.9]), st.booleans(),
                           st.sampled_from([0.0, 1e-2])],
    "adam_update": lambda: [st.integers(1, 1000), st.sampled_from([1e-3, 0.1]), st.sampled_from([0.0, 0.9]),
                            st.sampled_from([0.9, 0.999]), st.sampled_from([0.0, 1e-8]),
                            st.sampled_from([0.0, 0.1]), st.booleans()],
}
BAD_SCALARS = [-1.0, float("nan"), float("inf"), 1.0, 2**62, "x", None, 9]
WRONG_DTYPES = [np.int64, np.int32, np.float16, np.bool_, np.complex128]
DEFECTS = ["dtype", "shape", "fortran", "strided", "read-only", "list", "none", "alias", "shifted alias"]


@st.composite
def recipes(draw, kernel):
    """A recipe for a call of kernel: up to two defects (an array's, or a bad scalar); a
    recipe without defects is a valid call. Hypothesis draws the structure (sizes, dtype,
    which defects where); the details (which axis, which offset) come from the recipe's seed."""
    specs = ARRAYS[kernel]
    b, i, o, n = draw(st.tuples(*[st.integers(1, 6)] * 4))
    if kernel in ("matmul", "softmax") and draw(st.integers(0, 3)) == 0:
        b = 0
    dims = {"b": b, "i": i, "o": o, "n": n}
    dtype, seed = draw(st.sampled_from(["float32", "float64"])), draw(st.integers(0, 2**32 - 1))
    kinds = DEFECTS + (["bad scalar"] if kernel in SCALARS else [])
    defects = draw(st.lists(st.tuples(st.integers(0, len(specs) - 1), st.sampled_from(kinds)), max_size=2))
    optional = draw(st.integers(0, 3))
    rng = np.random.default_rng(seed)
    arrays = [{"name": name, "role": role, "dtype": "int64" if role == "labels" else dtype,
               "shape": tuple(dims[d] for d in shape), "layout": "C", "writable": True,
               "kind": "none" if role.endswith("?") and optional % 2 else "array", "offset": None}
              for name, role, shape in specs]
    scalars = [draw(strategy) for strategy in SCALARS.get(kernel, list)()]
    for index, defect in defects:
        entry = arrays[index]
        if defect == "bad scalar":
            scalars[rng.integers(len(scalars))] = BAD_SCALARS[rng.integers(len(BAD_SCALARS))]
        elif defect == "dtype":
            entry["dtype"] = np.dtype(WRONG_DTYPES[rng.integers(len(WRONG_DTYPES))]).name
        elif defect == "shape":
            shape = list(entry["shape"])
            change = rng.integers(4)
            if change == 0 or not shape:
                shape.append(int(rng.integers(1, 4)))
            elif change == 1:
                shape.pop()
            else:
                axis = rng.integers(len(shape))
                shape[axis] = max(0, shape[axis] + (1 if change == 2 else -1))
            entry["shape"] = tuple(shape)
        elif defect in ("fortran", "strided"):
            entry["layout"] = defect
        elif defect == "read-only":
            entry["writable"] = False
        elif defect in ("list", "none"):
            entry["kind"] = defect
        else:
            # A view into the shared pool, at a multiple of 16 elements, or a few elements
            # after one (a partial overlap); a partner goes to the multiple of 16, so the two
            # are the very same memory when their shapes agree.
            entry["kind"] = "array"
            entry["offset"] = 16 * int(rng.integers(3)) + (int(rng.integers(1, 6)) if defect == "shifted alias" else 0)
            others = [a for a in arrays if a is not entry]
            partner = others[rng.integers(len(others))]
            partner["kind"], partner["offset"] = "array", entry["offset"] - entry["offset"] % 16
    return {"kernel": kernel, "arrays": arrays, "scalars": scalars, "clean": not defects,
            "seed": seed, "scale": [1e-3, 1.0, 100.0][draw(st.integers(0, 2))], "classes": o}


def _values(rng, entry, count, scale, classes):
    if entry["role"] == "labels":
        return rng.integers(0, classes, count)
    if entry["name"] in ("sample_weight", "v"):
        return rng.random(count) * scale
    return rng.standard_normal(count) * scale


def build(recipe):
    """The arguments the recipe describes, made afresh (identical every time)."""
    rng = np.random.default_rng(recipe["seed"])
    pool = np.zeros(2048, np.uint8)
    args = []
    for entry in recipe["arrays"]:
        if entry["kind"] in ("none", "list"):
            args.append(None if entry["kind"] == "none" else np.ones(entry["shape"]).tolist())
            continue
        dtype, shape = np.dtype(entry["dtype"]), entry["shape"]
        count = int(np.prod(shape))
        values = _values(rng, entry, count, recipe["scale"], recipe["classes"])
        if entry["offset"] is not None:
            start = entry["offset"] * 8
            a = pool[start:start + count * dtype.itemsize].view(dtype).reshape(shape)
            a[...] = values.reshape(shape).astype(dtype)
        elif entry["layout"] == "strided" and shape:
            wide = np.zeros(shape[:-1] + (2 * shape[-1],), dtype)
            a = wide[..., ::2]
            a[...] = values.reshape(shape).astype(dtype)
        else:
            a = values.reshape(shape).astype(dtype)
            if entry["layout"] == "fortran":
                a = np.asfortranarray(a)
        if not entry["writable"]:
            a.flags.writeable = False
        args.append(a)
    return args + list(recipe["scalars"])


def _backends():
    """Every backend, and the Cython kernels' portable build where the backend is the AVX2 one."""
    backends = [K.get_backend(name) for name in K.available_backends()]
    portable = importlib.import_module("fastnn.kernels.cython_kernels")
    if "cython" in K.available_backends() and K.get_backend("cython").raw is not portable:
        backends.append(K.Backend("cython-portable", portable))
    return backends


BACKENDS = _backends()
REFERENCE = K.get_backend("numpy")
BUDGETS = [pytest.param(FUZZ_EXAMPLES, id="ci"),
           pytest.param(FUZZ_LONG_EXAMPLES, id="long", marks=pytest.mark.fuzz_long)]


def run_property(strategy, check, budget):
    """check(example) for budget examples of strategy, without a deadline (the machine is shared)."""
    settings(max_examples=budget, deadline=None, database=None, phases=[Phase.generate, Phase.shrink],
             suppress_health_check=list(HealthCheck))(given(strategy)(check))()


def _snapshot(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def _outcome(call, args):
    """("refused", exception type) or ("done", result)."""
    try:
        return "done", call(*args)
    except (ValueError, TypeError) as error:
        return "refused", type(error)


def _tolerance(dtype, args):
    """(rtol, atol) at the precision of dtype, the atol scaled by the inputs' magnitude
    (products of a few terms)."""
    scale = max([1.0] + [float(np.max(np.abs(a), initial=0)) for a in args
                         if isinstance(a, np.ndarray) and a.dtype.kind == "f"])
    eps = 1e-4 if np.dtype(dtype) == np.float32 else 1e-10
    return eps, eps * 8 * scale * scale


def assert_close(got, want, rtol, atol, message=""):
    """np.testing.assert_allclose (NaN equal to NaN), with a fast path for the common pass."""
    if not np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=message)


def _clean_copies(args):
    return [np.array(a, copy=True, order="C") if isinstance(a, np.ndarray) else a for a in args]


def check_against_reference(recipe, calls, expected_call):
    """Run each of calls (name -> callable) on build(recipe); every one refuses with the
    same error type, or all succeed and match expected_call on clean copies, without
    writing to any argument that is not an output (or the very same array as one)."""
    outputs = [i for i, entry in enumerate(recipe["arrays"]) if entry["role"].startswith("out")
               or (recipe["kernel"] in ("sgd_update", "adam_update") and entry["name"] in ("params", "velocity", "m", "v"))]
    results = {}
    for name, call in calls.items():
        args = build(recipe)
        before = _snapshot(args)
        status, value = _outcome(call, args)
        results[name] = (status, value, args, before)
    statuses = {name: (status, value if status == "refused" else None) for name, (status, value, _, _) in results.items()}
    assert len(set(statuses.values())) == 1, (recipe, statuses)
    status = next(iter(statuses.values()))[0]
    if recipe["clean"]:
        assert status == "done", (recipe, statuses)
    if status == "refused":
        return
    expected_args = _clean_copies(build(recipe))
    expected_value = expected_call(*expected_args)
    rtol, atol = _tolerance(recipe["arrays"][0]["dtype"], expected_args)
    for name, (_, value, args, before) in results.items():
        if expected_value is not None:
            assert_close(value, expected_value, rtol, atol, f"{name} {recipe}")
        written = [args[i] for i in outputs if isinstance(args[i], np.ndarray)]
        for i, (a, old) in enumerate(zip(args, before)):
            if not isinstance(a, np.ndarray):
                continue
            if i in outputs:
                assert_close(a, expected_args[i], rtol, atol, f"{name} {recipe}")
            elif not any(a is w or (a.shape == w.shape and np.may_share_memory(a, w)) for w in written):
                assert np.array_equal(a, old, equal_nan=a.dtype.kind in "fc"), f"{name} wrote its input {i}: {recipe}"


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kernel", list(ARRAYS))
def test_checked_kernels(kernel, budget):
    """Each checked kernel of every backend against the unchecked reference."""
    calls = {backend.name: getattr(backend, kernel) for backend in BACKENDS}
    run_property(recipes(kernel), lambda recipe: check_against_reference(recipe, calls, getattr(REFERENCE, kernel)),
                 budget)


def _public_backends():
    return [name for name in K.available_backends()]


def _under(backend, call):
    def run(*args):
        with fastnn.use_backend(backend):
            return call(*args)

    return run


LOSS_OBJECTS = {"softmax_cross_entropy": fastnn.SoftmaxCrossEntropy(), "mse": fastnn.MSE(),
                "softmax_cross_entropy_soft": fastnn.SoftmaxCrossEntropy(), "bce_with_logits": fastnn.BCEWithLogits()}


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kernel", list(LOSS_OBJECTS))
def test_loss_objects(kernel, budget):
    """Loss.__call__ on every backend, against its checked reference kernel."""
    loss = LOSS_OBJECTS[kernel]
    calls = {name: _under(name, loss) for name in _public_backends()}
    run_property(recipes(kernel), lambda recipe: check_against_reference(recipe, calls, getattr(REFERENCE, kernel)),
                 budget)


def _step(value):
    """Adam's step count as the optimizer holds it: a bad one in a recipe becomes 1."""
    return value if isinstance(value, int) and 1 <= value < 2**62 else 1


def sgd_step(params, grad, velocity, lr, momentum, nesterov, weight_decay):
    """SGD.step; Nesterov only with momentum, which the class requires."""
    optimizer = fastnn.SGD(lr, momentum=momentum, nesterov=nesterov and momentum != 0, weight_decay=weight_decay)
    optimizer.state = {"velocity": velocity}
    optimizer.step(params, grad)


def adam_step(params, grad, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    optimizer = fastnn.Adam(lr, betas=(beta1, beta2), eps=eps, weight_decay=weight_decay, decoupled=decoupled)
    optimizer.state, optimizer.steps = {"m": m, "v": v}, _step(step) - 1
    optimizer.step(params, grad)
    assert optimizer.steps == _step(step)


def reference_sgd_step(params, grad, velocity, lr, momentum, nesterov, weight_decay):
    REFERENCE.sgd_update(params, grad, velocity, lr, momentum, nesterov and momentum != 0, weight_decay)


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("kernel,step,expected", [
    ("sgd_update", sgd_step, reference_sgd_step),
    ("adam_update", adam_step, lambda *args: REFERENCE.adam_update(*args[:4], _step(args[4]), *args[5:])),
])
def test_optimizer_steps(kernel, step, expected, budget):
    """Optimizer.step with state buffers of any kind, on every backend, against the kernel."""
    calls = {name: _under(name, step) for name in _public_backends()}
    run_property(recipes(kernel), lambda recipe: check_against_reference(recipe, calls, expected), budget)


# Inputs for layers and fit: any dtype, shape, layout, read-only, or not an array.
INPUT_DTYPES = ["float32", "float64", "float16", "int64", "uint8", "bool", "complex128"]


@st.composite
def inputs(draw, rows, columns):
    """(recipe of one array, clean): mostly (rows, columns) of the model's dtype ("model",
    set by the test), C order."""
    shape = (rows, columns)
    defect = draw(st.sampled_from([None, None, None, "shape", "dtype", "fortran", "strided", "read-only", "list"]))
    if defect == "shape":
        shape = draw(st.sampled_from([(), (rows,), (rows, columns + 1), (rows, max(columns - 1, 0)), (0, columns),
                                      (rows, columns, 1)]))
    dtype = draw(st.sampled_from(INPUT_DTYPES)) if defect == "dtype" else "model"
    entry = {"name": "x", "role": "in", "dtype": dtype, "shape": shape, "writable": defect != "read-only",
             "layout": defect if defect in ("fortran", "strided") else "C",
             "kind": "list" if defect == "list" else "array", "offset": None}
    recipe = {"arrays": [entry], "scalars": [], "seed": draw(st.integers(0, 2**32 - 1)),
              "scale": 1.0, "classes": columns}
    return recipe, defect is None


def _outcomes(calls, make_args):
    results = {}
    for name, call in calls.items():
        status, value = _outcome(call, make_args())
        results[name] = (status, value if status == "done" else value)
    kinds = {(status, value if status == "refused" else None) for status, value in results.values()}
    assert len(kinds) == 1, results
    return results


LAYERS = {"Dense": lambda dtype: fastnn.Dense(4, 3, dtype=dtype, seed=0),
          **{name: (lambda cls: lambda dtype: cls())(cls) for name, cls in
             [("ReLU", fastnn.ReLU), ("Sigmoid", fastnn.Sigmoid), ("Tanh", fastnn.Tanh),
              ("LeakyReLU", fastnn.LeakyReLU), ("Identity", fastnn.Identity)]}}


def _layer_reference(layer, x):
    """What forward should give, in float64."""
    x = np.asarray(x, np.float64)
    if isinstance(layer, fastnn.Dense):
        return x @ layer.W.astype(np.float64) + layer.b
    out = np.empty_like(x)
    REFERENCE.activation_forward(x, out, layer.name, layer.alpha)
    return out


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_forward_and_backward(name, budget):
    """A layer's forward on any input, then backward on any gradient: refused with
    ValueError/TypeError, or the reference's numbers (on every backend)."""
    def check(example):
        (x_recipe, x_clean), (g_recipe, g_clean), dtype = example
        layers = {backend: LAYERS[name](dtype) for backend in _public_backends()}
        for recipe in (x_recipe, g_recipe):
            recipe["arrays"][0]["dtype"] = recipe["arrays"][0]["dtype"].replace("model", dtype)
        outcomes = _outcomes({backend: _under(backend, layer.forward) for backend, layer in layers.items()},
                             lambda: build(x_recipe))
        status = next(iter(outcomes.values()))[0]
        assert status == "done" or not x_clean, (x_recipe, outcomes)
        if status != "done":
            return
        x = build(x_recipe)[0]
        rtol, atol = _tolerance(x.dtype, [x])
        for backend, (_, out) in outcomes.items():
            assert_close(out, _layer_reference(layers[backend], x), rtol, atol)
        outcomes = _outcomes({backend: _under(backend, layer.backward) for backend, layer in layers.items()},
                             lambda: build(g_recipe))
        status = next(iter(outcomes.values()))[0]
        assert status == "done" or not (x_clean and g_clean), (g_recipe, outcomes)
        if status != "done":
            return
        grad = build(g_recipe)[0].astype(np.float64)
        for backend, (_, dx) in outcomes.items():
            layer = layers[backend]
            if isinstance(layer, fastnn.Dense):
                assert_close(layer.dW, x.astype(np.float64).T @ grad, rtol, atol)
                assert_close(dx, grad @ layer.W.T.astype(np.float64), rtol, atol)
            else:
                want = np.empty_like(grad)
                REFERENCE.activation_backward(layer._output.astype(np.float64), grad, want, layer.name, layer.alpha)
                assert_close(dx, want, rtol, atol)

    n_in = 4 if name == "Dense" else 3
    run_property(st.tuples(inputs(5, n_in), inputs(5, 3), st.sampled_from(["float32", "float64"])), check, budget)


LOSSES = ["cross_entropy", "mse", "bce"]
TARGET_DEFECTS = [None, None, None, "out of range", "non-integer", "wrong length", "nan", "wrong width", "list"]


def _targets(loss, defect, n, seed):
    """Targets for a 2-output model under loss, or with a defect."""
    rng = np.random.default_rng(seed)
    rows = n + 1 if defect == "wrong length" else n
    if loss == "cross_entropy":
        y = rng.integers(0, 2, rows).astype(np.float64)
        if defect == "out of range":
            y[0] = 2
    else:
        y = rng.random((rows, 3 if defect == "wrong width" else 2))
        if defect == "out of range":
            y[0, 0] = -1.0 if loss == "bce" else 1e300
    if defect == "non-integer":
        y.flat[0] += 0.5
    if defect == "nan":
        y.flat[0] = np.nan
    return y.tolist() if defect == "list" else y


@pytest.mark.parametrize("budget", BUDGETS)
def test_fit(budget):
    """fit on any inputs and targets (X a view of the model's own parameters among them),
    with the engine (numba, cython) and without (numpy): refused with ValueError/TypeError on
    every backend alike, or the same trained weights."""
    def check(example):
        (x_recipe, x_clean), loss, target_defect, optimizer, batch_size, dtype, seed, in_params = example
        x_recipe["arrays"][0]["dtype"] = x_recipe["arrays"][0]["dtype"].replace("model", dtype)
        shape = x_recipe["arrays"][0]["shape"]
        n = max(shape[0], 1) if shape else 1
        results = {}
        for backend in _public_backends():
            model = fastnn.mlp([3, 4, 2], dtype=dtype, seed=0)
            X = build(x_recipe)[0]
            if in_params and isinstance(X, np.ndarray) and X.dtype == model.dtype and X.size <= model.n_params:
                # X over the model's own parameters: fit must train on X as it was.
                model.params[:X.size] = X.ravel()
                X = model.params[:X.size].reshape(X.shape)
            with fastnn.use_backend(backend), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                status, value = _outcome(lambda: model.fit(
                    X, _targets(loss, target_defect, n, seed), loss=loss, optimizer=optimizer,
                    lr=0.05, epochs=2, batch_size=batch_size, seed=seed, verbose=0), ())
            results[backend] = (status, value if status == "refused" else model.params.copy())
        kinds = {(status, value if status == "refused" else None) for status, value in results.values()}
        assert len(kinds) == 1, (example, results)
        status = next(iter(kinds))[0]
        assert status == "done" or not (x_clean and target_defect is None), (example, results)
        if status == "done":
            want = results["numpy"][1]
            rtol, atol = (1e-3, 1e-4) if dtype == "float32" else (1e-8, 1e-10)
            for backend, (_, params) in results.items():
                assert_close(params, want, rtol, atol, f"{backend}: {example}")

    run_property(st.tuples(st.integers(1, 12).flatmap(lambda n: inputs(n, 3)), st.sampled_from(LOSSES),
                           st.sampled_from(TARGET_DEFECTS), st.sampled_from(["sgd", "adam"]),
                           st.sampled_from([None, 1, 3, "full", 100]), st.sampled_from(["float32", "float64"]),
                           st.integers(0, 2**16), st.booleans()), check, budget // 2)
