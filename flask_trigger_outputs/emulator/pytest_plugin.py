"""pytest fixtures that run the Trigger.dev emulator on 127.0.0.1."""
