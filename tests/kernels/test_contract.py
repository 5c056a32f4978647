"""Bad arguments raise a clear error naming the argument, on every backend, before any kernel runs."""
import numpy as np
import pytest


def dense(dtype=np.float64, batch=4, n_in=3, n_out=2):
    return (np.ones((batch, n_in), dtype), np.ones((n_in, n_out), dtype),
            np.ones(n_out, dtype), np.empty((batch, n_out), dtype))


def test_fortran_ordered_input_is_rejected(any_backend):
    X, W, b, out = dense()
    with pytest.raises(ValueError, match="X must be C-contiguous; got a Fortran-ordered"):
        any_backend.dense_forward(np.asfortranarray(np.ones((4, 3))), W, b, out, "relu")


def test_non_contiguous_input_is_rejected(any_backend):
    X, W, b, out = dense()
    strided = np.ones((4, 6))[:, ::2]
    with pytest.raises(ValueError, match="X must be C-contiguous; got a non-contiguous"):
        any_backend.dense_forward(strided, W, b, out, "relu")
    with pytest.raises(ValueError, match="B must be C-contiguous"):
        any_backend.matmul(X, np.ones((2, 3)).T, out)


def test_non_contiguous_output_is_rejected(any_backend):
    X, W, b, _ = dense()
    out = np.empty((4, 4))[:, ::2]
    with pytest.raises(ValueError, match="out must be C-contiguous"):
        any_backend.dense_forward(X, W, b, out, "relu")


def test_mixed_dtypes_are_rejected(any_backend):
    X, W, b, out = dense()
    with pytest.raises(TypeError, match=r"W must have the dtype of X \(float64\); got float32"):
        any_backend.dense_forward(X, W.astype(np.float32), b, out, "relu")


def test_integer_arrays_are_rejected(any_backend):
    _, W, b, out = dense()
    with pytest.raises(TypeError, match="X must be float32 or float64; got int64"):
        any_backend.dense_forward(np.ones((4, 3), np.int64), W, b, out, "relu")


def test_lists_are_rejected(any_backend):
    _, W, b, out = dense()
    with pytest.raises(TypeError, match="X must be a numpy.ndarray; got list"):
        any_backend.dense_forward([[1.0] * 3] * 4, W, b, out, "relu")


def test_shape_mismatches_name_the_argument(any_backend):
    X, W, b, out = dense()
    with pytest.raises(ValueError, match=r"X \(4, 2\) does not match W \(3, 2\)"):
        any_backend.dense_forward(np.ones((4, 2)), W, b, out, "relu")
    with pytest.raises(ValueError, match=r"b must have shape \(2,\); got \(3,\)"):
        any_backend.dense_forward(X, W, np.ones(3), out, "relu")
    with pytest.raises(ValueError, match=r"out must have shape \(4, 2\); got \(5, 2\)"):
        any_backend.dense_forward(X, W, b, np.empty((5, 2)), "relu")
    with pytest.raises(ValueError, match=r"dX must have shape \(4, 3\)"):
        any_backend.dense_backward(X, W, out, np.empty_like(W), np.empty(2), np.empty((3, 4)))
    with pytest.raises(ValueError, match="X must be 2-D; got shape"):
        any_backend.dense_forward(np.ones(3), W, b, out, "relu")


def test_read_only_output_is_rejected(any_backend):
    X, W, b, out = dense()
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is an output and must be writable"):
        any_backend.dense_forward(X, W, b, out, "relu")


def test_read_only_inputs_are_accepted(any_backend):
    X, W, b, out = dense()
    for a in (X, W, b):
        a.flags.writeable = False
    any_backend.dense_forward(X, W, b, out, "relu")
    np.testing.assert_allclose(out, 4.0)


def test_output_overlapping_input_is_rejected(any_backend):
    X = np.ones((3, 3))
    with pytest.raises(ValueError, match="out must not overlap X"):
        any_backend.dense_forward(X, np.eye(3), np.zeros(3), X, "identity")


def test_unknown_activation(any_backend):
    X, W, b, out = dense()
    with pytest.raises(ValueError, match=r"activation must be one of \['identity', 'leaky_relu'"):
        any_backend.dense_forward(X, W, b, out, "swish")
    with pytest.raises(ValueError, match="activation must be one of"):
        any_backend.dense_forward(X, W, b, out, 9)


