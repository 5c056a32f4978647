"""What the engine's compiled loops trust and do not check: the layout of the arrays an
Engine hands them, checked once per fit before any compiled code runs."""
import numpy as np

from .kernels import abi
from .kernels.contract import BLAS_MAX_DIM, address, disjoint


def is_view(view, buffer, start, shape):
    """Whether view is the C-contiguous (shape) block of the flat buffer from index start."""
    return (isinstance(view, np.ndarray) and view.shape == shape and view.dtype == buffer.dtype
            and view.flags.c_contiguous and address(view) == address(buffer) + start * buffer.itemsize)


def check_shape(name, a, shape, dtype, detail=""):
    """ValueError unless a is a writable C-contiguous array of this shape and dtype; the
    message names it by name and detail (joined only then: run checks on every call)."""
    if not (isinstance(a, np.ndarray) and a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
            and a.flags.writeable):
        name = f"{name} {detail}".strip()
        raise ValueError(f"engine: {name} must be a writable C-contiguous {np.dtype(dtype)} array of shape "
                         f"{shape}; got {getattr(a, 'dtype', type(a).__name__)} of shape {np.shape(a)}")


def check_layout(engine):
    """ValueError unless the arrays of an Engine agree on the layout the compiled loops
    trust: each model's buffers are its row of the stack's, each Dense layer's W, b, dW,
    db are the views of those the layer table points at, the table covers the buffers
    exactly, X has the first layer's inputs and the targets the last layer's outputs, the
    workspace has the table's sizes, every size fits BLAS, and nothing the loops write
    overlaps another array. Run once per fit, before any compiled code (Engine._state
    checks the optimizer state)."""
    group, work, batch = engine.group, engine.work, engine.batch
    params, grads, dtype = group.params, group.grads, group.params.dtype
    layers = work.layers
    check_shape("params", params, params.shape, dtype)
    check_shape("grads", grads, params.shape, dtype)
    if params.ndim != 2 or len(group.models) != len(params) or len(group.optimizers) != len(params):
        raise ValueError(f"engine: a stack of {len(group.models)} models needs params of shape (models, "
                         f"parameters) and an optimizer per model; got {params.shape} and "
                         f"{len(group.optimizers)} optimizers")
    for k, model in enumerate(group.models):
        if not (is_view(model.params, params, k * params.shape[1], params.shape[1:])
                and is_view(model.grads, grads, k * params.shape[1], params.shape[1:])):
            raise ValueError(f"engine: model {k}'s buffers are not row {k} of the stack's")
    arrays = [a for model in group.models for a in _model_arrays(model)]
    if not _as_checked(arrays, work.checked_views):
        for model in group.models:
            _check_views(model, layers, batch)
        work.checked_views = [(a, a.shape, a.strides, a.dtype) for a in arrays]
    n, n_in, n_out = engine.n_samples, int(layers[0, abi.N_IN]), int(layers[-1, abi.N_OUT])
    if max(batch, n_out, *layers[:, abi.N_IN]) > BLAS_MAX_DIM:
        raise ValueError(f"engine: batch size and layer sizes must be at most {BLAS_MAX_DIM} (BLAS's sizes)")
    values, indices, indptr = engine.csr
    sparse = len(indptr) > 0
    check_shape("X", engine.X, (0 if sparse else n, n_in), dtype)
    if sparse:
        if batch == 1:
            raise ValueError("engine: the online loops (batch 1) take a dense X")
        check_shape("X's indptr", indptr, (n + 1,), np.int64)
        check_shape("X's values", values, (int(indptr[-1]),), dtype)
        check_shape("X's indices", indices, values.shape, np.int64)
        if not (indptr[0] == 0 and (np.diff(indptr) >= 0).all()
                and (indices.size == 0 or (indices.min() >= 0 and indices.max() < n_in))):
            raise ValueError(f"engine: X's CSR arrays must be sorted positions and columns in [0, {n_in})")
    most = batch * int(np.diff(indptr).max()) if engine.sparse_product else 0
    for space in engine.batch_csr:  # the csr_ loops gather each batch's rows into them
        for name, a, shape, kind in (("values", space[0], (most,), dtype), ("indices", space[1], (most,), np.int64),
                                     ("indptr", space[2], (batch + 1 if engine.sparse_product else 0,), np.int64)):
            check_shape(f"workspace batch {name}", a, shape, kind)
    check_shape("labels", engine.labels, (n if engine.loss_code == abi.CROSS_ENTROPY else 0,), np.int64)
    if engine.labels.size and not (engine.labels.min() >= 0 and engine.labels.max() < n_out):
        raise ValueError(f"engine: labels must lie in [0, {n_out})")
    check_shape("targets", engine.targets, (0 if engine.loss_code == abi.CROSS_ENTROPY else n, n_out), dtype)
    check_shape("sample weights", engine.weights, (n if engine.weights.size else 0,), dtype)
    size = int(layers[-1, abi.OUT_OFFSET]) + batch * n_out
    for name, a, shape, kind in (("acts", work.acts, (size,), dtype), ("deltas", work.deltas, (size,), dtype),
                                 ("twork", work.twork, (batch, n_out), dtype), ("wwork", work.wwork, (batch,), dtype),
                                 ("lwork", work.lwork, (batch,), np.int64),
                                 ("backup", engine.backup, (len(params), 3, params.shape[1]), dtype)):
        check_shape(f"workspace {name}", a, shape, kind)
    disjoint({"params": params, "grads": grads, "acts": work.acts, "deltas": work.deltas, "twork": work.twork,
             "wwork": work.wwork, "lwork": work.lwork, "backup": engine.backup,
             **{f"batch {name} {k}": a for k, space in enumerate(engine.batch_csr)
                for name, a in zip(("values", "indices", "indptr"), space)}},
         {"X": engine.X, "labels": engine.labels, "targets": engine.targets, "sample weights": engine.weights,
          "X's values": values, "X's indices": indices, "X's indptr": indptr})


