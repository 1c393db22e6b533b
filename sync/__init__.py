"""capturekit sync daemon: uploads the spool outbox to the centre (see ROADMAP; not built yet)."""
