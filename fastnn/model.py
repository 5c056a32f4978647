"""Sequential: a chain of modules whose parameters live in one flat buffer; Stack: K
Sequentials of one architecture whose buffers are the rows of one (K, P) array, trained
together (one compiled call trains them all).

``model.params`` holds every weight and bias; each Dense or Conv2D layer's W
and b are views into it, and ``model.grads`` has the same layout for the gradients. An
optimizer step is then one kernel call over the whole model, and saving is
one array plus the architecture. The layout holds by construction: the layers
are a tuple, the buffers are never replaced (assigning ``model.params`` copies
the values in), and a Dense or Conv2D layer's sizes are read-only.
"""
import copy

import numpy as np
import scipy.sparse

from . import aligned
from . import grad as gradients
from . import io as files
from . import train as training
from .init import as_generator
from .conv import Conv2D, Flatten
from .layers import ACTIVATION_MODULES, Dense, Dropout, Module, Weighted, float_dtype
from .losses import SoftmaxCrossEntropy, get_loss
from .optim import get_optimizer
from .sparse import SparseRows
from .validation import check_features, check_images, check_sample_weight

PREDICT_CHUNK = 4096


class Sequential(Module):
    """Modules applied in order; ``fit``, ``predict`` and ``evaluate`` for the whole chain.

    ``loss`` (a Loss, its class or name) is the model's loss: what fit trains on unless
    told otherwise and what predict and evaluate read the outputs by. None means softmax
    cross-entropy, fit's default; fit(loss=...) sets it.
    """

    def __init__(self, *layers, loss=None):
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layer {i} must be a fastnn Module; got {type(layer).__name__}")
        self._layers = tuple(layers)
        if not self.dense_layers:
            raise ValueError("Sequential needs at least one Dense layer")
        weighted = self.weighted_layers
        dtypes = {layer.dtype for layer in weighted}
        if len(dtypes) > 1:
            raise TypeError(f"all Dense and Conv2D layers must share a dtype; got {sorted(map(str, dtypes))}")
        dtype = weighted[0].dtype
        for before, after in zip(weighted, weighted[1:]):
            _check_chain(before, after)
        n_params = sum(layer.n_params for layer in weighted)
        # The layers' current arrays, copied into the new buffer once it is bound (binding
        # makes new views; the old arrays stay as they are): no other copy of the model.
        initial = [(layer.W, layer.b) for layer in weighted]
        self._params = aligned.zeros(n_params, dtype)
        self._grads = aligned.zeros(n_params, dtype)
        self._bind_layers()
        for layer, (weights, bias) in zip(weighted, initial):
            layer.W[...], layer.b[...] = weights, bias
        self.loss = None if loss is None else get_loss(loss)
        self.optimizer = None

    def _share(self, params, grads):
        """Move the model onto params and grads (a stack's rows, of the model's shape and
        dtype): its values are copied in, its layers become views of them."""
        params[...] = self._params
        grads[...] = self._grads
        self._params, self._grads = params, grads
        self._bind_layers()

    def _bind_layers(self):
        """Make each Dense and Conv2D layer's W, b, dW, db views into params and grads, in order."""
        offset = 0
        for layer in self.weighted_layers:
            end = offset + layer.n_params
            layer.bind(self.params[offset:end], self.grads[offset:end])
            offset = end

    @property
    def layers(self):
        """The modules, in order (a tuple: the flat buffers are laid out for these)."""
        return self._layers

    @property
    def params(self):
        """The flat parameter buffer, of which each Dense or Conv2D layer's W and b are views."""
        return self._params

    @params.setter
    def params(self, value):
        """Copy value into the buffer, so that the layers' views and fit keep one array."""
        value = np.asarray(value)
        if value.shape != self._params.shape or value.dtype.kind not in "biuf":
            raise ValueError(f"params must be a numeric array of shape {self._params.shape}; "
                             f"got {value.dtype} of shape {value.shape}")
        if not np.isfinite(value).all():
            raise ValueError("params must be finite")
        self._params[...] = value

    @property
    def grads(self):
        """The flat gradient buffer, laid out as params."""
        return self._grads

    @property
    def n_params(self):
        return self._params.size

    @property
    def dtype(self):
        return self._params.dtype

    def __setstate__(self, state):
        """Unpickle, then re-bind the layers: pickle copies each view on its own (and
        aligns nothing: the buffers are copied onto cache lines)."""
        self.__dict__.update(state)
        self._params, self._grads = aligned.copy(self._params), aligned.copy(self._grads)
        self._bind_layers()

    @property
    def dense_layers(self):
        return [layer for layer in self.layers if isinstance(layer, Dense)]

    @property
    def weighted_layers(self):
        """The layers with parameters (Dense, Conv2D), in the order of the flat buffers."""
        return [layer for layer in self.layers if isinstance(layer, Weighted)]

    @property
    def takes_images(self):
        """Whether the model's input is images (n_samples, channels, height, width): its first
        layer with parameters is a Conv2D."""
        return isinstance(self.weighted_layers[0], Conv2D)

    @property
    def n_features(self):
        """Features per sample of a model that takes (n_samples, n_features) input; None for
        one that takes images."""
        return None if self.takes_images else self.dense_layers[0].in_features

    @property
    def n_outputs(self):
        return self.dense_layers[-1].out_features

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def train(self, mode=True):
        self.training = bool(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    @property
    def trains_as_chain(self):
        """Whether training may run this model as the chain of its layers, as the engine's
        compiled loops do: true unless a subclass changes forward or backward."""
        return type(self).forward is Sequential.forward and type(self).backward is Sequential.backward

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad, input_grad=True):
        """Backpropagate d(loss)/d(outputs); fills ``grads`` and returns d(loss)/d(input)
        (None when input_grad is False: the first layer then skips that product)."""
        for i in range(len(self.layers) - 1, -1, -1):
            grad = self.layers[i].backward(grad, input_grad=input_grad or i > 0)
        return grad

    def check_input(self, X, name="X"):
        """X as a C-contiguous array of the model's dtype with n_features columns (images with
        the first Conv2D's channels for a model that takes images), or a clear error."""
        if self.takes_images:
            return check_images(X, self.weighted_layers[0].in_channels, self.dtype, name)
        if (scipy.sparse.issparse(X) or isinstance(X, SparseRows)) and not isinstance(self.layers[0], Dense):
            raise ValueError(f"a sparse {name} needs a model whose first layer is Dense; this one starts with "
                             f"{self.layers[0]!r}")
        return check_features(X, self.n_features, self.dtype, name)

    def outputs(self, X):
        """Raw outputs (logits for classification losses), in evaluation mode, by chunks."""
        X = self.check_input(X)
        was_training = self.training
        self.train(False)
        try:
            out = np.empty((X.shape[0], self.n_outputs), self.dtype)
            for start in range(0, X.shape[0], PREDICT_CHUNK):
                out[start:start + PREDICT_CHUNK] = self.forward(X[start:start + PREDICT_CHUNK])
        finally:
            self.train(was_training)
        return out

    def predict_proba(self, X):
        """Class probabilities (softmax or sigmoid of the outputs) under a classification loss."""
        loss = self.loss or SoftmaxCrossEntropy()
        if not loss.has_probabilities:
            raise ValueError(f"predict_proba needs a classification loss; this model's loss is {type(loss).__name__}")
        return loss.transform(self.outputs(X))

    def predict(self, X):
        """Predictions under the model's loss, whether or not it has been fit: class indices
        (N,) under softmax cross-entropy, the default; 0/1 per output (N, outputs) under
        BCEWithLogits; the outputs themselves under MSE. ``outputs`` gives the raw values."""
        return (self.loss or SoftmaxCrossEntropy()).predict(self.outputs(X))

    def evaluate(self, X, y, loss=None, sample_weight=None):
        """{'loss': mean loss, and 'accuracy' (classification) or 'r2' (MSE)} on X, y."""
        loss = get_loss(loss or self.loss or SoftmaxCrossEntropy())
        X = self.check_input(X)
        targets = loss.targets(y, self.n_outputs, self.dtype)
        if len(targets) != len(X):
            raise ValueError(f"X and y must have the same number of samples; got {len(X)} and {len(targets)}")
        weight = check_sample_weight(sample_weight, len(X), self.dtype)
        out = self.outputs(X)
        value = loss(out, targets, np.empty_like(out), weight)
        return {"loss": value, loss.metric_name: loss.score(out, targets)}

    def loss_and_grad(self, X, y, loss=None, sample_weight=None):
        """(mean loss, flat gradient) on X, y by backpropagation."""
        return gradients.loss_and_grad(self, X, y, loss, sample_weight)

    def fit(self, X, y, loss=None, optimizer="adam", epochs=10, batch_size=None, **options):
        """Train in place; see fastnn.train.fit for every option. Returns a History."""
        return training.fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size, **options)

    def save(self, path):
        """Write architecture, parameters and optimizer state to path, atomically."""
        files.save(self, path)

    @classmethod
    def load(cls, path):
        """The Sequential saved at path (fastnn.load); TypeError when the file holds an estimator."""
        return files.load_as(cls, path)

    def summary(self, file=None):
        """Print each layer with its output shape and parameter count; returns the text.
        Image heights and widths, which the model does not fix, show as ?."""
        rows = []
        shape = (self.weighted_layers[0].in_channels, "?", "?") if self.takes_images else (self.n_features,)
        for layer in self.layers:
            if isinstance(layer, Dense):
                shape = (layer.out_features,)
            elif isinstance(layer, Conv2D):
                shape = (layer.out_channels, "?", "?")
            elif isinstance(layer, Flatten):
                shape = ("?",)
            rows.append((repr(layer), f"(batch, {', '.join(map(str, shape))})", layer.n_params))
        name_width = max(len(r[0]) for r in rows + [("layer",)])
        lines = [f"{'layer':<{name_width}}  {'output':<16}{'parameters':>12}"]
        lines += [f"{name:<{name_width}}  {shape:<16}{count:>12,}" for name, shape, count in rows]
        lines.append(f"total parameters: {self.n_params:,} ({self.dtype.name}, one flat buffer)")
        text = "\n".join(lines)
        print(text, file=file)
        return text

    def __repr__(self):
        return "Sequential(" + ", ".join(map(repr, self.layers)) + ")"


