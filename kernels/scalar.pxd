# The math of the Cython kernels and the Cython engine, written once: point functions of
# one element or one row (activations and their derivatives, losses, metrics, optimizer
# steps) that both modules' loops call. Inline, so each build compiles them into its own
# loops. Codes and the hyper-parameter record are abi.pxd's.
from cython cimport floating
from libc.math cimport exp, expf, fabs, log, log1p, sqrt, sqrtf, tanh, tanhf
from libc.stdint cimport int32_t, int64_t

from abi cimport CROSS_ENTROPY, CROSS_ENTROPY_SOFT, IDENTITY, LEAKY_RELU, MSE, RELU, SIGMOID, STEP, TANH, Hyper


cdef union _FloatBits:
    float value
    int32_t bits


cdef inline float _expf(float x) noexcept nogil:
    """exp(x) in float32 for x <= 0 (every caller's argument is), without a call or a branch,
    so that the loops over it vectorise (libm's expf is a call per element): x = n ln 2 + r
    with r reduced in float64, exp(r) by its Taylor polynomial of degree 7 (|r| <= ln 2 / 2:
    error under 6e-9), times 2^n built from its bits; sigmoid from it is within 2.5 ulp of its exact
    value where that is a normal float32; below -88, where only denormals are left (which
    the engine flushes anyway), 0. NaN stays NaN."""
    cdef int32_t n = <int32_t>(x * <float>1.4426950408889634 - <float>0.5)  # round to nearest: x <= 0
    cdef float r, p
    cdef _FloatBits scale
    n = -126 if n < -126 else n
    r = <float>(<double>x - <double>n * 0.6931471805599453)
    scale.bits = (n + 127) << 23
    p = 1 + r * (1 + r * (<float>0.5 + r * (<float>(1 / 6.0) + r * (<float>(1 / 24.0) + r * (
        <float>(1 / 120.0) + r * (<float>(1 / 720.0) + r * <float>(1 / 5040.0)))))))
    return <float>0 if x < -88 else scale.value * p


cdef inline floating _exp(floating x) noexcept nogil:
    """exp(x) for x <= 0: _expf in float32, the C library's exp in float64."""
    if floating is float:
        return _expf(x)
    else:
        return exp(x)


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _tanh(floating x) noexcept nogil:
    if floating is float:
        return tanhf(x)
    else:
        return tanh(x)


cdef inline floating _logistic(floating x, floating e) noexcept nogil:
    """1 / (1 + exp(-x)) from e = exp(-|x|): 1 / (1 + e) for x >= 0 and e / (1 + e) below."""
    return (<floating>1 if x >= 0 else e) / (<floating>1 + e)


cdef inline floating sigmoid(floating x, bint vectorised) noexcept nogil:
    """1 / (1 + exp(-x)). A loop that vectorises (vectorised) takes _exp, which has no call;
    one value at a time takes the C library's exp, whose float32 latency is about half of
    _expf's (9 against 16 ns on AMD EPYC Zen 4): the online loop of a tiny net waits on it
    at every layer (with _expf the 2-5-5-5-2 net trained 0.9x as fast)."""
    cdef floating e
    if vectorised:
        e = _exp(-x if x >= 0 else x)
    elif floating is float:
        e = expf(-x if x >= 0 else x)
    else:
        e = exp(-x if x >= 0 else x)
    return _logistic(x, e)


# Activations: codes of abi.py; alpha is leaky_relu's negative slope.

cdef inline floating activate(floating z, int code, floating alpha, bint vectorised) noexcept nogil:
    """f(z), in a loop that vectorises when vectorised (sigmoid)."""
    if code == RELU:
        return 0 if z < 0 else z
    if code == LEAKY_RELU:
        return z if z > 0 else z * alpha
    if code == SIGMOID:
        return sigmoid(z, vectorised)
    if code == TANH:
        return _tanh(z)
    if code == STEP:
        return 1 if z >= 0 else 0
    return z


