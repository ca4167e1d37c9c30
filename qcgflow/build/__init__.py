"""Graph -> standard QCG-PilotJob job descriptions, and the files Python tasks exchange with their jobs."""
