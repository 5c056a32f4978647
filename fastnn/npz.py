"""The .npz archives model files are: written whole or not at all, read with every size
checked before anything is allocated, and summed by a digest of their arrays.

fastnn/io.py says what a model file holds; this module how its arrays are stored.
"""
import contextlib
import hashlib
import math
import os
import zipfile

import numpy as np

from .atomic import replacing

ZIP_MAGIC = b"PK\x03\x04"
MAX_SMALL_BYTES = 64 << 20   # the metadata and classes members
MAX_NPY_HEADER = 1 << 16     # bytes of an .npy member before its data
MAX_DEFLATE_RATIO = 1032     # deflate expands its input at most this much
READ_CHUNK = 1 << 20


class ModelFileError(ValueError):
    """A file that cannot be loaded as a fastnn model: foreign, truncated, corrupted or of
    an unsupported format version."""


def digest(arrays):
    """SHA-256 over the name, dtype, shape and bytes of every array, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}\n".encode("utf-8"))
        digest.update(array)
    return digest.digest()


def write_atomically(path, arrays):
    """np.savez into path whole or not at all (fastnn.atomic.replacing: a temporary file
    beside path, fsynced and renamed over it, removed on any error). An OSError names path."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path!r}: directory {directory!r} does not exist")
    try:
        with replacing(path) as file:
            np.savez(file, **arrays)
    except OSError as error:
        if error.errno is None:
            raise
        raise type(error)(error.errno, f"cannot save to {path!r}: {error.strerror}") from error


@contextlib.contextmanager
def reading(path):
    """Turn the many ways a damaged zip fails (BadZipFile, EOFError, zlib.error,
    NotImplementedError...) into ModelFileError."""
    try:
        yield
    except ModelFileError:
        raise
    except Exception as error:
        raise ModelFileError(f"{path!r} is truncated or corrupted: its .npz archive cannot be read "
                             f"({type(error).__name__}: {error})") from error


def archive_members(archive, file_size, path):
    """The archive's members by array name, each unique, stored or deflated, and no larger
    than the bytes it occupies in the file allow."""
    members = {}
    for info in archive.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else None
        if name is None or name in members:
            raise ModelFileError(f"{path!r} is not a fastnn model file: it holds the member {info.filename!r} "
                                 f"{'twice' if name in members else 'that is not an array'}")
        bound = info.compress_size if info.compress_type == zipfile.ZIP_STORED else \
            info.compress_size * MAX_DEFLATE_RATIO + MAX_NPY_HEADER
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.file_size > bound \
                or info.header_offset + info.compress_size > file_size:
            raise ModelFileError(f"{path!r} is truncated or corrupted: its member {info.filename!r} declares "
                                 f"{info.file_size} bytes, more than its {info.compress_size} stored bytes can hold")
        members[name] = info
    if "meta" not in members or "sha256" not in members:
        raise ModelFileError(f"{path!r} is not a fastnn model file: it has no fastnn metadata")
    return members


def read_array(archive, info, dtype, shape, out):
    """The .npy member ``info``, which must hold dtype (a name: any byte order) and shape
    (None: any shape within MAX_SMALL_BYTES), read into ``out`` when it has that exact
    dtype and shape, else into a new array."""
    with archive.open(info) as member:
        version = np.lib.format.read_magic(member)
        headers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in headers:
            raise ValueError(f"member {info.filename!r} is an .npy file of version {version}")
        found_shape, fortran, found_dtype = headers[version](member)
        nbytes = found_dtype.itemsize * math.prod(found_shape)
        if found_dtype.hasobject or fortran or found_dtype.name != dtype or nbytes > info.file_size \
                or (list(found_shape) != shape if shape is not None else nbytes > MAX_SMALL_BYTES):
            raise ValueError(f"member {info.filename!r} holds {found_dtype} {found_shape}"
                             f"{' in Fortran order' if fortran else ''}; expected {dtype} "
                             f"{'of at most ' + str(MAX_SMALL_BYTES) + ' bytes' if shape is None else tuple(shape)}")
        if out is None or out.dtype != found_dtype or out.shape != found_shape:
            out = np.empty(found_shape, found_dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        filled = 0
        while filled < nbytes:
            count = member.readinto(view[filled:filled + READ_CHUNK])  # zipfile reads a copy of what it is asked
            if not count:
                raise EOFError(f"member {info.filename!r} ends after {filled} of its {nbytes} bytes")
            filled += count
    return out
