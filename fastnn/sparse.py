"""Sparse inputs: samples kept as CSR rows, never densified as a whole.

fit, predict, evaluate and the estimators take a ``scipy.sparse`` X (CSR, CSC or
any other format) as scikit-learn's MLP does. It is checked and converted once
into :class:`SparseRows`, the model's dtype with int64 indices, which slices and
indexes by rows like an array. A Dense first layer multiplies it with the csr_
kernels (each stored entry adds its row of W; the zeros cost nothing), and the
compiled engine trains on it without densifying the data set. The engine also
turns a dense X with mostly zeros (such as the MNIST digits) into SparseRows where
that is measured to train faster (fastnn.engine).
"""
import numpy as np
import scipy.sparse


class SparseRows:
    """An (n_samples, n_features) matrix as CSR arrays (kernels/reference.py's convention):
    row i holds values[p] in column indices[p] for p in indptr[i]:indptr[i + 1]."""

    ndim = 2

    def __init__(self, values, indices, indptr, n_features):
        self.values, self.indices, self.indptr = values, indices, indptr
        self.shape = (len(indptr) - 1, int(n_features))

    @classmethod
    def from_scipy(cls, X, dtype, name="X"):
        """A scipy.sparse matrix or array as SparseRows of dtype; ValueError on NaN/inf."""
        csr = scipy.sparse.csr_array(X)
        if csr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric; got dtype {csr.dtype}")
        values = np.ascontiguousarray(csr.data, dtype=dtype)
        if not np.isfinite(values).all():
            raise ValueError(f"{name} contains NaN or infinity")
        return cls(values, np.ascontiguousarray(csr.indices, dtype=np.int64),
                   np.ascontiguousarray(csr.indptr, dtype=np.int64), csr.shape[1])

    @classmethod
    def from_dense(cls, X):
        """The non-zero entries of a dense 2-D array, in its dtype."""
        return cls.from_scipy(scipy.sparse.csr_array(X), X.dtype)

    dtype = property(lambda self: self.values.dtype)

    def __len__(self):
        return self.shape[0]

    @property
    def nnz(self):
        """The entries stored for these rows."""
        return int(self.indptr[-1] - self.indptr[0])

    @property
    def density(self):
        """The share of the entries that are stored."""
        return self.nnz / max(1, self.shape[0] * self.shape[1])

    def __getitem__(self, rows):
        """Rows as SparseRows: a slice of step 1 shares the arrays; indices or a mask copy."""
        if isinstance(rows, slice) and rows.step in (None, 1):
            start, stop, _ = rows.indices(len(self))
            return SparseRows(self.values, self.indices, self.indptr[start:max(start, stop) + 1], self.shape[1])
        picked = np.arange(len(self))[rows]
        if np.ndim(picked) != 1:
            raise TypeError(f"SparseRows takes a slice, sample indices or a mask; got {rows!r}")
        picked = self.to_scipy()[picked]
        return SparseRows(picked.data, picked.indices.astype(np.int64), picked.indptr.astype(np.int64),
                          self.shape[1])

    def to_scipy(self):
        """These rows as a scipy.sparse.csr_array (its arrays are views where they can be)."""
        start, stop = self.indptr[0], self.indptr[-1]
        return scipy.sparse.csr_array((self.values[start:stop], self.indices[start:stop], self.indptr - start),
                                      shape=self.shape)

    def toarray(self):
        """These rows as a dense C-contiguous array."""
        return self.to_scipy().toarray()

    def __repr__(self):
        return f"SparseRows(shape={self.shape}, dtype={self.dtype}, density={self.density:.3f})"
