"""Modules with forward(x) and backward(grad): Dense, activations, Dropout.

A module remembers what its backward needs from its last forward. Dense (like
the other Weighted layers: Conv2D in fastnn.conv) keeps its weight W (in, out)
and bias b as views into one flat parameter buffer, and its gradients dW, db
as views into a flat gradient buffer of the same layout, so a Sequential can
hold all of a model's parameters in one array (see fastnn.model). Every
product and activation goes through the selected kernel backend; activations
and Dropout also take images (batch, channels, height, width).
"""
import numpy as np

from . import kernels
from .init import as_generator, get_initializer
from .kernels import activation_code
from .sparse import SparseRows
from .validation import check_positive_int


def float_dtype(dtype):
    """float32 or float64 as a numpy dtype; anything else is a TypeError."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64; got {dtype}")
    return dtype


class Module:
    """Base class: forward(x) computes and remembers, backward(grad) returns d(loss)/d(input)."""

    training = True

    def forward(self, x):
        raise NotImplementedError

    def backward(self, grad, input_grad=True):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)

    def train(self, mode=True):
        """Switch training behaviour (Dropout) on or off; returns self."""
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def parameters(self):
        """The parameter arrays (views into the flat buffer); empty for parameter-free modules."""
        return []

    n_params = 0
    _caches = ("_input", "_output", "_mask")

    def __getstate__(self):
        """Pickle without the arrays kept from the last forward for backward."""
        return {key: None if key in self._caches else value for key, value in self.__dict__.items()}


class Weighted(Module):
    """Base of the layers with parameters (Dense, Conv2D): a weight W and a bias b held as
    views into a flat parameter buffer (W first, then b), and their gradients dW, db as
    views into a flat gradient buffer of the same layout.

    A subclass gives ``weight_shape`` (W's shape) and ``matrix_shape``, the (fan_in,
    n_out) matrix its product multiplies by: init draws that matrix (so it sees the
    layer's fan-in and fan-out) and ``_from_matrix`` lays it out as W; b has n_out entries.
    """

    def _set_up(self, init, dtype, seed):
        """Set the dtype, bind zero buffers of the layer's own and draw W by init."""
        self._dtype = float_dtype(dtype)
        self.init = init
        weights = get_initializer(init)(self.matrix_shape, as_generator(seed))
        if np.shape(weights) != self.matrix_shape:
            raise ValueError(f"init returned shape {np.shape(weights)}; expected {self.matrix_shape}")
        self.bind(np.zeros(self.n_params, self.dtype), np.zeros(self.n_params, self.dtype))
        if init != "zeros":  # the buffer is zero already (and not yet in memory: a model file's layers)
            self.W = self._from_matrix(weights)
        self._input = None

    dtype = property(lambda self: self._dtype)

    @property
    def n_params(self):
        fan_in, n_out = self.matrix_shape
        return fan_in * n_out + n_out

    def _from_matrix(self, weights):
        return weights

    def bind(self, params, grads):
        """Make W, b, dW, db views into the flat buffers ``params`` and ``grads`` (length n_params)."""
        for name, buffer in (("params", params), ("grads", grads)):
            if not (isinstance(buffer, np.ndarray) and buffer.shape == (self.n_params,)
                    and buffer.dtype == self.dtype and buffer.flags.c_contiguous):
                raise ValueError(f"{name} must be a C-contiguous {self.dtype} array of shape "
                                 f"({self.n_params},); got {getattr(buffer, 'dtype', type(buffer).__name__)} "
                                 f"of shape {np.shape(buffer)}")
        split = self.n_params - self.matrix_shape[1]
        self._W, self._b = params[:split].reshape(self.weight_shape), params[split:]
        self.dW, self.db = grads[:split].reshape(self.weight_shape), grads[split:]

    @property
    def W(self):
        return self._W

    @W.setter
    def W(self, value):
        self._assign(self._W, value, "W")

    @property
    def b(self):
        return self._b

    @b.setter
    def b(self, value):
        self._assign(self._b, value, "b")

    @staticmethod
    def _assign(view, value, name):
        value = np.asarray(value, dtype=np.float64)
        if value.shape != view.shape:
            raise ValueError(f"{name} must have shape {view.shape}; got {value.shape}")
        if not np.isfinite(value).all():
            raise ValueError(f"{name} must be finite")
        view[...] = value

    def parameters(self):
        return [self._W, self._b]


class Dense(Weighted):
    """Fully connected layer: forward(x) = x @ W + b with W of shape (in_features, out_features)."""

    def __init__(self, in_features, out_features, init="xavier_uniform", *, dtype=np.float32, seed=None):
        self._in_features = check_positive_int("in_features", in_features)
        self._out_features = check_positive_int("out_features", out_features)
        self._set_up(init, dtype, seed)

    # The sizes are read-only: a model's flat buffers and the engine's workspaces are laid
    # out for them.
    in_features = property(lambda self: self._in_features)
    out_features = property(lambda self: self._out_features)
    weight_shape = matrix_shape = property(lambda self: (self._in_features, self._out_features))

    def forward(self, x):
        """x @ W + b; x may be SparseRows (fastnn.sparse), multiplied entry by entry."""
        # Sized without trusting x: the kernel's checks then say what is wrong with it.
        out = np.empty((len(x) if np.ndim(x) == 2 else 0, self.out_features), self.dtype)
        if isinstance(x, SparseRows):
            kernels.get_backend().csr_dense_forward(x.values, x.indices, x.indptr, self._W, self._b, out,
                                                    "identity")
        else:
            kernels.get_backend().dense_forward(x, self._W, self._b, out, "identity")
        self._input = x
        return out

    def backward(self, grad, input_grad=True):
        """Writes dW and db; returns grad @ W.T unless input_grad is False (which a sparse
        input needs: fit asks no gradient of a first layer's input)."""
        if self._input is None:
            raise RuntimeError("Dense.backward called before forward")
        x = self._input
        if isinstance(x, SparseRows):
            if input_grad:
                raise ValueError("Dense.backward: no input gradient for a sparse input (pass input_grad=False)")
            kernels.get_backend().csr_dense_backward(x.values, x.indices, x.indptr, grad, self.dW, self.db)
            return None
        dX = np.empty_like(x) if input_grad else None
        kernels.get_backend().dense_backward(x, self._W, grad, self.dW, self.db, dX)
        return dX

    def __repr__(self):
        return f"Dense({self.in_features}, {self.out_features})"


def _rows(a):
    """Images or feature maps (batch, channels, height, width) as the C-contiguous 2-D
    (batch, values) the elementwise kernels take; anything else as it is, for their checks."""
    if isinstance(a, np.ndarray) and a.ndim == 4:
        return np.ascontiguousarray(a).reshape(len(a), -1)
    return a


class Activation(Module):
    """Elementwise activation; backward reads the derivative off the saved output."""

    name = None
    alpha = 0.0

    def __init__(self):
        self._code = activation_code(self.name)
        self._output = None

    def forward(self, x):
        rows = _rows(x)
        out = np.empty_like(rows)
        kernels.get_backend().activation_forward(rows, out, self._code, self.alpha)
        self._output = out.reshape(np.shape(x))
        return self._output

    def backward(self, grad, input_grad=True):
        if self._output is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        rows = grad
        if self._output.ndim == 4:  # feature maps: the kernel sees them, and grad, as rows
            if np.shape(grad) != self._output.shape:
                raise ValueError(f"grad must have the shape of {self!r}'s last output, {self._output.shape}; "
                                 f"got {np.shape(grad)}")
            rows = _rows(grad)
        out = np.empty_like(rows)
        kernels.get_backend().activation_backward(_rows(self._output), rows, out, self._code, self.alpha)
        return out.reshape(np.shape(grad))

    def __repr__(self):
        return f"{type(self).__name__}()"


class Identity(Activation):
    name = "identity"


class ReLU(Activation):
    name = "relu"


class Sigmoid(Activation):
    name = "sigmoid"


class Tanh(Activation):
    name = "tanh"


class LeakyReLU(Activation):
    name = "leaky_relu"

    def __init__(self, alpha=0.01):
        alpha = float(alpha)
        if not alpha >= 0 or not np.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number >= 0; got {alpha}")
        self.alpha = alpha
        super().__init__()

    def __repr__(self):
        return f"LeakyReLU(alpha={self.alpha})"


class Step(Activation):
    """Heaviside step: 1 where x >= 0, else 0. Forward only: it has no useful gradient."""

    name = "step"

    def backward(self, grad, input_grad=True):
        raise ValueError("Step has no gradient: a network with a Step layer can be evaluated, not trained")


ACTIVATION_MODULES = {cls.name: cls for cls in (Identity, ReLU, LeakyReLU, Sigmoid, Tanh, Step)}


class Dropout(Module):
    """Inverted dropout: in training, zeroes each input with probability p and scales the
    rest by 1 / (1 - p); in evaluation, the identity."""

    def __init__(self, p=0.5, seed=None):
        p = float(p)
        if not 0 <= p < 1:
            raise ValueError(f"p must be in [0, 1); got {p}")
        self.p = p
        self._rng = as_generator(seed)
        self._mask = None

    def forward(self, x):
        if not self.training or self.p == 0:
            self._mask = None
            return x
        keep = self._rng.random(x.shape) >= self.p
        self._mask = keep.astype(x.dtype) / x.dtype.type(1 - self.p)
        return x * self._mask

    def backward(self, grad, input_grad=True):
        return grad if self._mask is None else grad * self._mask

    def __repr__(self):
        return f"Dropout(p={self.p})"
