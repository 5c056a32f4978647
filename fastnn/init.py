"""Weight initializers: ``init(shape, rng) -> float64 array`` for a (fan_in, fan_out) weight.

Normal variants draw from an untruncated normal. Biases start at zero.
"""
import numpy as np


def zeros(shape, rng):
    return np.zeros(shape)


def he_uniform(shape, rng):
    limit = np.sqrt(6.0 / shape[0])
    return rng.uniform(-limit, limit, shape)


def he_normal(shape, rng):
    return rng.normal(0.0, np.sqrt(2.0 / shape[0]), shape)


def xavier_uniform(shape, rng):
    limit = np.sqrt(6.0 / (shape[0] + shape[1]))
    return rng.uniform(-limit, limit, shape)


def xavier_normal(shape, rng):
    return rng.normal(0.0, np.sqrt(2.0 / (shape[0] + shape[1])), shape)


def lecun_normal(shape, rng):
    return rng.normal(0.0, np.sqrt(1.0 / shape[0]), shape)


INITIALIZERS = {f.__name__: f for f in (zeros, he_uniform, he_normal, xavier_uniform, xavier_normal, lecun_normal)}


def get_initializer(init):
    """An initializer by name, or a callable ``init(shape, rng)`` as it is."""
    if callable(init):
        return init
    if init in INITIALIZERS:
        return INITIALIZERS[init]
    raise ValueError(f"init must be one of {sorted(INITIALIZERS)} or a callable; got {init!r}")


def check_seed(seed):
    """seed, unless it is not a non-negative int, None or a numpy Generator (ValueError,
    TypeError): what as_generator takes, checked without making a Generator."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed < 0:
        raise ValueError(f"seed must be a non-negative int, None or a numpy.random.Generator; got {seed}")
    if seed is None or isinstance(seed, (int, np.integer, np.random.Generator)):
        return seed
    raise TypeError(f"seed must be an int, None or a numpy.random.Generator; got {type(seed).__name__}")


def as_generator(seed):
    """A numpy Generator from a seed, None (fresh entropy) or a Generator."""
    seed = check_seed(seed)
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