def _model_arrays(model):
    """The arrays of a model that the layer table points into: its flat buffers, then each
    Dense layer's W, b, dW and db."""
    arrays = [model.params, model.grads]
    for layer in model.dense_layers:
        arrays += (layer.W, layer.b, layer.dW, layer.db)
    return arrays


def _as_checked(arrays, checked):
    """Whether arrays are the very arrays of checked ((array, shape, strides, dtype) of the
    last fit whose view checks they passed), each with the same shape, strides and dtype:
    an array's data never moves (checked holds them alive, so no other array can take
    their place), so the view checks would pass again. Fits one after another on one model
    skip them."""
    return len(arrays) == len(checked) and all(
        a is b and a.shape == shape and a.strides == strides and a.dtype == dtype
        for a, (b, shape, strides, dtype) in zip(arrays, checked))


def _check_views(model, layers, batch):
    """ValueError unless the model's Dense layers are the views of its flat buffers that
    the layer table points at, and the table covers them exactly."""
    end = inputs = 0
    width = int(layers[0, abi.N_IN])
    for i, layer in enumerate(model.dense_layers):
        w, n_in, n_out, _, in_offset, out_offset = (int(v) for v in layers[i])
        if (w, n_in, in_offset, out_offset) != (end, width, inputs, inputs + batch * n_in):
            raise ValueError(f"engine: layer {i} of the layer table does not follow layer {i - 1}")
        end, width, inputs = w + n_in * n_out + n_out, n_out, out_offset
        for name, view, buffer, start, shape in (
                ("W", layer.W, model.params, w, (n_in, n_out)),
                ("b", layer.b, model.params, w + n_in * n_out, (n_out,)),
                ("dW", layer.dW, model.grads, w, (n_in, n_out)),
                ("db", layer.db, model.grads, w + n_in * n_out, (n_out,))):
            if not is_view(view, buffer, start, shape):
                raise ValueError(f"engine: {name} of {layer!r} (Dense layer {i}) is not its view of the "
                                 "model's flat buffers; the model was changed after it was built")
    if end != model.n_params:
        raise ValueError(f"engine: the layer table does not cover the model's {model.n_params} parameters")
