"""capturekit reference centre server (see ROADMAP; not built yet)."""
