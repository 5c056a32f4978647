"""Layers for convolutional nets on images (batch, channels, height, width), PyTorch's
layout: Conv2D, MaxPool2D and Flatten.

Conv2D runs as im2col and one matrix product: the windows of the (padded) input,
gathered by NumPy's stride tricks into a (batch·out_height·out_width,
channels·kh·kw) matrix, times the weights through the backend's dense kernels;
its backward is the dense backward of that product, and the windows' gradients
are summed back onto the input (col2im). That sum, shared with MaxPool2D's
backward, loops in Python over the kernel's offsets only, never over samples or
output pixels.
"""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import kernels
from .layers import Module, Weighted
from .validation import check_int_pair, check_positive_int


def _windows(x, kernel_size, stride):
    """The (kh, kw) windows of x (N, C, H, W) at the given stride, as a view of shape
    (N, C, out_height, out_width, kh, kw)."""
    (sh, sw) = stride
    return sliding_window_view(x, kernel_size, axis=(2, 3))[:, :, ::sh, ::sw]


def _fold(windows, shape, stride):
    """The adjoint of _windows: each window's values added back where they came from, into
    a new array of shape (N, C, H, W)."""
    out = np.zeros(shape, windows.dtype)
    *_, oh, ow, kh, kw = windows.shape
    sh, sw = stride
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += windows[..., i, j]
    return out


