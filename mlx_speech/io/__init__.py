"""File formats of our own that are not checkpoints: codes files (:mod:`.codes`)."""
