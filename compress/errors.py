"""One exception type for every mistake a user can make.

The CLI turns a UserError into a single line on stderr and exit code 2, so messages must name the problem
and the fix in one sentence; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: unknown name, malformed file, missing data, wrong shape."""