def _check_images(x, layer, padding=(0, 0)):
    """ValueError/TypeError unless x is a float32/float64 (N, C, H, W) array whose (padded)
    height and width hold the layer's kernel."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray of shape (batch, channels, height, width) for {layer!r}; "
                        f"got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64 for {layer!r}; got {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D (batch, channels, height, width) for {layer!r}; got shape {x.shape}")
    size = (x.shape[2] + 2 * padding[0], x.shape[3] + 2 * padding[1])
    if size[0] < layer.kernel_size[0] or size[1] < layer.kernel_size[1]:
        raise ValueError(f"kernel_size {layer.kernel_size} of {layer!r} is larger than its "
                         f"{'padded ' if any(padding) else ''}input, {size[0]}x{size[1]} (x of shape {x.shape})")


def _check_grad(grad, shape, dtype, layer):
    if not (isinstance(grad, np.ndarray) and grad.shape == shape and grad.dtype == dtype):
        raise ValueError(f"grad must be a {np.dtype(dtype)} array of shape {shape} (the output of {layer!r}'s "
                         f"last forward); got {getattr(grad, 'dtype', type(grad).__name__)} of shape {np.shape(grad)}")


class Conv2D(Weighted):
    """2-D convolution (cross-correlation, as PyTorch's Conv2d) of (N, in_channels, H, W)
    images with W of shape (out_channels, in_channels, kh, kw) and a bias per output
    channel. kernel_size, stride and padding (zeros around the image) are ints or
    (height, width) pairs. init draws the (in_channels·kh·kw, out_channels) matrix of
    the product, so its fan-in is in_channels·kh·kw."""

    _caches = Module._caches + ("_cols",)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, init="he_uniform", *,
                 dtype=np.float32, seed=None):
        self._in_channels = check_positive_int("in_channels", in_channels)
        self._out_channels = check_positive_int("out_channels", out_channels)
        self._kernel_size = check_int_pair("kernel_size", kernel_size, 1)
        self._stride = check_int_pair("stride", stride, 1)
        self._padding = check_int_pair("padding", padding, 0)
        self._cols = None
        self._set_up(init, dtype, seed)

    # Read-only, as Dense's sizes: the model's flat buffers are laid out for them.
    in_channels = property(lambda self: self._in_channels)
    out_channels = property(lambda self: self._out_channels)
    kernel_size = property(lambda self: self._kernel_size)
    stride = property(lambda self: self._stride)
    padding = property(lambda self: self._padding)
    weight_shape = property(lambda self: (self._out_channels, self._in_channels, *self._kernel_size))
    matrix_shape = property(lambda self: (self._in_channels * self._kernel_size[0] * self._kernel_size[1],
                                          self._out_channels))

    def _from_matrix(self, weights):
        return np.asarray(weights).T.reshape(self.weight_shape)

    def _matrix(self):
        """W as the C-contiguous (in_channels·kh·kw, out_channels) matrix of the product."""
        return np.ascontiguousarray(self._W.reshape(self._out_channels, -1).T)

    def forward(self, x):
        _check_images(x, self, self._padding)
        if x.dtype != self.dtype:
            raise TypeError(f"x must be {self.dtype} (the dtype of {self!r}); got {x.dtype}")
        if x.shape[1] != self._in_channels:
            raise ValueError(f"x must have {self._in_channels} channels (x.shape[1]) for {self!r}; "
                             f"got {x.shape[1]}")
        ph, pw = self._padding
        padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
        windows = _windows(padded, self._kernel_size, self._stride)
        n, _, oh, ow = windows.shape[:4]
        # im2col: one row per output pixel, its window's values in (channel, kh, kw) order.
        cols = np.ascontiguousarray(windows.transpose(0, 2, 3, 1, 4, 5)).reshape(n * oh * ow, -1)
        out = np.empty((n * oh * ow, self._out_channels), self.dtype)
        kernels.get_backend().dense_forward(cols, self._matrix(), self._b, out, "identity")
        out = np.ascontiguousarray(out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2))
        self._input, self._cols = (x.shape, padded.shape, out.shape), cols
        return out

    def backward(self, grad, input_grad=True):
        """Writes dW and db; returns d(loss)/d(x) unless input_grad is False."""
        if self._cols is None:
            raise RuntimeError("Conv2D.backward called before forward")
        (shape, padded, (n, _, oh, ow)), cols = self._input, self._cols
        _check_grad(grad, (n, self._out_channels, oh, ow), self.dtype, self)
        dZ = np.ascontiguousarray(grad.transpose(0, 2, 3, 1)).reshape(-1, self._out_channels)
        d_matrix = np.empty(self.matrix_shape, self.dtype)
        d_cols = np.empty_like(cols) if input_grad else None
        kernels.get_backend().dense_backward(cols, self._matrix(), dZ, d_matrix, self.db, d_cols)
        self.dW[...] = self._from_matrix(d_matrix)
        if d_cols is None:
            return None
        windows = d_cols.reshape(n, oh, ow, self._in_channels, *self._kernel_size).transpose(0, 3, 1, 2, 4, 5)
        dx = _fold(windows, padded, self._stride)
        ph, pw = self._padding
        return np.ascontiguousarray(dx[:, :, ph:ph + shape[2], pw:pw + shape[3]])

    def __repr__(self):
        extra = "".join(f", {name}={value}" for name, value, default in
                        (("stride", self._stride, (1, 1)), ("padding", self._padding, (0, 0))) if value != default)
        return f"Conv2D({self._in_channels}, {self._out_channels}, kernel_size={self._kernel_size}{extra})"


class MaxPool2D(Module):
    """Max pooling of (N, C, H, W) images over kernel_size windows, at stride (default:
    kernel_size, windows that do not overlap); rows and columns left over are dropped,
    as in PyTorch. The gradient goes to the first maximum of each window."""

    _caches = Module._caches + ("_argmax",)

    def __init__(self, kernel_size, stride=None):
        self.kernel_size = check_int_pair("kernel_size", kernel_size, 1)
        self.stride = self.kernel_size if stride is None else check_int_pair("stride", stride, 1)
        self._input = self._argmax = None

    def forward(self, x):
        _check_images(x, self)
        windows = _windows(x, self.kernel_size, self.stride)
        flat = windows.reshape(*windows.shape[:4], -1)
        self._argmax = flat.argmax(axis=-1)
        self._input = (x.shape, x.dtype)
        return np.take_along_axis(flat, self._argmax[..., None], axis=-1)[..., 0]

    def backward(self, grad, input_grad=True):
        if self._argmax is None:
            raise RuntimeError("MaxPool2D.backward called before forward")
        shape, dtype = self._input
        _check_grad(grad, self._argmax.shape, dtype, self)
        first_max = np.arange(self.kernel_size[0] * self.kernel_size[1]) == self._argmax[..., None]
        windows = (first_max * grad[..., None]).reshape(*grad.shape, *self.kernel_size)
        return _fold(windows, shape, self.stride)

    def __repr__(self):
        stride = "" if self.stride == self.kernel_size else f", stride={self.stride}"
        return f"MaxPool2D(kernel_size={self.kernel_size}{stride})"


class Flatten(Module):
    """(N, d1, d2, ...) to (N, d1·d2·...): from feature maps to the features of a Dense layer."""

    def __init__(self):
        self._input = None

    def forward(self, x):
        if not isinstance(x, np.ndarray) or x.ndim < 2:
            raise ValueError(f"x must be an array of at least 2 dimensions (batch, ...) for Flatten; "
                             f"got shape {np.shape(x)}")
        self._input = x.shape
        return np.ascontiguousarray(x).reshape(len(x), -1)

    def backward(self, grad, input_grad=True):
        if self._input is None:
            raise RuntimeError("Flatten.backward called before forward")
        return np.reshape(grad, self._input)

    def __repr__(self):
        return "Flatten()"
