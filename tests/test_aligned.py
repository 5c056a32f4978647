"""fastnn.aligned: the buffers fastnn trains on start on a cache line."""
import pickle

import numpy as np
import pytest

import fastnn
from fastnn import aligned, engine


def on_a_line(a):
    return a.ctypes.data % aligned.ALIGNMENT == 0


@pytest.mark.parametrize("shape", [0, 1, 7, (3, 5), (2, 3, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_zeros_is_np_zeros_on_a_line(shape, dtype):
    for _ in range(20):  # the allocator's addresses vary from call to call
        a = aligned.zeros(shape, dtype)
        assert a.shape == np.zeros(shape).shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.flags.writeable and not a.any() and (a.size == 0 or on_a_line(a))


def test_copy_is_an_aligned_copy():
    a = np.arange(12.0).reshape(3, 4)[:, 1:]
    b = aligned.copy(a)
    np.testing.assert_array_equal(a, b)
    assert on_a_line(b) and b.flags.c_contiguous and not np.may_share_memory(a, b)


def test_what_fit_trains_on_starts_on_a_line():
    """A model's buffers, its optimizer state, a stack's, an unpickled model's, and the
    engine's workspaces."""
    X, y = np.random.default_rng(0).random((16, 3), dtype=np.float32), np.arange(16) % 2
    model = fastnn.mlp([3, 5, 2], seed=0)
    model.fit(X, y, optimizer="adam", epochs=1, verbose=0)
    stack = fastnn.mlp([3, 5, 2], seed=range(3))
    stack.fit(X, y, optimizer="adam", epochs=1, verbose=0)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.params, model.params)
    work = engine.workspace(model, 4)
    arrays = [model.params, model.grads, *model.optimizer.state.values(), stack.params, stack.grads,
              *stack.state.values(), again.params, again.grads, work.acts, work.deltas, work.backup]
    assert all(on_a_line(a) for a in arrays)
    assert np.shares_memory(again.dense_layers[0].W, again.params)
