"""An Application running in a background thread, for integration tests."""

from __future__ import annotations

import threading

from streamseg.app import Application, RunSummary
from streamseg.config import Settings

#: How long a test waits for anything before failing (a guard, not a measurement).
DEADLINE_S = 90.0


class AppThread:
    """An Application in a background thread; ``stop`` re-raises what ended it."""

    def __init__(self, settings: Settings) -> None:
        self.app = Application(settings)
        self.summary: RunSummary | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.summary = self.app.run()
        except BaseException as error:  # noqa: BLE001 - re-raised in stop()
            self.error = error

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> RunSummary:
        self.app.stop()
        self._thread.join(DEADLINE_S)
        self.app.close()
        if self.error is not None:
            raise self.error
        assert not self._thread.is_alive(), "the application did not stop"
        assert self.summary is not None
        return self.summary
