"""scripts/import_model.py's parts: read a team's checkpoint (checkpoint), find its network
(architectures), read its class mapping (classes), export and check it (export), write it as a
version (write). A user's mistake is a `UserError`: one sentence, never a traceback."""


class UserError(Exception):
    """What is wrong with the user's files or options, and what to do: printed as one line."""
