"""Optimizers over flat buffers, and learning-rate schedules."""
import math

import numpy as np
import pytest

import fastnn
from fastnn.optim import get_optimizer


def test_sgd_step_updates_the_flat_buffer_in_one_call():
    params, grads = np.ones(5, np.float32), np.full(5, 2.0, np.float32)
    opt = fastnn.SGD(lr=0.1)
    opt.bind(5, np.float32)
    opt.step(params, grads)
    np.testing.assert_allclose(params, 0.8)
    assert opt.steps == 1


def test_adam_state_is_as_long_as_the_parameters_and_survives_rebinding():
    opt = fastnn.Adam(lr=0.01)
    opt.bind(7, np.float64)
    assert set(opt.state) == {"m", "v"} and opt.state["m"].shape == (7,)
    params = np.zeros(7)
    opt.step(params, np.ones(7))
    m = opt.state["m"]
    opt.bind(7, np.float64)
    assert opt.state["m"] is m and opt.steps == 1
    opt.bind(8, np.float64)
    assert opt.steps == 0 and opt.state["m"].shape == (8,)


@pytest.mark.parametrize("make,message", [
    (lambda: fastnn.SGD(lr=0), "lr must be a finite number > 0"),
    (lambda: fastnn.SGD(lr=0.1, momentum=-1), "momentum must be a finite number >= 0"),
    (lambda: fastnn.SGD(lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
    (lambda: fastnn.Adam(betas=(0.9, 1.0)), "beta2 must be a finite number >= 0 and < 1"),
    (lambda: fastnn.Adam(betas=(0.9,)), "betas must be a pair"),
    (lambda: fastnn.Adam(schedule=3), "schedule must be a callable"),
    (lambda: get_optimizer("rmsprop"), "optimizer must be an Optimizer or one of"),
])
def test_bad_hyperparameters(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_schedules():
    assert [fastnn.StepDecay(2, 0.5)(e, 1.0) for e in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    assert fastnn.ExponentialDecay(0.9)(3, 2.0) == pytest.approx(2 * 0.9 ** 3)
    cosine = fastnn.CosineDecay(10, min_lr=0.1)
    assert cosine(0, 1.0) == pytest.approx(1.0)
    assert cosine(5, 1.0) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 2)))
    assert cosine(10, 1.0) == pytest.approx(0.1) == cosine(20, 1.0)


def test_schedule_sets_lr_each_epoch_counting_across_calls():
    opt = fastnn.SGD(lr=1.0, schedule=fastnn.StepDecay(1, 0.5))
    for _ in range(4):
        opt.start_epoch()
    assert opt.lr == 0.125 and opt.base_lr == 1.0 and opt.epochs == 4


def test_schedule_applies_during_fit(rng):
    seen = []
    opt = fastnn.SGD(lr=0.1, schedule=lambda epoch, base: base / (1 + epoch))
    model = fastnn.mlp([2, 3, 2], seed=0)
    model.fit(rng.random((8, 2)), rng.integers(0, 2, 8), optimizer=opt, epochs=3, verbose=0,
              callbacks=[lambda h: seen.append(opt.lr)])
    assert seen == pytest.approx([0.1, 0.05, 0.1 / 3])


@pytest.mark.parametrize("name,value,error,message", [
    ("lr", -1, ValueError, "lr must be a finite number > 0; got -1.0"),
    ("lr", float("nan"), ValueError, "lr must be a finite number > 0; got nan"),
    ("lr", "fast", TypeError, "lr must be a number; got 'fast'"),
    ("momentum", -0.5, ValueError, "momentum must be a finite number >= 0"),
    ("weight_decay", float("inf"), ValueError, "weight_decay must be a finite number >= 0"),
])
def test_hyper_parameters_set_after_construction_are_checked(name, value, error, message):
    opt = fastnn.SGD(0.1, momentum=0.9)
    with pytest.raises(error, match=message):
        setattr(opt, name, value)
    assert (opt.lr, opt.momentum, opt.weight_decay) == (0.1, 0.9, 0.0)
    with pytest.raises(TypeError, match="lr must be a number; got 'fast'"):
        fastnn.Adam("fast")
    adam = fastnn.Adam()
    with pytest.raises(ValueError, match="eps must be a finite number >= 0"):
        adam.eps = float("nan")


@pytest.mark.parametrize("backend", ["numba", "cython"])
@pytest.mark.parametrize("optimizer", ["fastnn.SGD(0.1, momentum=0.9)", "fastnn.Adam()"])
def test_step_checks_the_state_against_the_parameters(isolated, backend, optimizer):
    """step with state bound for another size raises a clear error and leaves the step count
    (run in a fresh process: unchecked, this corrupted the heap)."""
    done = isolated(f"""
        import numpy as np, fastnn
        fastnn.set_backend("{backend}")
        m = fastnn.mlp([784, 512, 10]); o = {optimizer}; o.bind(10, np.float32)
        try:
            o.step(m.params, m.grads)
        except ValueError as error:
            print("refused:", error, o.steps)
        """)
    assert done.returncode == 0, done.stderr
    assert "must have shape (407050,); got (10,) 0" in done.stdout, done.stdout
