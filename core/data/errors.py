"""The one error type of the data layer.

`DataError` is a `ValueError` whose message names the file, the field or column, and what was
expected, so the CLI and the app can show it as is. Readers translate every pandas, pyarrow, gzip
and JSON failure into it; no raw library traceback reaches a user for bad input.
"""


class DataError(ValueError):
    """Bad or missing input data; the message says which file, which field and what was expected."""
