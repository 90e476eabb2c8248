"""The bottom layer that every workflow stands on: a run's config, its folder, its checkpoint, the device and the
batch loop. Nothing here imports the tasks, training, evaluation or prediction packages: they build on it."""
