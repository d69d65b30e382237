"""Small helpers shared by several test modules."""

import logging


class ListHandler(logging.Handler):
    """A logging handler that keeps the formatted messages it receives, for assertions."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())
