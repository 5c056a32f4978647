"""Bad arguments raise a clear error naming the argument, on every backend, before any kernel runs."""
import numpy as np
import pytest

from fastnn.kernels import contract


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


def _pool(size=64):
    return np.arange(size, dtype=np.float64)


OVERLAPS = {
    "dense_backward(dX=dZ)": lambda k, p: k.dense_backward(
        p[:12].reshape(4, 3), p[12:18].reshape(3, 2), p[20:28].reshape(4, 2), np.empty((3, 2)), np.empty(2),
        p[20:32].reshape(4, 3)),
    "dense_backward(dW=W)": lambda k, p: k.dense_backward(
        p[:12].reshape(4, 3), p[12:18].reshape(3, 2), p[20:28].reshape(4, 2), p[12:18].reshape(3, 2),
        np.empty(2)),
    "dense_backward(db inside dW)": lambda k, p: k.dense_backward(
        np.ones((4, 3)), np.ones((3, 2)), np.ones((4, 2)), p[:6].reshape(3, 2), p[4:6]),
    "matmul(out=B)": lambda k, p: k.matmul(p[:4].reshape(2, 2), p[4:8].reshape(2, 2), p[4:8].reshape(2, 2)),
    "dense_forward(out=W)": lambda k, p: k.dense_forward(
        p[:9].reshape(3, 3), p[9:18].reshape(3, 3), p[18:21], p[9:18].reshape(3, 3), "relu"),
    "dense_forward(out over b)": lambda k, p: k.dense_forward(
        np.ones((3, 3)), np.ones((3, 3)), p[:3], p[1:10].reshape(3, 3), "relu"),
    "activation_forward(shifted)": lambda k, p: k.activation_forward(
        p[:12].reshape(3, 4), p[1:13].reshape(3, 4), "tanh"),
    "activation_backward(shifted)": lambda k, p: k.activation_backward(
        p[:12].reshape(3, 4), np.ones((3, 4)), p[4:16].reshape(3, 4), "sigmoid"),
    "softmax(shifted)": lambda k, p: k.softmax(p[:12].reshape(3, 4), p[2:14].reshape(3, 4)),
    "mse(grad=pred)": lambda k, p: k.mse(p[:8].reshape(2, 4), np.ones((2, 4)), p[:8].reshape(2, 4)),
    "bce(grad over target)": lambda k, p: k.bce_with_logits(
        np.zeros((2, 4)), p[:8].reshape(2, 4), p[4:12].reshape(2, 4)),
    "softmax_cross_entropy_soft(grad over sample_weight)": lambda k, p: k.softmax_cross_entropy_soft(
        np.zeros((2, 4)), np.ones((2, 4)), p[:8].reshape(2, 4), p[6:8]),
    "sgd_update(velocity=params)": lambda k, p: k.sgd_update(p[:8], np.ones(8), p[:8], 0.1, 0.9, False, 0.0),
    "sgd_update(grad=params)": lambda k, p: k.sgd_update(p[:8], p[:8], np.zeros(8), 0.1, 0.9, False, 0.0),
    "adam_update(m=v)": lambda k, p: k.adam_update(
        p[:8], np.ones(8), p[8:16], p[8:16], 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False),
    "adam_update(v over params)": lambda k, p: k.adam_update(
        p[:8], np.ones(8), np.zeros(8), p[4:12], 1, 0.1, 0.9, 0.999, 1e-8, 0.0, False),
}


@pytest.mark.parametrize("case", list(OVERLAPS))
def test_outputs_overlapping_other_arguments_are_refused(any_backend, case):
    """An output sharing memory with another argument (fully or in part) is refused where the
    kernel is not in place by design: it would read values it has already overwritten."""
    with pytest.raises(ValueError, match="must not overlap"):
        OVERLAPS[case](any_backend, _pool())


@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
def test_grad_over_the_labels_is_refused(isolated, backend):
    """A gradient written over the labels would turn them into indices anywhere in memory (a
    fresh process: unchecked, this crashed)."""
    done = isolated(f"""
        import numpy as np, fastnn
        memory = np.zeros(8, np.int64)
        labels, grad = memory[:2], memory.view(np.float64).reshape(2, 4)
        try:
            fastnn.get_backend("{backend}").softmax_cross_entropy(np.zeros((2, 4)), labels, grad)
        except ValueError as error:
            print("refused:", error)
        """)
    assert done.returncode == 0, done.stderr
    assert "refused: grad must not overlap labels" in done.stdout, done.stdout


@pytest.mark.parametrize("kernel,arguments,out", [
    ("activation_forward", lambda Z, dA: (Z, Z, "tanh"), 1),
    ("activation_backward", lambda A, dA: (A, dA, A, "sigmoid"), 2),
    ("activation_backward", lambda A, dA: (A, dA, dA, "relu"), 2),
    ("softmax", lambda Z, dA: (Z, Z), 1),
])
def test_in_place_kernels_take_the_very_same_array(any_backend, reference, dtype, rng, assert_close, kernel,
                                                   arguments, out):
    """The elementwise kernels may write over an input that is the very same array as out."""
    first, second = rng.random((3, 5)).astype(dtype), rng.standard_normal((3, 5)).astype(dtype)
    separate = list(arguments(first.copy(), second.copy()))
    separate[out] = expected = np.empty_like(first)
    getattr(reference, kernel)(*separate)
    in_place = arguments(first, second)
    getattr(any_backend, kernel)(*in_place)
    assert_close(in_place[out], expected, dtype)