cdef inline floating activation_gradient(floating a, floating d, int code, floating alpha) noexcept nogil:
    """d * f'(z) from the saved output a = f(z) (STEP has no gradient: never asked)."""
    if code == RELU:
        return d if a > 0 else 0
    if code == LEAKY_RELU:
        return d * (1 if a > 0 else alpha)
    if code == SIGMOID:
        return d * a * (1 - a)
    if code == TANH:
        return d * (1 - a * a)
    return d

# The loops over a run of elements: the code is tested once, outside the loop, so that
# each loop calls its activation with a constant code and the compiler vectorises it
# (a test of the code inside the loop keeps it scalar: relu 8x slower).

cdef inline void _activate_run(const floating* z, floating* out, Py_ssize_t n, int code,
                               floating alpha) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        out[k] = activate(z[k], code, alpha, True)


cdef inline void _gradient_run(const floating* a, const floating* d, floating* out, Py_ssize_t n, int code,
                               floating alpha) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        out[k] = activation_gradient(a[k], d[k], code, alpha)


cdef inline void activate_all(const floating* z, floating* out, Py_ssize_t n, int code,
                              floating alpha) noexcept nogil:
    """out[k] = f(z[k]) for k < n; out may be z. Each call below inlines the loop with a
    constant code."""
    if code == RELU: _activate_run(z, out, n, RELU, alpha)
    elif code == LEAKY_RELU: _activate_run(z, out, n, LEAKY_RELU, alpha)
    elif code == SIGMOID: _activate_run(z, out, n, SIGMOID, alpha)
    elif code == TANH: _activate_run(z, out, n, TANH, alpha)
    elif code == STEP: _activate_run(z, out, n, STEP, alpha)
    elif out != z: _activate_run(z, out, n, IDENTITY, alpha)


cdef inline void activation_gradient_all(const floating* a, const floating* d, floating* out, Py_ssize_t n,
                                         int code, floating alpha) noexcept nogil:
    """out[k] = d[k] * f'(z[k]) for k < n, from a = f(z); out may be a or d."""
    if code == RELU: _gradient_run(a, d, out, n, RELU, alpha)
    elif code == LEAKY_RELU: _gradient_run(a, d, out, n, LEAKY_RELU, alpha)
    elif code == SIGMOID: _gradient_run(a, d, out, n, SIGMOID, alpha)
    elif code == TANH: _gradient_run(a, d, out, n, TANH, alpha)
    elif out != d: _gradient_run(a, d, out, n, IDENTITY, alpha)


# Losses, one row at a time in double: each returns w times the row's loss and writes
# w times its gradient with respect to the row z[:n] into grad[:n] (OUT).

