"""The `sonokit` command line. Each module registers one group of commands; none holds logic of its own."""
