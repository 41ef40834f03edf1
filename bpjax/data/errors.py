"""Errors raised by bpjax.data: each message is one line naming the file or directory and
what is wrong. All derive from `DataError`, and each also from the builtin kind callers
already catch:

    DataError                 base: catch this to report any data problem in one line
    MnistNotFoundError        FileNotFoundError: a file, directory or TFDS copy is missing
    DataReadError             OSError: a file exists but cannot be read (permission denied,
                              a directory where a file should be, an I/O error, ...)
    MnistFormatError          ValueError: a file is readable but not valid MNIST (bad header,
                              truncated, labels out of range, image/label count mismatch, ...)
    MnistSplitError           MnistFormatError: the files are valid but the split is
                              implausible (e.g. train and test files swapped)
    MissingDependencyError    ImportError: the chosen source needs a package not installed
"""


class DataError(Exception):
    """Any bpjax.data problem with the data itself or its source."""


class MnistFormatError(DataError, ValueError):
    """A data file exists but is not valid MNIST (bad header, size, dtype, labels, ...)."""


class MnistSplitError(MnistFormatError):
    """Valid files whose split is implausible (training set smaller than the test set under
    the standard names, or train and test identical); `allow_unusual_split=True` loads them."""


class MnistNotFoundError(DataError, FileNotFoundError):
    """A data file, directory or prepared TFDS copy that was asked for is missing."""


class DataReadError(DataError, OSError):
    """A data file or directory exists but cannot be read (permission, not a regular file,
    I/O error)."""


class MissingDependencyError(DataError, ImportError):
    """An optional package needed by the chosen source is not installed."""
