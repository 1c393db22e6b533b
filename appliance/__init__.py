"""capturekit appliance: the capture daemon of one classroom photo station."""