class Stack:
    """K models of one architecture trained together: seeds and hyper-parameters as a
    model axis.

    The stack holds copies of the models it is given; its ``params`` and ``grads`` are
    (K, P) arrays whose row k is model k's flat buffer, so ``stack[k]`` is model k as an
    ordinary Sequential *sharing* the stack's memory (a view: training the stack changes it,
    and the other way round). ``fit`` trains all K models in one compiled call per chunk
    of epochs (fastnn.engine); model k ends as a fit of model k alone would leave it.
    """

    def __init__(self, models):
        models = list(models)
        if not models:
            raise ValueError("a Stack needs at least one model")
        for i, model in enumerate(models):
            if not isinstance(model, Sequential):
                raise TypeError(f"models[{i}] must be a Sequential; got {type(model).__name__}")
            if repr(model) != repr(models[0]) or model.dtype != models[0].dtype:
                raise ValueError(f"the models of a Stack must share one architecture and dtype; models[{i}] is "
                                 f"{model!r} ({model.dtype}), models[0] {models[0]!r} ({models[0].dtype})")
        self.models = [copy.deepcopy(model) for model in models]
        self.params = aligned.zeros((len(models), models[0].n_params), models[0].dtype)
        self.grads = aligned.zeros(self.params.shape, self.params.dtype)
        for model, params, grads in zip(self.models, self.params, self.grads):
            model._share(params, grads)
            model.optimizer = None
        self.loss = models[0].loss
        self.optimizer, self.optimizers, self.state = None, None, {}

    def __len__(self):
        return len(self.models)

    def __getitem__(self, k):
        """Model k, a Sequential sharing the stack's memory."""
        return self.models[k]

    def __iter__(self):
        return iter(self.models)

    @property
    def dtype(self):
        return self.params.dtype

    @property
    def histories(self):
        """Each model's History of its last fit (None before one)."""
        return [getattr(model, "history", None) for model in self.models]

    def bind(self, optimizer):
        """Give each model its optimizer from ``optimizer`` (its per-model values:
        Optimizer.for_models), with state in (K, P) arrays whose row k is model k's; the
        stack's last optimizer keeps its state. Sets optimizers and state; returns self."""
        optimizer = get_optimizer(optimizer)
        if optimizer is not self.optimizer or self.optimizers is None:
            optimizers = optimizer.for_models(len(self))
            state = {name: aligned.zeros(self.params.shape, self.params.dtype) for name in optimizer.state_names}
            for k, (model, each) in enumerate(zip(self.models, optimizers)):
                each.state = {name: buffer[k] for name, buffer in state.items()}
                each.steps = each.epochs = 0
                model.optimizer = each
            self.optimizer, self.optimizers, self.state = optimizer, optimizers, state
        return self

    def fit(self, X, y, loss=None, optimizer="adam", epochs=10, batch_size=None, **options):
        """Train every model in place; returns their Histories (a list of K).

        The options are Sequential.fit's (fastnn.train.fit), with these differences:
        ``seed`` is one seed (every model sees the same batch order) or a sequence of K
        (model k shuffles with seed[k], as a fit of it alone with that seed); the
        optimizer's hyper-parameters may be sequences, one value per model
        (``fastnn.Adam(lr=[1e-3, 1e-2])``); early stopping, divergence and callbacks stop
        a model on its own (it keeps its weights as a single fit would; the others go on);
        validation_split needs one seed for all models.
        """
        return training.fit(self, X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                            **options)

    def outputs(self, X):
        """Each model's raw outputs: (K, n_samples, n_outputs)."""
        return np.stack([model.outputs(X) for model in self.models])

    def predict(self, X):
        """Each model's predictions (Sequential.predict), stacked along a first axis of K."""
        return np.stack([model.predict(X) for model in self.models])

    def predict_proba(self, X):
        """Each model's class probabilities: (K, n_samples, n_classes)."""
        return np.stack([model.predict_proba(X) for model in self.models])

    def evaluate(self, X, y, loss=None, sample_weight=None):
        """{'loss': (K,) array, and 'accuracy' or 'r2': (K,) array}: Sequential.evaluate per model."""
        scores = [model.evaluate(X, y, loss, sample_weight) for model in self.models]
        return {name: np.array([score[name] for score in scores]) for name in scores[0]}

    def ensemble_proba(self, X):
        """The ensemble's class probabilities: the mean over the models of predict_proba."""
        return self.predict_proba(X).mean(axis=0)

    def ensemble_predict(self, X):
        """The ensemble's predictions: from the mean probabilities under a classification
        loss, the mean outputs under MSE."""
        loss = self.models[0].loss or SoftmaxCrossEntropy()
        if loss.has_probabilities:
            return loss.predict_from_probabilities(self.ensemble_proba(X))
        return self.outputs(X).mean(axis=0)

    def save(self, path):
        """Write the models, their loss, optimizers and optimizer state to path, atomically
        (fastnn.load reads it back as a Stack)."""
        files.save(self, path)

    @classmethod
    def load(cls, path):
        """The Stack saved at path; TypeError when the file holds something else."""
        return files.load_as(cls, path)

    def __repr__(self):
        return f"Stack({len(self)} x {self.models[0]!r})"