def test_negative_leaky_slope_is_rejected(any_backend):
    X, W, b, out = dense()
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0; got -0.1"):
        any_backend.dense_forward(X, W, b, out, "leaky_relu", -0.1)


def test_labels_out_of_range(any_backend):
    Z, grad = np.zeros((3, 4)), np.empty((3, 4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\) for 4 logits; got 4"):
        any_backend.softmax_cross_entropy(Z, np.array([0, 4, 1]), grad)
    with pytest.raises(ValueError, match="got -1"):
        any_backend.softmax_cross_entropy(Z, np.array([0, -1, 1]), grad)


def test_labels_must_be_int64(any_backend):
    Z, grad = np.zeros((3, 4)), np.empty((3, 4))
    with pytest.raises(TypeError, match="labels must be int64; got int32"):
        any_backend.softmax_cross_entropy(Z, np.array([0, 1, 2], np.int32), grad)


def test_empty_batch_is_rejected(any_backend):
    Z = np.zeros((0, 4))
    with pytest.raises(ValueError, match="Z must have at least one row"):
        any_backend.softmax_cross_entropy(Z, np.zeros(0, np.int64), np.empty_like(Z))


@pytest.mark.parametrize("weight,message", [
    (np.array([1.0, -1.0]), "sample_weight must be non-negative"),
    (np.array([1.0, np.inf]), "sample_weight must be non-negative and finite"),
    (np.ones(3), r"sample_weight must have shape \(2,\); got \(3,\)"),
])
def test_bad_sample_weight(any_backend, weight, message):
    Z = np.zeros((2, 3))
    with pytest.raises(ValueError, match=message):
        any_backend.mse(Z, Z, np.empty_like(Z), weight)


def test_optimizer_buffers_must_match(any_backend):
    params = np.zeros(5)
    with pytest.raises(ValueError, match=r"velocity must have shape \(5,\); got \(4,\)"):
        any_backend.sgd_update(params, np.zeros(5), np.zeros(4), 0.1, 0.9, False, 0.0)
    with pytest.raises(TypeError, match="m must have the dtype of params"):
        any_backend.adam_update(params, np.zeros(5), np.zeros(5, np.float32), np.zeros(5),
                                1, 0.1, 0.9, 0.999, 1e-8, 0.0, False)


@pytest.mark.parametrize("lr", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_learning_rate(any_backend, lr):
    p = np.zeros(3)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        any_backend.sgd_update(p, np.zeros(3), np.zeros(3), lr, 0.0, False, 0.0)


def test_bad_adam_hyperparameters(any_backend):
    p = np.zeros(3)
    args = (p, np.zeros(3), np.zeros(3), np.zeros(3))
    for step in (0, 2**63):
        with pytest.raises(ValueError, match=r"step must be an integer >= 1 and < 2\*\*63"):
            any_backend.adam_update(*args, step, 0.1, 0.9, 0.999, 1e-8, 0.0, False)
    with pytest.raises(ValueError, match="beta1 must be a finite number >= 0 and < 1; got 1.0"):
        any_backend.adam_update(*args, 1, 0.1, 1.0, 0.999, 1e-8, 0.0, False)


def test_masked_arrays_are_refused_with_a_type_error(any_backend):
    X = np.ma.masked_array(np.ones((2, 2), np.float32), mask=[[0, 1], [0, 0]])
    W, b, out = np.ones((2, 2), np.float32), np.ones(2, np.float32), np.empty((2, 2), np.float32)
    with pytest.raises(TypeError, match="X must be a numpy.ndarray; got MaskedArray .*ignore masks"):
        any_backend.dense_forward(X, W, b, out, "relu")


@pytest.mark.parametrize("kernel", ["mse", "bce_with_logits", "softmax_cross_entropy_soft", "softmax_cross_entropy"])
def test_losses_refuse_zero_output_columns(any_backend, kernel):
    Z = np.zeros((4, 0))
    target = np.zeros(4, np.int64) if kernel == "softmax_cross_entropy" else np.zeros((4, 0))
    name = "pred" if kernel == "mse" else "Z"
    with pytest.raises(ValueError, match=f"{name} must have at least one column"):
        getattr(any_backend, kernel)(Z, target, np.empty_like(Z))
