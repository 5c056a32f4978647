"""Conv2D, MaxPool2D and Flatten: shapes, forward against loops and PyTorch, gradients
against finite differences, every backend, bad input, a LeNet in a Sequential (training,
the engine's fallback, save/load, pickle)."""
import pickle

import numpy as np
import pytest

import fastnn
from fastnn import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sequential, Tanh
from fastnn.grad import central_difference
from fastnn.io import load, save
from model_files import assert_same_bits

# (kernel_size, stride, padding) on 5x6 images
GEOMETRIES = [(3, 1, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 0)), (1, 1, 0), (5, 1, 2)]


def pair(value):
    return value if isinstance(value, tuple) else (value, value)


def conv_loop(x, W, b, stride, padding):
    """Convolution by a loop over samples, output channels and pixels."""
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    n, _, height, width = x.shape
    o, _, kh, kw = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = (height + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for s in range(n):
        for c in range(o):
            for i in range(oh):
                for j in range(ow):
                    out[s, c, i, j] = (xp[s, :, i * sh:i * sh + kh, j * sw:j * sw + kw] * W[c]).sum() + b[c]
    return out


def pool_loop(x, kernel_size, stride):
    (kh, kw), (sh, sw) = pair(kernel_size), pair(stride)
    n, c, height, width = x.shape
    oh, ow = (height - kh) // sh + 1, (width - kw) // sw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw].max(axis=(2, 3))
    return out


def lenet(dtype=np.float32, seed=0, side=28):
    """LeNet-5 for (1, side, side) images: side 28 gives the classic 16·5·5 = 400 features."""
    rng = np.random.default_rng(seed)
    flat = 16 * (((side // 2) - 4) // 2) ** 2
    return Sequential(Conv2D(1, 6, 5, padding=2, dtype=dtype, seed=rng), ReLU(), MaxPool2D(2),
                      Conv2D(6, 16, 5, dtype=dtype, seed=rng), ReLU(), MaxPool2D(2), Flatten(),
                      Dense(flat, 120, dtype=dtype, seed=rng), ReLU(), Dense(120, 84, dtype=dtype, seed=rng),
                      ReLU(), Dense(84, 10, dtype=dtype, seed=rng))


def images(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("kernel_size, stride, padding", GEOMETRIES)
def test_conv_forward_matches_a_loop(rng, dtype, kernel_size, stride, padding, assert_close):
    layer = Conv2D(2, 3, kernel_size, stride, padding, dtype=dtype, seed=0)
    layer.b = rng.standard_normal(3)
    x = images(rng, (2, 2, 5, 6), dtype)
    out = layer.forward(x)
    want = conv_loop(x.astype(np.float64), layer.W.astype(np.float64), layer.b, stride, padding)
    assert out.shape == want.shape and out.dtype == dtype and out.flags.c_contiguous
    assert_close(out, want, dtype, scale=3.0)


@pytest.mark.parametrize("kernel_size, stride", [(2, None), (3, 1), ((2, 3), (2, 1)), (3, 2)])
def test_max_pool_forward_matches_a_loop(rng, dtype, kernel_size, stride):
    x = images(rng, (2, 3, 7, 6), dtype)
    out = MaxPool2D(kernel_size, stride).forward(x)
    np.testing.assert_array_equal(out, pool_loop(x, kernel_size, stride if stride is not None else kernel_size))
    assert out.dtype == dtype and out.flags.c_contiguous


def test_flatten_keeps_samples_and_reshapes_the_gradient_back(rng):
    x = images(rng, (4, 3, 2, 5))
    layer = Flatten()
    out = layer.forward(x)
    assert out.shape == (4, 30) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, x.reshape(4, -1))
    assert layer.backward(out).shape == x.shape


def test_activations_and_dropout_take_feature_maps(rng, dtype):
    x = images(rng, (3, 2, 4, 5), dtype)
    relu = ReLU()
    out = relu.forward(x)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    np.testing.assert_array_equal(relu.backward(x), np.where(x > 0, x, 0))
    assert fastnn.Dropout(0.5, seed=0).forward(x).shape == x.shape


def test_lenet_shapes_and_parameter_count():
    model = lenet()
    x = np.zeros((3, 1, 28, 28), np.float32)
    shapes = []
    for layer in model.layers:
        x = layer.forward(x)
        shapes.append(x.shape)
    assert shapes[:7] == [(3, 6, 28, 28)] * 2 + [(3, 6, 14, 14), (3, 16, 10, 10), (3, 16, 10, 10),
                                                 (3, 16, 5, 5), (3, 400)]
    assert shapes[-1] == (3, 10)
    assert model.n_params == 156 + 2416 + 48120 + 10164 + 850
    conv = model.layers[0]
    assert conv.W.shape == (6, 1, 5, 5) and conv.b.shape == (6,)
    assert np.shares_memory(conv.W, model.params) and np.shares_memory(conv.dW, model.grads)
    assert model.takes_images and model.n_features is None and model.n_outputs == 10
    assert "(batch, 6, ?, ?)" in model.summary(file=open("/dev/null", "w"))


def test_forward_and_gradients_match_pytorch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    conv = Conv2D(3, 4, (3, 2), stride=(2, 1), padding=(1, 2), dtype=np.float64, seed=0)
    conv.b = rng.standard_normal(4)
    pool = MaxPool2D(2, stride=1)
    x = images(rng, (2, 3, 7, 6))
    out = pool.forward(conv.forward(x))
    upstream = rng.standard_normal(out.shape)
    dx = conv.backward(pool.backward(upstream))

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(conv.W.copy(), requires_grad=True)
    tb = torch.tensor(conv.b.copy(), requires_grad=True)
    tout = F.max_pool2d(F.conv2d(tx, tw, tb, stride=(2, 1), padding=(1, 2)), 2, stride=1)
    tout.backward(torch.tensor(upstream))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.dW, tw.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(conv.db, tb.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kernel_size, stride, padding", GEOMETRIES)
def test_conv_gradients_match_finite_differences(rng, kernel_size, stride, padding):
    layer = Conv2D(2, 3, kernel_size, stride, padding, dtype=np.float64, seed=0)
    layer.b = rng.standard_normal(3)
    x = images(rng, (2, 2, 5, 6))
    upstream = rng.standard_normal(layer.forward(x).shape)

    def loss():
        return float((layer.forward(x) * upstream).sum())

    dx = layer.backward(upstream)
    dW, db = layer.dW.copy(), layer.db.copy()
    np.testing.assert_allclose(dx, central_difference(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dW, central_difference(loss, layer.W), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, central_difference(loss, layer.b), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kernel_size, stride", [(2, None), (3, 1), ((2, 3), (2, 1))])
def test_max_pool_gradient_matches_finite_differences(rng, kernel_size, stride):
    layer = MaxPool2D(kernel_size, stride)
    x = images(rng, (2, 2, 5, 6))
    upstream = rng.standard_normal(layer.forward(x).shape)
    dx = layer.backward(upstream)
    np.testing.assert_allclose(dx, central_difference(lambda: float((layer.forward(x) * upstream).sum()), x),
                               rtol=1e-6, atol=1e-8)


def test_model_backprop_matches_numerical_grad(rng, any_backend):
    """The flat gradient of a small conv net, every parameter of both Conv2D layers and
    the Dense one, against fastnn.numerical_grad."""
    with fastnn.use_backend(any_backend.name):
        model = Sequential(Conv2D(2, 3, 3, padding=1, dtype=np.float64, seed=0), Tanh(), MaxPool2D(2),
                           Conv2D(3, 4, 2, stride=(1, 2), dtype=np.float64, seed=1), Tanh(), Flatten(),
                           Dense(4 * 2 * 2, 3, dtype=np.float64, seed=2))
        model.params = model.params + 0.1 * rng.standard_normal(model.n_params)
        X, y = images(rng, (3, 2, 6, 8)), np.array([0, 2, 1])
        _, grad = model.loss_and_grad(X, y)
        numeric = fastnn.numerical_grad(model, X, y)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6 * np.abs(numeric).max())


def test_every_backend_gives_the_same_numbers(rng, dtype, assert_close, any_backend):
    model = lenet(dtype, side=16)
    X, y = images(rng, (5, 1, 16, 16), dtype), np.arange(5)
    with fastnn.use_backend("numpy"):
        want_out = model.outputs(X)
        _, want_grad = model.loss_and_grad(X, y)
    with fastnn.use_backend(any_backend.name):
        out = model.outputs(X)
        _, grad = model.loss_and_grad(X, y)
    assert_close(out, want_out, dtype, scale=10.0)
    assert_close(grad, want_grad, dtype, scale=10.0)


def test_lenet_trains_and_its_loss_falls(rng):
    model = lenet(seed=1)
    X = images(rng, (32, 1, 28, 28), np.float32)
    y = np.arange(32) % 10
    before = model.evaluate(X, y)["loss"]
    history = model.fit(X, y, optimizer="adam", lr=2e-3, epochs=4, batch_size=8, seed=0, verbose=0)
    assert history.loss[-1] < history.loss[0]
    assert model.evaluate(X, y)["loss"] < 0.5 * before
    assert model.predict(X).shape == (32,)


def test_the_engine_refuses_conv_layers_and_fit_takes_the_per_module_path(rng, capsys):
    model = lenet(side=16)
    X, y = images(rng, (8, 1, 16, 16), np.float32), np.arange(8) % 10
    with pytest.raises(ValueError, match=r"engine=True: the engine supports Dense layers and .*got Conv2D\(1, 6"):
        model.fit(X, y, epochs=1, engine=True, verbose=0)
    for backend in fastnn.available_backends():
        with fastnn.use_backend(backend):
            model.fit(X, y, epochs=1, verbose=1)
    assert "trains without the compiled engine" in capsys.readouterr().err


def test_lenet_save_and_load_round_trip(tmp_path, rng, dtype):
    model = lenet(dtype, side=16)
    X, y = images(rng, (6, 1, 16, 16), dtype), np.arange(6)
    model.fit(X, y, optimizer="adam", epochs=1, batch_size=3, verbose=0)
    save(model, tmp_path / "lenet.fnn")
    loaded = load(tmp_path / "lenet.fnn")
    assert repr(loaded) == repr(model)
    assert_same_bits(loaded.params, model.params)
    assert_same_bits(loaded.optimizer.state["m"], model.optimizer.state["m"])
    for new, old in zip(loaded.weighted_layers, model.weighted_layers):
        assert np.shares_memory(new.W, loaded.params) and np.shares_memory(new.dW, loaded.grads)
        assert_same_bits(new.W, old.W)
    assert_same_bits(loaded.outputs(X), model.outputs(X))
    strided = Sequential(Conv2D(1, 2, (3, 2), stride=(2, 1), padding=(1, 0), init="zeros", dtype=dtype),
                         MaxPool2D(2, stride=1), Flatten(), Dense(2 * 7 * 14, 3, dtype=dtype))
    save(strided, tmp_path / "strided.fnn")
    again = load(tmp_path / "strided.fnn")
    assert repr(again) == repr(strided) and again.layers[0].init == "zeros"
    assert (again.layers[0].stride, again.layers[1].stride) == ((2, 1), (1, 1))


def test_pickle_keeps_conv_weights_as_views_of_the_flat_buffer(rng):
    model = lenet(side=16)
    X = images(rng, (2, 1, 16, 16), np.float32)
    model.outputs(X)
    copy = pickle.loads(pickle.dumps(model))
    assert copy.layers[0]._cols is None
    assert np.shares_memory(copy.layers[3].W, copy.params)
    assert_same_bits(copy.outputs(X), model.outputs(X))


BAD_LAYERS = [
    (lambda: Conv2D(0, 2, 3), ValueError, "in_channels"),
    (lambda: Conv2D(1, 2.0, 3), ValueError, "out_channels"),
    (lambda: Conv2D(1, 2, 0), ValueError, "kernel_size"),
    (lambda: Conv2D(1, 2, 2.5), ValueError, "kernel_size"),
    (lambda: Conv2D(1, 2, (3, 3, 3)), ValueError, "kernel_size"),
    (lambda: Conv2D(1, 2, 3, stride=0), ValueError, "stride"),
    (lambda: Conv2D(1, 2, 3, stride=1.5), ValueError, "stride"),
    (lambda: Conv2D(1, 2, 3, padding=-1), ValueError, "padding"),
    (lambda: Conv2D(1, 2, 3, padding=True), ValueError, "padding"),
    (lambda: Conv2D(1, 2, 3, dtype=np.int32), TypeError, "dtype"),
    (lambda: MaxPool2D(0), ValueError, "kernel_size"),
    (lambda: MaxPool2D(2, stride=(1, 0)), ValueError, "stride"),
    (lambda: MaxPool2D("2"), ValueError, "kernel_size"),
]


@pytest.mark.parametrize("make, error, name", BAD_LAYERS)
def test_bad_layer_arguments_are_refused_by_name(make, error, name):
    with pytest.raises(error, match=name):
        make()


BAD_INPUTS = [
    (Conv2D(2, 3, 3), np.zeros((2, 5, 5)), ValueError, "x must be 4-D"),
    (Conv2D(2, 3, 3), np.zeros((1, 2, 2, 5, 5)), ValueError, "x must be 4-D"),
    (Conv2D(2, 3, 3), [[[[0.0]]]], TypeError, "x must be a numpy.ndarray"),
    (Conv2D(2, 3, 3), np.zeros((1, 1, 5, 5), np.float32), ValueError, "x must have 2 channels"),
    (Conv2D(2, 3, 3), np.zeros((1, 2, 5, 5)), TypeError, "x must be float32"),
    (Conv2D(2, 3, 3), np.zeros((1, 2, 5, 5), np.int64), TypeError, "x must be float32 or float64"),
    (Conv2D(2, 3, 3), np.zeros((1, 2, 2, 5), np.float32), ValueError, r"kernel_size \(3, 3\) .* larger"),
    (Conv2D(2, 3, 5, padding=1), np.zeros((1, 2, 2, 8), np.float32), ValueError, "larger than its padded input"),
    (MaxPool2D(2), np.zeros((4, 4)), ValueError, "x must be 4-D"),
    (MaxPool2D(3), np.zeros((1, 1, 2, 4)), ValueError, "kernel_size"),
    (MaxPool2D(2), np.zeros((1, 1, 4, 4), np.int32), TypeError, "x must be float32 or float64"),
    (Flatten(), np.zeros(3), ValueError, "at least 2 dimensions"),
]


@pytest.mark.parametrize("layer, x, error, match", BAD_INPUTS)
def test_bad_input_is_refused_with_the_argument_named(layer, x, error, match):
    with pytest.raises(error, match=match):
        layer.forward(x)


def test_bad_gradients_and_backward_before_forward_are_refused(rng):
    conv, pool = Conv2D(1, 2, 3, dtype=np.float64), MaxPool2D(2)
    for layer in (conv, pool, Flatten()):
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.zeros((1, 2, 3, 3)))
    x = images(rng, (2, 1, 6, 6))
    out = conv.forward(x)
    with pytest.raises(ValueError, match=r"grad must be a float64 array of shape \(2, 2, 4, 4\)"):
        conv.backward(out.transpose(0, 2, 3, 1))
    with pytest.raises(ValueError, match="grad must be a float64"):
        conv.backward(out.astype(np.float32))
    relu = ReLU()
    relu.forward(out)
    with pytest.raises(ValueError, match=r"grad must have the shape of ReLU\(\)'s last output, \(2, 2, 4, 4\)"):
        relu.backward(out.reshape(2, 2, 16))
    pooled = pool.forward(out)
    with pytest.raises(ValueError, match=r"grad must be a float64 array of shape \(2, 2, 2, 2\)"):
        pool.backward(pooled[:1])


def test_sequential_checks_images_and_the_chain(rng):
    model = lenet()
    with pytest.raises(ValueError, match=r"X must be 4-D .*reshape\(-1, 1, height, width\)"):
        model.predict(np.zeros((2, 784)))
    with pytest.raises(ValueError, match="X must have 1 channels"):
        model.predict(np.zeros((2, 3, 28, 28)))
    with pytest.raises(ValueError, match="out_channels 6 != in_channels 4"):
        Sequential(Conv2D(1, 6, 3), Conv2D(4, 2, 3), Flatten(), Dense(8, 2))
    with pytest.raises(ValueError, match="a Conv2D takes images"):
        Sequential(Dense(4, 4), Conv2D(1, 2, 1))
    with pytest.raises(TypeError, match="must share a dtype"):
        Sequential(Conv2D(1, 2, 3, dtype=np.float64), Flatten(), Dense(8, 2))
