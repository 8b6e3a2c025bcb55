"""Where a run executes: its device, precision and compile mode (device), and its processes
(distributed). Training, evaluation and the stages all stand on these; they import nothing of
the project above the config and the store."""
