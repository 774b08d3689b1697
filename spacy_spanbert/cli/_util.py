"""What every command shares: bad input ends in one unwrapped line on stderr, exit code 1."""
import sys
from typing import NoReturn


def fail(text: str) -> NoReturn:
    """One unwrapped line on stderr, exit code 1 (wasabi would wrap long messages)."""
    sys.stderr.write(f"✘ {text}\n")
    sys.exit(1)


def fail_with(err: BaseException) -> NoReturn:
    """`fail` with the first line of an exception's message (or its type's name)."""
    fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
