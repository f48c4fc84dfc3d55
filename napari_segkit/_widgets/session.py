"""What the docks of one napari session share: the model trained last.

The Train dock publishes the saved model's path; the Predict dock listens and offers it
as "Just trained".
"""

from __future__ import annotations

from psygnal import Signal


class Session:
    model_trained = Signal(str)

    def __init__(self) -> None:
        self.last_model_path: str | None = None

    def publish_model(self, path: str) -> None:
        self.last_model_path = str(path)
        self.model_trained.emit(str(path))


SESSION = Session()
