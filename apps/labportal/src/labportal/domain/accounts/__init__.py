"""Users, browser sessions, personal API tokens."""
