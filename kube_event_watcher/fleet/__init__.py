"""A fleet's central instance: occurrences that edge instances publish, read from a stream."""
