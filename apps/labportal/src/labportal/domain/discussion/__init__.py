"""Comment threads on a case, each open or resolved."""
