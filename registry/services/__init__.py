"""Registry operations: each service owns one kind of object and its rules."""