cdef inline double row_max(const floating* z, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef double top = z[0]
    for j in range(1, n):
        if z[j] > top:
            top = z[j]
    return top


cdef inline double cross_entropy_row(const floating* z, int64_t label, Py_ssize_t n, double w,
                                     floating* grad) noexcept nogil:
    """-log softmax(z)[label] in the log-sum-exp form; gradient softmax(z) - onehot(label).
    One exp per entry: grad keeps exp(z[j] - max) until their sum is known."""
    cdef Py_ssize_t j
    cdef double top = row_max(z, n), total = 0, e
    for j in range(n):
        e = exp(z[j] - top)
        total += e
        grad[j] = e
    for j in range(n):
        e = grad[j] / total
        grad[j] = (e - 1.0 if j == label else e) * w
    return -w * ((z[label] - top) - log(total))


cdef inline double cross_entropy_soft_row(const floating* z, const floating* t, Py_ssize_t n, double w,
                                          floating* grad) noexcept nogil:
    """-sum_j t[j] log softmax(z)[j] (log-sum-exp form); gradient softmax(z) * sum(t) - t."""
    cdef Py_ssize_t j
    cdef double top = row_max(z, n), total = 0, target_sum = 0, row = 0, log_p
    for j in range(n):
        total += exp(z[j] - top)
        target_sum += t[j]
    total = log(total)
    for j in range(n):
        log_p = (z[j] - top) - total
        row += t[j] * log_p
        grad[j] = (exp(log_p) * target_sum - t[j]) * w
    return -w * row


cdef inline double mse_row(const floating* z, const floating* t, Py_ssize_t n, double w,
                           floating* grad) noexcept nogil:
    """mean_j (z[j] - t[j])**2."""
    cdef Py_ssize_t j
    cdef double diff, row = 0
    for j in range(n):
        diff = <double>z[j] - t[j]
        row += diff * diff
        grad[j] = diff * (2.0 * w / n)
    return w * (row / n)


cdef inline double bce_row(const floating* z, const floating* t, Py_ssize_t n, double w,
                           floating* grad) noexcept nogil:
    """mean_j of the binary cross-entropy of sigmoid(z[j]) against t[j], from the logits:
    max(z, 0) - z t + log1p(exp(-|z|)); gradient sigmoid(z) - t."""
    cdef Py_ssize_t j
    cdef double x, e, row = 0
    for j in range(n):
        x = z[j]
        e = exp(-fabs(x))
        row += (x if x > 0 else 0.0) - x * t[j] + log1p(e)
        grad[j] = (_logistic(x, e) - t[j]) * (w / n)
    return w * (row / n)


cdef inline double loss_row(int loss, const floating* z, Py_ssize_t n, int64_t label, const floating* t,
                            double w, floating* grad) noexcept nogil:
    """The row function of loss (abi.py's codes): label for CROSS_ENTROPY, t for the others."""
    if loss == CROSS_ENTROPY:
        return cross_entropy_row(z, label, n, w, grad)
    if loss == CROSS_ENTROPY_SOFT:
        return cross_entropy_soft_row(z, t, n, w, grad)
    if loss == MSE:
        return mse_row(z, t, n, w, grad)
    return bce_row(z, t, n, w, grad)


cdef inline double weight_total(const floating* weights, const int64_t* order, Py_ssize_t lo,
                                Py_ssize_t rows) noexcept nogil:
    """The divisor of a batch's loss, samples order[lo:lo + rows] (lo:lo + rows when order
    is NULL): their number, or the sum of their weights (a sum of 0 counts as 1, so such a
    batch has loss and gradient 0)."""
    cdef Py_ssize_t r
    cdef double total = 0
    if weights == NULL:
        return rows
    for r in range(rows):
        total += weights[order[lo + r] if order != NULL else lo + r]
    return total if total > 0 else 1.0


cdef inline double batch_loss(int loss, const floating* z, Py_ssize_t rows, Py_ssize_t n,
                              const int64_t* labels, const floating* targets, const floating* weights,
                              double total, floating* grad) noexcept nogil:
    """The weighted loss of rows z (rows, n) and its gradient into grad (OUT): rows weigh
    1 / total, or weights[i] / total (total from weight_total, of these rows or of the whole
    batch they are part of). labels or targets (rows of n) as the loss reads, else NULL."""
    cdef Py_ssize_t i
    cdef double result = 0
    for i in range(rows):
        result += loss_row(loss, z + i * n, n, labels[i] if labels != NULL else 0,
                           targets + i * n if targets != NULL else NULL,
                           (weights[i] if weights != NULL else 1.0) / total, grad + i * n)
    return result


# Metrics of one row (mse's, R², needs the whole batch: the engine computes it).

cdef inline Py_ssize_t argmax(const floating* row, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j, best = 0
    for j in range(1, n):
        if row[j] > row[best]:
            best = j
    return best


cdef inline double metric_row(int loss, const floating* z, Py_ssize_t n, int64_t label,
                              const floating* t) noexcept nogil:
    """1 if the row's class is right, else 0 (CROSS_ENTROPY: argmax(z) == label; soft:
    argmax(z) == argmax(t)); BCE: the fraction of outputs with z > 0 exactly where t > 0.5."""
    cdef Py_ssize_t j
    cdef double right = 0
    if loss == CROSS_ENTROPY:
        return argmax(z, n) == label
    if loss == CROSS_ENTROPY_SOFT:
        return argmax(z, n) == argmax(t, n)
    for j in range(n):
        right += (z[j] > 0) == (t[j] > 0.5)
    return right / n


# Optimizer steps of one parameter, in the parameters' dtype with the constants of the
# step computed in double by sgd_constants or adam_constants.

cdef struct Step:
    double lr, momentum, weight_decay  # SGD
    bint nesterov
    double shrink, l2, beta1, beta2    # Adam: decoupled shrink 1 - lr * weight_decay, L2 decay
    double step_size, eps_s            # Adam: lr * s / (1 - beta1^t), eps * s, s = sqrt(1 - beta2^t)


cdef inline Step sgd_constants(const Hyper* hyper) noexcept nogil:
    return Step(lr=hyper.lr, momentum=hyper.momentum, weight_decay=hyper.weight_decay, nesterov=hyper.nesterov != 0,
                shrink=1, l2=0, beta1=0, beta2=0, step_size=0, eps_s=0)


cdef inline Step adam_constants(const Hyper* hyper, long step) noexcept nogil:
    """The constants of Adam step number ``step`` (from 1)."""
    cdef double s = sqrt(1.0 - hyper.beta2 ** step)
    cdef bint decoupled = hyper.decoupled != 0
    return Step(lr=hyper.lr, momentum=0, weight_decay=hyper.weight_decay, nesterov=False,
                shrink=1.0 - hyper.lr * hyper.weight_decay if decoupled else 1.0,
                l2=0.0 if decoupled else hyper.weight_decay, beta1=hyper.beta1, beta2=hyper.beta2,
                step_size=hyper.lr * s / (1.0 - hyper.beta1 ** step), eps_s=hyper.eps * s)


cdef inline void descend(floating* p, floating g, floating lr) noexcept nogil:
    """p (IN/OUT) -= lr * g: plain SGD, and sgd_step's last part."""
    p[0] -= lr * g


cdef inline void sgd_step(floating* p, floating g, floating* velocity, Step c) noexcept nogil:
    """p (IN/OUT) with gradient g, velocity (IN/OUT, read with momentum only): PyTorch's
    SGD with momentum (no dampening), Nesterov and weight decay."""
    cdef floating v
    if c.weight_decay != 0:
        g = g + <floating>c.weight_decay * p[0]
    if c.momentum != 0:
        v = <floating>c.momentum * velocity[0] + g
        velocity[0] = v
        g = g + <floating>c.momentum * v if c.nesterov else v
    descend(p, g, <floating>c.lr)


cdef inline void _sgd_run(floating* p, const floating* g, floating scale, floating* velocity, Py_ssize_t n,
                          Step c) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        sgd_step(&p[k], scale * g[k], &velocity[k], c)


cdef inline void sgd_steps(floating* p, const floating* g, floating scale, floating* velocity, Py_ssize_t n,
                           Step c) noexcept nogil:
    """sgd_step over p[:n] with the gradient scale * g[:n] (an online row's is its input
    times the layer's delta; a buffer's scale is 1, which changes no bit). The mode is
    tested here, once: each call below inlines the loop where its tests are decided, and
    it vectorises (tested inside, the loop stays scalar: 6x slower)."""
    if c.momentum == 0 and c.weight_decay == 0: _sgd_run(p, g, scale, velocity, n, c)
    elif c.momentum == 0: _sgd_run(p, g, scale, velocity, n, c)
    elif c.nesterov: _sgd_run(p, g, scale, velocity, n, c)
    else: _sgd_run(p, g, scale, velocity, n, c)


cdef inline void adam_step(floating* p, floating g, floating* m, floating* v, Step c) noexcept nogil:
    """p, m, v (IN/OUT) with gradient g: Adam (AdamW when decoupled),
    lr / (1 - beta1^t) * m / (sqrt(v) / s + eps) written with one division, as
    lr * s / (1 - beta1^t) * m / (sqrt(v) + eps * s), s = sqrt(1 - beta2^t)."""
    cdef floating pf = p[0] * <floating>c.shrink
    cdef floating mf, vf
    g = g + <floating>c.l2 * pf
    mf = <floating>c.beta1 * m[0] + <floating>(1.0 - c.beta1) * g
    vf = <floating>c.beta2 * v[0] + <floating>(1.0 - c.beta2) * g * g
    m[0] = mf
    v[0] = vf
    p[0] = pf - <floating>c.step_size * mf / (_sqrt(vf) + <floating>c.eps_s)
