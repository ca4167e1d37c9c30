"""The pilot-job runtime: a wire-compatible re-implementation of the QCG-PilotJob manager."""
