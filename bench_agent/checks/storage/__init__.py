"""Storage checks (fio) and the safety rules for raw devices."""
