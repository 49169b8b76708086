"""`bench-agent peer`: the servers the other node of a network test talks to."""
