"""What a client is told about input that fails validation, over HTTP and WebSocket alike."""

from __future__ import annotations

from pydantic import ValidationError


def describe_validation_error(exc: ValidationError, *, skip: int = 0) -> str:
    """Every problem in `exc`, as `field 'a.b': message`, joined by `; `.

    `skip` leading parts of each location are left out (a discriminated union
    puts its tag there). A problem with the whole value is its bare message.
    """
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in error["loc"][skip:]]
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"field '{'.'.join(loc)}': {message}" if loc else message)
    return "; ".join(problems)
