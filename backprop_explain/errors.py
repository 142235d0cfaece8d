"""The one error type users see: a one-line message naming file, place and expectation."""

from .escaping import visible


class SpecError(Exception):
    """Bad input: the CLI prints ``message`` on one line and exits with status 2."""

    def __init__(self, source, place, expected):
        self.source = str(source) if source is not None else "<spec>"
        self.place = place
        self.expected = expected
        where = f"{self.source}: {place}: " if place else f"{self.source}: "
        # One line whatever the input held (a key with a newline, an ESC sequence…).
        super().__init__(visible(where + expected))


class DomainError(Exception):
    """A value outside a function's domain (ln of 0, …) met while evaluating."""
