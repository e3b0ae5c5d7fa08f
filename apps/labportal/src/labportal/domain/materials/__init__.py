"""Materials: slides attached to a case, stored in the slidestore cluster."""
