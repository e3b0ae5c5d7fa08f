"""Cases: a team's unit of work, with a status workflow and an audit trail."""