@pytest.mark.parametrize("size", [2**31 + 3, 2**32 + 3])
def test_products_past_blas_sizes_are_refused(isolated, size):
    """A dimension past BLAS's 32-bit sizes is refused, not truncated into a wrong product.
    The operands are views of tiny buffers declaring the huge shapes (as_strided, nothing
    allocated): they must be refused before anything reads them, so this runs in a fresh
    process."""
    done = isolated(f"""
        import numpy as np, fastnn
        from numpy.lib.stride_tricks import as_strided

        def huge(shape):
            return as_strided(np.ones(8, np.float32), shape=shape, strides=(4, 4))

        A, B, dW = huge((1, {size})), huge(({size}, 1)), huge(({size}, 1))
        assert A.flags.c_contiguous and B.flags.c_contiguous and dW.flags.c_contiguous
        out, b = np.zeros((1, 1), np.float32), np.zeros(1, np.float32)
        for name in fastnn.available_backends():
            k = fastnn.get_backend(name)
            for call in (lambda: k.matmul(A, B, out), lambda: k.dense_forward(A, B, b, out, "identity"),
                         lambda: k.dense_backward(A, B, out, dW, b)):
                try:
                    call()
                    print(name, "accepted", out)
                except ValueError as error:
                    print(name, "refused:", error)
        """)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 9, done.stdout
    assert all("refused:" in line and "BLAS's 32-bit sizes" in line for line in lines), done.stdout


def _csr(dtype=np.float64):
    """A (3, 4) sparse X as CSR arrays, W (4, 2), b, out (3, 2)."""
    return (np.array([1.0, 2.0, 3.0], dtype), np.array([0, 3, 1], np.int64), np.array([0, 2, 2, 3], np.int64),
            np.ones((4, 2), dtype), np.ones(2, dtype), np.empty((3, 2), dtype))


@pytest.mark.parametrize("change, message", [
    (dict(indices=np.array([0, 4, 1], np.int64)), r"indices must be columns in \[0, 4\)"),
    (dict(indices=np.array([0, -1, 1], np.int64)), r"indices must be columns in \[0, 4\)"),
    (dict(indptr=np.array([0, 2, 1, 3], np.int64)), "indptr must be non-decreasing"),
    (dict(indptr=np.array([0, 2, 2, 4], np.int64)), r"indptr must be non-decreasing positions in \[0, 3\]"),
    (dict(indptr=np.array([0, 2, 3], np.int64)), r"indptr must have shape \(4,\)"),
    (dict(indices=np.array([0, 3], np.int64)), r"indices must have shape \(3,\)"),
    (dict(indices=np.array([0, 3, 1], np.int32)), "indices must be int64; got int32"),
    (dict(values=np.ones(3, np.float32)), r"values must have the dtype of W \(float64\)"),
    (dict(b=np.ones(3)), r"b must have shape \(2,\)"),
])
def test_csr_arrays_are_checked(any_backend, change, message):
    args = dict(zip(("values", "indices", "indptr", "W", "b", "out"), _csr()))
    args.update(change)
    with pytest.raises((ValueError, TypeError), match=message):
        any_backend.csr_dense_forward(*args.values(), "relu")


def test_csr_backward_checks_its_outputs(any_backend):
    values, indices, indptr, W, _, out = _csr()
    with pytest.raises(ValueError, match=r"dW must have shape \(4, 2\)"):
        any_backend.csr_dense_backward(values, indices, indptr, np.ones((3, 2)), np.empty((4, 3)), np.empty(2))
    with pytest.raises(ValueError, match="dW must not overlap values"):
        pool = np.zeros(16)
        any_backend.csr_dense_backward(pool[:3], indices, indptr, np.ones((3, 2)), pool[:8].reshape(4, 2),
                                       np.empty(2))


@pytest.mark.parametrize("overlaps", [contract._pairwise_overlaps, contract._sorted_overlaps])
def test_both_overlap_searches_find_the_pairs_may_share_memory_finds(overlaps):
    """Each way disjoint looks for overlaps (every pair; the sweep over sorted addresses)
    against np.may_share_memory on every pair, on random views of one buffer (reversed,
    strided and empty ones too): the same (output, other) pairs, and disjoint refuses
    exactly the calls that have one."""
    rng = np.random.default_rng(0)
    buffer = np.zeros(400)
    for _ in range(300):
        views = []
        for _ in range(rng.integers(2, 13)):
            lo = int(rng.integers(0, 390))
            hi = int(rng.integers(lo, 400))
            step = int(rng.choice([1, 2, -1]))
            views.append(buffer[lo:hi:step] if step > 0 else buffer[lo:hi][::-1])
        n_out = int(rng.integers(1, len(views) + 1))
        written = [(f"out{i}", v) for i, v in enumerate(views[:n_out])]
        read = [(f"in{i}", v) for i, v in enumerate(views[n_out:])]
        arguments = written + read
        expected = {(out, other) for i, (out, a) in enumerate(written) for other, b in arguments[i + 1:]
                    if np.may_share_memory(a, b)}
        assert {(out, other) for (out, _), (other, _) in overlaps(written, read)} == expected
        if expected:
            with pytest.raises(ValueError, match="must not overlap"):
                contract.disjoint(dict(written), dict(read))
        else:
            contract.disjoint(dict(written), dict(read))


def test_address_is_where_the_data_starts():
    base = np.zeros((6, 8))
    readonly = base[1:3].copy()
    readonly.flags.writeable = False
    for a in (base, base[2:4], base[1, 3:], base[:, 1], readonly, base[:0], base.astype(">f8")):
        assert contract.address(a) == a.__array_interface__["data"][0]
