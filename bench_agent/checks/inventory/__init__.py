"""The inventory as a check: the node's facts as measurements."""
