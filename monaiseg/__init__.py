"""monaiseg."""
