"""Optimizers over a model's flat parameter buffer, and learning-rate schedules.

An optimizer's state (velocity; Adam's m and v) are buffers as long as the
parameters, so one step is one kernel call over the whole model. A schedule
is a callable ``schedule(epoch, base_lr) -> lr`` (epoch counts from 0, across
fit calls with the same optimizer) that the trainer applies at the start of
every epoch.

For a stack of models (fastnn.Stack) a scalar hyper-parameter may be a sequence,
one value per model: ``Adam(lr=[1e-3, 3e-3])``; ``for_models`` then gives each
model its optimizer.
"""
import math

import numpy as np

from . import aligned, kernels
from .atomic import deferred_interrupt
from .kernels.contract import finite_number


def _per_model(value):
    """Whether a hyper-parameter value is a sequence of per-model values."""
    return isinstance(value, (list, tuple, range)) or (isinstance(value, np.ndarray) and value.ndim == 1)


def _checked(name, value, bounds):
    """A number checked by finite_number, or a tuple of them (one per model of a stack)."""
    if not _per_model(value):
        return finite_number(name, value, *bounds)
    if len(value) == 0:
        raise ValueError(f"{name} must be a number or a non-empty sequence of numbers, one per model; got {value!r}")
    return tuple(finite_number(f"{name}[{i}]", v, *bounds) for i, v in enumerate(value))


def _pick(value, k):
    """Model k's value of a hyper-parameter given once for all models or once per model."""
    return value[k] if isinstance(value, tuple) else value


class _Checked:
    """A hyper-parameter checked by finite_number on every assignment, so that one set
    after construction (opt.lr = -1) is refused as the constructor would refuse it."""

    def __init__(self, low=0.0, high=None, low_inclusive=True):
        self.bounds = (low, high, low_inclusive)

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, optimizer, owner=None):
        return self if optimizer is None else optimizer.__dict__[self.name]

    def __set__(self, optimizer, value):
        optimizer.__dict__[self.name] = _checked(self.name, value, self.bounds)


class Optimizer:
    """Holds the hyper-parameters and the state buffers; ``step`` applies one update."""

    state_names = ()
    lr = _Checked(low_inclusive=False)

    def __init__(self, lr, schedule):
        self.lr = lr
        self.base_lr = self.lr
        if schedule is not None and not callable(schedule):
            raise TypeError(f"schedule must be a callable (epoch, base_lr) -> lr; got {schedule!r}")
        self.schedule = schedule
        self.state = {}
        self.steps = 0
        self.epochs = 0

    def bind(self, n_params, dtype):
        """Allocate zeroed state for a model with n_params parameters (kept if it already fits)."""
        fits = all(self.state.get(name) is not None and self.state[name].shape == (n_params,)
                   and self.state[name].dtype == dtype for name in self.state_names)
        if not fits:
            self.state = {name: aligned.zeros(n_params, dtype) for name in self.state_names}
            self.steps = self.epochs = 0

    def start_epoch(self, count=1):
        """Count an epoch (or ``count`` epochs trained in one go, which needs a constant
        learning rate) and set its learning rate from the schedule. Epochs count across
        fit calls, so training resumed with the same optimizer continues the schedule."""
        if self.schedule is not None:
            if count != 1:
                raise ValueError("a learning-rate schedule sets the rate epoch by epoch: count must be 1")
            lr = self.schedule(self.epochs, self.base_lr)
            self.lr = finite_number("the scheduled lr", lr, 0.0, low_inclusive=False)
        self.epochs += count

    def step(self, params, grads):
        raise NotImplementedError

    @property
    def n_models(self):
        """How many models the per-model hyper-parameter values are for; None when every
        value is one for all models."""
        lengths = {name: len(value) for name, value in self._values().items() if isinstance(value, tuple)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"the per-model hyper-parameters must have one value per model each; got {lengths}")
        return next(iter(lengths.values()), None)

    def _check_model_count(self):
        """ValueError unless the per-model values agree on how many models they are for."""
        self.n_models

    def _values(self):
        """{hyper-parameter: value or tuple of per-model values}; Adam's betas as beta1, beta2."""
        values = self.get_params()
        del values["schedule"]
        if "betas" in values:
            values["beta1"], values["beta2"] = values.pop("betas")
        return values

    def _model_options(self, k):
        """The constructor's arguments of model k's optimizer."""
        options = {name: _pick(value, k) for name, value in self._values().items()}
        if "beta1" in options:
            options["betas"] = (options.pop("beta1"), options.pop("beta2"))
        return options

    def for_models(self, k):
        """The optimizers of a stack of k models, with fresh state: model i's has the i-th of
        each per-model value. For one model without per-model values, this optimizer itself
        (its state carries over between fits)."""
        n = self.n_models
        if n is not None and n != k:
            raise ValueError(f"{self!r} has per-model hyper-parameters for {n} models; it trains a stack of {n}, "
                             f"not {'one model' if k == 1 else f'{k} models'}")
        if k == 1 and n is None:
            return [self]
        optimizers = [type(self)(**self._model_options(i), schedule=self.schedule) for i in range(k)]
        for i, optimizer in enumerate(optimizers):
            optimizer.lr = _pick(self.lr, i)  # the current rate, which may differ from base_lr
        return optimizers

    @classmethod
    def of_models(cls, optimizers):
        """One optimizer with the hyper-parameters of these (for_models' inverse): a value
        all of them share stays one value, others become per-model sequences."""
        values = [optimizer._values() for optimizer in optimizers]
        joined = {}
        for name in values[0]:
            each = [value[name] for value in values]
            joined[name] = each[0] if len(set(each)) == 1 else tuple(each)
        if "beta1" in joined:
            joined["betas"] = (joined.pop("beta1"), joined.pop("beta2"))
        return cls(**joined, schedule=optimizers[0].schedule)

    def __repr__(self):
        fields = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({fields})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay,
    following PyTorch's torch.optim.SGD (no dampening)."""

    state_names = ("velocity",)
    momentum, weight_decay = _Checked(), _Checked()

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, schedule=None):
        super().__init__(lr, schedule)
        self.momentum = momentum
        self.nesterov = bool(nesterov)
        if self.nesterov and 0 in (self.momentum if isinstance(self.momentum, tuple) else (self.momentum,)):
            raise ValueError("nesterov=True needs momentum > 0")
        self.weight_decay = weight_decay
        self._check_model_count()

    def get_params(self):
        return {"lr": self.base_lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "schedule": self.schedule}

    def step(self, params, grads):
        with deferred_interrupt():
            kernels.get_backend().sgd_update(params, grads, self.state["velocity"], self.lr,
                                             self.momentum, self.nesterov, self.weight_decay)
            self.steps += 1