def _check_chain(before, after):
    """ValueError unless the layer with parameters ``after`` can take what ``before`` gives
    (the layers between them keep the channels and, without a Conv2D, the features)."""
    if isinstance(before, Dense) and isinstance(after, Conv2D):
        raise ValueError(f"{before!r} is followed by {after!r}: a Conv2D takes images, not the features "
                         "a Dense layer gives")
    if isinstance(before, Dense) and before.out_features != after.in_features:
        raise ValueError(f"{before!r} is followed by {after!r}: out_features "
                         f"{before.out_features} != in_features {after.in_features}")
    if isinstance(after, Conv2D) and before.out_channels != after.in_channels:
        raise ValueError(f"{before!r} is followed by {after!r}: out_channels "
                         f"{before.out_channels} != in_channels {after.in_channels}")


def mlp(sizes, activation="relu", output_activation=None, init=None, dropout=0.0,
        dtype=np.float32, seed=None, loss=None):
    """A Sequential of Dense layers with ``activation`` between them.

    sizes = [n_in, hidden..., n_out]. The output layer has no activation
    (losses take raw outputs) unless output_activation names one. init
    defaults to he_uniform for relu-like activations, xavier_uniform otherwise.
    loss is the model's loss (see Sequential): e.g. 'mse' for a regression net, whose
    predict then gives its outputs.
    seed: an int, a Generator or None for one model; a sequence of seeds (range(15)) for a
    Stack of one model per seed.
    """
    if isinstance(seed, (list, tuple, range)):
        return Stack([mlp(sizes, activation, output_activation, init, dropout, dtype, each, loss) for each in seed])
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least an input and an output size; got {sizes}")
    for name in (activation, output_activation):
        if name is not None and name not in ACTIVATION_MODULES:
            raise ValueError(f"activation must be one of {sorted(ACTIVATION_MODULES)}; got {name!r}")
    if init is None:
        init = "he_uniform" if activation in ("relu", "leaky_relu") else "xavier_uniform"
    rng = as_generator(seed)
    dtype = float_dtype(dtype)
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(Dense(n_in, n_out, init=init, dtype=dtype, seed=rng))
        last = i == len(sizes) - 2
        name = output_activation if last else activation
        if name is not None:
            layers.append(ACTIVATION_MODULES[name]())
        if dropout and not last:
            layers.append(Dropout(dropout, seed=rng))
    return Sequential(*layers, loss=loss)
