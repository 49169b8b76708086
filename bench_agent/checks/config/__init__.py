"""The configuration check: facts that nodes of one type must share."""