class Adam(Optimizer):
    """Adam with bias correction; weight decay is L2 added to the gradient (PyTorch's Adam)
    or, with decoupled=True, applied to the weights directly (AdamW)."""

    state_names = ("m", "v")
    eps, weight_decay = _Checked(), _Checked()

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False,
                 schedule=None):
        super().__init__(lr, schedule)
        if len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2); got {betas!r}")
        self.betas = (_checked("beta1", betas[0], (0.0, 1.0)), _checked("beta2", betas[1], (0.0, 1.0)))
        self.eps = eps
        self.weight_decay = weight_decay
        self.decoupled = bool(decoupled)
        self._check_model_count()

    def get_params(self):
        return {"lr": self.base_lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay,
                "decoupled": self.decoupled, "schedule": self.schedule}

    def step(self, params, grads):
        with deferred_interrupt():
            kernels.get_backend().adam_update(params, grads, self.state["m"], self.state["v"], self.steps + 1,
                                              self.lr, *self.betas, self.eps, self.weight_decay, self.decoupled)
            self.steps += 1


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get_optimizer(optimizer, **kwargs):
    """An optimizer from an instance, or a name ('sgd', 'adam') and keyword arguments."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZERS:
        return OPTIMIZERS[optimizer.lower()](**kwargs)
    raise ValueError(f"optimizer must be an Optimizer or one of {sorted(OPTIMIZERS)}; got {optimizer!r}")


class StepDecay:
    """lr = base_lr * gamma ** (epoch // step_size)."""

    def __init__(self, step_size, gamma=0.1):
        if int(step_size) < 1:
            raise ValueError(f"step_size must be >= 1; got {step_size}")
        self.step_size, self.gamma = int(step_size), finite_number("gamma", gamma, 0.0, low_inclusive=False)

    def __call__(self, epoch, base_lr):
        return base_lr * self.gamma ** (epoch // self.step_size)

    def __repr__(self):
        return f"StepDecay(step_size={self.step_size}, gamma={self.gamma})"


class ExponentialDecay:
    """lr = base_lr * gamma ** epoch."""

    def __init__(self, gamma):
        self.gamma = finite_number("gamma", gamma, 0.0, low_inclusive=False)

    def __call__(self, epoch, base_lr):
        return base_lr * self.gamma ** epoch

    def __repr__(self):
        return f"ExponentialDecay(gamma={self.gamma})"


class CosineDecay:
    """Cosine annealing from base_lr to min_lr over total_epochs, then min_lr."""

    def __init__(self, total_epochs, min_lr=0.0):
        if int(total_epochs) < 1:
            raise ValueError(f"total_epochs must be >= 1; got {total_epochs}")
        self.total_epochs, self.min_lr = int(total_epochs), finite_number("min_lr", min_lr, 0.0)

    def __call__(self, epoch, base_lr):
        progress = min(epoch, self.total_epochs) / self.total_epochs
        lr = self.min_lr + 0.5 * (base_lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        return max(lr, np.finfo(np.float64).tiny)

    def __repr__(self):
        return f"CosineDecay(total_epochs={self.total_epochs}, min_lr={self.min_lr})"
