"""What leaves the run: signing (DSSE), the spool and upload, exports, the table."""
