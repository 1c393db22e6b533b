"""capturekit sync daemon: uploads the sealed outbox to the centre, exactly once (docs/kit-api.md, docs/sync.md)."""
